// generator: return_as::generator yields results in input order as soon as each is ready,
// instead of one vector at the end. Use it to report, reduce or save results while the rest
// still runs, and to keep only one result in memory at a time.
#include <joblet/joblet.hpp>

#include <chrono>
#include <cstdio>
#include <ranges>
#include <thread>

using Clock = std::chrono::steady_clock;

// Stands in for an expensive computation whose result is large.
double slow_square(int i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return static_cast<double>(i) * i;
}

int main() {
  const auto start = Clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };

  const joblet::Config config{.n_jobs = 2};
  auto results = joblet::Parallel(config)(
      std::views::iota(0, 10) | std::views::transform([](int i) { return joblet::delayed(slow_square, i); }),
      joblet::return_as::generator);

  // Each result arrives about 0.1 s after the previous pair: the first is usable long before
  // the last one is computed. Results are moved out, never copied.
  double sum = 0;
  int count = 0;
  for (double value : results) {
    sum += value;
    std::printf("%5.2f s: result %d = %.0f (running sum %.0f)\n", seconds(), count++, value, sum);
  }

  // Leaving a generator early (break, exception) cancels the tasks not yet started.
  auto endless = joblet::Parallel(config)(
      std::views::iota(0, 1000) | std::views::transform([](int i) { return joblet::delayed(slow_square, i); }),
      joblet::return_as::generator);
  for (double value : endless) {
    if (value >= 4) break;  // stops after the third result, not after 1000 tasks
  }
  std::printf("%5.2f s: stopped early; the other tasks never ran\n", seconds());
  return sum == 285 ? 0 : 1;
}
