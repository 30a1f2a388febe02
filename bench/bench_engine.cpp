// bench_engine: the joblet side of bench/compare. One workload on one backend per run, measured
// once in a fresh process (so worker start-up is always included: joblet's cold number).
//
//   bench_engine --workload tiny --system threads [--workers 2] [--quick]
//   -> tiny joblet-threads 0.41 us
#include <joblet/joblet.hpp>

#include <cstdint>
#include <exception>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "workloads.hpp"

namespace {

using namespace joblet::bench;

constexpr const char* kUsage =
    "--workload tiny|tiny-1M|tiny-batch1|sleep10ms|cpu|busy50us|skewed --system threads|processes|sequential "
    "[--workers N] [--quick]";

std::int64_t identity(std::int64_t i) { return i; }

// Builds the task range lazily, as a user would: a view over the indices.
template <class F>
auto tasks(std::size_t n, F make_task) {
  return std::views::iota(std::size_t{0}, n) | std::views::transform(make_task);
}

// µs per task of `n` tasks that return their index, the whole call timed (Parallel's
// construction, worker start, every task, collecting the results).
double tiny(const joblet::Config& config, std::size_t n) {
  const auto start = Clock::now();
  const std::vector<std::int64_t> results = joblet::Parallel(config)(
      tasks(n, [](std::size_t i) { return joblet::delayed(identity, static_cast<std::int64_t>(i)); }));
  const double elapsed = seconds_since(start);
  check(results.size() == n, "tiny: result count");
  for (std::size_t i = 0; i < n; ++i) check(results[i] == static_cast<std::int64_t>(i), "tiny: result value");
  return elapsed / static_cast<double>(n) * 1e6;
}

int sleep_task(int milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return milliseconds;
}

int spin_task(std::int64_t microseconds) {
  spin_for(std::chrono::microseconds(microseconds));
  return 1;
}

// ideal / wall for tasks of the given durations on `workers` workers.
template <class Duration, class MakeTask>
double efficiency(const joblet::Config& config, int workers, const std::vector<Duration>& durations,
                  MakeTask make_task) {
  const auto start = Clock::now();
  const auto results =
      joblet::Parallel(config)(tasks(durations.size(), [&](std::size_t i) { return make_task(durations[i]); }));
  const double elapsed = seconds_since(start);
  check(results.size() == durations.size(), "result count");
  return total_seconds(durations) / workers / elapsed;
}

// Speedup of one CPU-bound task per worker over running them one after the other.
double cpu_speedup(const joblet::Config& config, int workers, double task_seconds, const std::string& system) {
  const CpuSpeedup m = measure_cpu_speedup(workers, task_seconds, [&](std::uint64_t iterations) {
    return joblet::Parallel(config)(tasks(static_cast<std::size_t>(workers), [iterations](std::size_t k) {
      return joblet::delayed(cpu_kernel, iterations, static_cast<std::uint64_t>(k + 1));
    }));
  });
  note("cpu joblet-%s: %llu iterations, sequential %.3f s, parallel %.3f s", system.c_str(),
       static_cast<unsigned long long>(m.iterations), m.sequential, m.parallel);
  return m.speedup();
}

bool run(const Options& options) {
  const Sizes s = sizes(options.quick);
  const std::string system = "joblet-" + options.system;
  // "<backend>-traced": the same with every task recorded in a trace (Config::trace).
  std::string backend = options.system;
  std::optional<ScratchDir> trace;
  if (backend.ends_with("-traced")) {
    backend.resize(backend.size() - std::string_view("-traced").size());
    trace.emplace("TRACE_BENCH_DIR", "trace-bench");
  }
  joblet::Config config{.n_jobs = options.workers, .backend = backend};
  if (trace) config.trace = trace->path().string();
  const std::string& w = options.workload;

  if (w == "tiny" || w == "tiny-1M") {
    print_measurement(w, system, tiny(config, tiny_tasks_of(s, w)), "us");
  } else if (w == "tiny-batch1") {
    config.batch_size = 1;
    print_measurement(w, system, tiny(config, s.tiny_tasks), "us");
  } else if (w == "sleep10ms") {
    const std::vector<std::chrono::milliseconds> durations(s.sleep_tasks, s.sleep_each);
    const double value = efficiency(config, options.workers, durations, [](std::chrono::milliseconds d) {
      return joblet::delayed(sleep_task, static_cast<int>(d.count()));
    });
    print_measurement(w, system, value, "efficiency");
  } else if (w == "cpu") {
    print_measurement(w, system, cpu_speedup(config, options.workers, s.cpu_seconds, backend), "speedup");
  } else if (w == "busy50us" || w == "skewed") {
    const auto durations =
        w == "skewed" ? skewed_durations(s) : std::vector<std::chrono::microseconds>(s.busy_tasks, s.busy_each);
    const double value = efficiency(config, options.workers, durations, [](std::chrono::microseconds d) {
      return joblet::delayed(spin_task, static_cast<std::int64_t>(d.count()));
    });
    print_measurement(w, system, value, "efficiency");
  } else {
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) { return bench_main(argc, argv, kUsage, run); }
