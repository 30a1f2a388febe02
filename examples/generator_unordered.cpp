// generator_unordered: yields {index, value} pairs in the order tasks finish, so the fastest
// results come first. Use it when tasks differ in duration and the order does not matter:
// an ordered generator would hold every result back behind the slowest earlier task.
#include <joblet/joblet.hpp>

#include <chrono>
#include <cstdio>
#include <ranges>
#include <thread>
#include <vector>

// Task i takes (6 - i) * 60 ms: the first tasks in the input are the slowest.
int slow_then_fast(int i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(60 * (6 - i)));
  return i * 10;
}

int main() {
  const auto start = std::chrono::steady_clock::now();
  auto results = joblet::Parallel({.n_jobs = 2})(
      std::views::iota(0, 6) | std::views::transform([](int i) { return joblet::delayed(slow_then_fast, i); }),
      joblet::return_as::generator_unordered);

  // The index says which input a value belongs to, so results can still be put in place.
  std::vector<int> by_input(6, -1);
  for (const auto& [index, value] : results) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%4.2f s: task %zu finished: %d\n", seconds, index, value);
    by_input[index] = value;
  }
  for (int i = 0; i < 6; ++i) {
    if (by_input[static_cast<std::size_t>(i)] != i * 10) return 1;
  }
  // Task 1 (300 ms) finishes before task 0 (360 ms): an ordered generator would have made
  // it wait, and every later result with it.
  std::printf("every result arrived once, in the order the tasks finished\n");
  return 0;
}
