// nested: a parallel call made inside a task gets that task's share of the CPUs, so "all
// CPUs" (n_jobs = -1) at every level never oversubscribes the machine: with 8 CPUs and 2
// outer workers, each inner call gets 4 workers, not 8.
#include <joblet/joblet.hpp>

#include <cstdio>
#include <ranges>
#include <string>
#include <vector>

// A task that is itself parallel (think: a simulation whose inner loop is parallel). It
// reports what it was given instead of printing, because tasks run concurrently.
std::string inner_sweep(int outer_task) {
  joblet::Parallel inner({.n_jobs = -1});
  const auto parts = inner(std::views::iota(0, 4) | std::views::transform([](int i) {
                             return joblet::delayed([](int x) { return x * x; }, i);
                           }));
  int sum = 0;
  for (int p : parts) sum += p;
  return "outer task " + std::to_string(outer_task) +
         ": effective_n_jobs(-1) = " + std::to_string(joblet::effective_n_jobs(-1)) + ", inner call ran on " +
         inner.backend_name() + " with " + std::to_string(inner.n_workers()) + " worker(s), sum " + std::to_string(sum);
}

int main() {
  std::printf("this process: cpu_count() = %d, effective_n_jobs(-1) = %d\n", joblet::cpu_count(),
              joblet::effective_n_jobs(-1));
  for (const char* backend : {"threads", "processes"}) {
    // Two outer workers: each task's share is cpu_count() / 2 CPUs (at least 1).
    auto reports = joblet::Parallel({.n_jobs = 2, .backend = backend})(
        std::views::iota(0, 2) | std::views::transform([](int t) { return joblet::delayed(inner_sweep, t); }));
    std::printf("outer backend %s:\n", backend);
    for (const std::string& report : reports) std::printf("  %s\n", report.c_str());
  }
  // Outside any task, the whole machine is available again.
  return joblet::effective_n_jobs(-1) == joblet::cpu_count() ? 0 : 1;
}
