// Built with -Werror -Wall -Wextra: joblet's headers must not warn in a user's build, tasks held
// in a std::vector included.
#include <joblet/joblet.hpp>

#include <cstdio>
#include <ranges>
#include <vector>

int main() {
  auto tasks = std::views::iota(0, 100) |
               std::views::transform([](int i) { return joblet::delayed([](int x) { return x * x; }, i); });
  long sum = 0;
  for (const char* backend : {"threads", "processes"}) {
    for (int square : joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks)) sum += square;
  }
  std::vector<joblet::Delayed<int (*)(int), int>> held;
  for (int i = 0; i < 100; ++i)
    held.push_back(joblet::delayed(
        +[](int x) { return x + 1; }, i));
  for (int value : joblet::Parallel({.n_jobs = 2})(held)) sum += value;
  std::printf("%ld\n", sum);
  return sum == 2 * 328350 + 5050 ? 0 : 1;
}
