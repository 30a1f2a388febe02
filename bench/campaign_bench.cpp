// The elastic-campaign workloads of bench/compare: processes that share one cached campaign.
//
//   elastic-50ms   s of wall for a campaign of 40 tasks of 50 ms (quick: 16), 1 worker per process:
//                  joblet-elastic: 2 processes started together on one fresh cache;
//                  one-process: 1 process alone. Cooperation is perfect at 0.5 of one-process.
//   campaign-miss  µs per task of a fresh campaign of 400 tasks that return at once (quick: 100),
//                  1 worker: joblet-elastic (JOBLET_ELASTIC=on: every task claimed and put aside
//                  or locked, computed, then every result loaded again by the call) against
//                  joblet-independent (JOBLET_ELASTIC=off). The difference is what joining
//                  campaigns costs a task.
//
//   campaign_bench --workload W --system S [--workers N (unused)] [--quick]
//
// Caches go to $CACHE_BENCH_DIR (default: the current directory), as cache_bench's do.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ranges>
#include <string>
#include <thread>

#include <joblet/joblet.hpp>

#include "workloads.hpp"

namespace {

using joblet::bench::Clock;
using joblet::bench::Options;
using joblet::bench::ScratchDir;

constexpr std::string_view kUsage =
    "--workload elastic-50ms|campaign-miss --system joblet-elastic|one-process|joblet-independent [--quick]";

// One process's run of the campaign: `tasks` tasks of `milliseconds` on one worker, in `cache`.
void run_campaign(const std::filesystem::path& cache, int tasks, int milliseconds) {
  const joblet::Memory memory(cache);
  const auto task = memory.cache("bench.campaign", [milliseconds](int x) {
    if (milliseconds > 0) std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
    return static_cast<long>(x) * 3;
  });
  const auto results = joblet::Parallel({.n_jobs = 1, .backend = "threads"})(
      std::views::iota(0, tasks) | std::views::transform([&](int x) { return joblet::delayed(task, x); }));
  for (int x = 0; x < tasks; ++x) joblet::bench::check(results[static_cast<std::size_t>(x)] == 3L * x, "result");
}

// Seconds until `processes` processes, forked together, have each run the campaign.
double campaign_wall(int processes, int tasks, int milliseconds) {
  const ScratchDir scratch("CACHE_BENCH_DIR", "campaign-bench");
  const auto start = Clock::now();
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t child = ::fork();
    if (child < 0) throw std::runtime_error("fork failed");
    if (child == 0) {
      try {
        run_campaign(scratch / "cache", tasks, milliseconds);
        std::_Exit(0);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "campaign_bench: %s\n", e.what());
        std::_Exit(1);
      }
    }
    children.push_back(child);
  }
  bool ok = true;
  for (const pid_t child : children) {
    int status = 0;
    ok = ::waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0 && ok;
  }
  joblet::bench::check(ok, "a campaign process failed");
  return joblet::bench::seconds_since(start);
}

bool run(const Options& options) {
  const std::string& workload = options.workload;
  const std::string& system = options.system;
  if (workload == "elastic-50ms" && (system == "joblet-elastic" || system == "one-process")) {
    const int tasks = options.quick ? 16 : 40;
    const double seconds = campaign_wall(system == "joblet-elastic" ? 2 : 1, tasks, 50);
    joblet::bench::print_measurement(workload, system, seconds, "s");
  } else if (workload == "campaign-miss" && (system == "joblet-elastic" || system == "joblet-independent")) {
    // The setting is read when a call starts, so each measurement sets it before its own.
    ::setenv("JOBLET_ELASTIC", system == "joblet-elastic" ? "on" : "off", 1);
    const int tasks = options.quick ? 100 : 400;
    const double us = joblet::bench::median_of(3, [&] { return campaign_wall(1, tasks, 0); }) / tasks * 1e6;
    joblet::bench::print_measurement(workload, system, us, "us");
  } else {
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) { return joblet::bench::bench_main(argc, argv, kUsage, run); }
