#include <joblet/joblet.hpp>

#include <cstdio>
#include <ranges>

int main() {
  auto tasks = std::views::iota(0, 100) | std::views::transform([](int i) { return joblet::delayed([](int x) { return x * x; }, i); });
  long sum = 0;
  for (const char* backend : {"threads", "processes"}) {
    for (int square : joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks)) sum += square;
  }
  std::printf("%ld\n", sum);
  return sum == 2 * 328350 ? 0 : 1;
}
