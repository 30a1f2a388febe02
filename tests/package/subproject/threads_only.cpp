// A threads-only program: Parallel over a std::vector of tasks (the shape that once gave GCC 12 a
// -Wstringop-overflow warning inside joblet's headers) and over a lazy range.
#include <joblet/parallel.hpp>

#include <cstdio>
#include <ranges>
#include <vector>

int main() {
  std::vector<joblet::Delayed<int (*)(int), int>> tasks;
  for (int i = 0; i < 100; ++i)
    tasks.push_back(joblet::delayed(
        +[](int x) { return x * x; }, i));
  long sum = 0;
  for (int square : joblet::Parallel({.n_jobs = 2, .backend = "threads"})(tasks)) sum += square;
  auto lazy = std::views::iota(0, 100) | std::views::transform([](int i) { return [i] { return i; }; });
  for (int value : joblet::Parallel({.n_jobs = 2})(lazy)) sum += value;
  std::printf("%ld\n", sum);
  return sum == 328350 + 4950 ? 0 : 1;
}
