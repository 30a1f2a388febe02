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
#include <cstdint>
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
    "--workload elastic-50ms|campaign-miss|array-skew --system "
    "joblet-elastic|one-process|joblet-independent|joblet-dynamic|joblet-static [--quick]";

// array-skew's long tasks: those whose splitmix64 hash is 0 modulo 100, about 1 % of them, placed
// as chance has it (of the first 400: 29, 75, 102, 186, 220, 241 and 333, so that static shard 1
// gets three).
bool long_task(int x) {
  std::uint64_t z = static_cast<std::uint64_t>(x) + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return (z ^ (z >> 31)) % 100 == 0;
}

// One process's run of the campaign: `tasks` tasks of `milliseconds` on one worker, in `cache`;
// with `skewed`, the long tasks take 50 times as long.
void run_campaign(const std::filesystem::path& cache, int tasks, int milliseconds, bool skewed) {
  const joblet::Memory memory(cache);
  const auto task = memory.cache("bench.campaign", [milliseconds, skewed](int x) {
    const int duration = skewed && long_task(x) ? 50 * milliseconds : milliseconds;
    if (duration > 0) std::this_thread::sleep_for(std::chrono::milliseconds(duration));
    return static_cast<long>(x) * 3;
  });
  const auto results = joblet::Parallel({.n_jobs = 1, .backend = "threads"})(
      std::views::iota(0, tasks) | std::views::transform([&](int x) { return joblet::delayed(task, x); }));
  for (int x = 0; x < tasks; ++x) joblet::bench::check(results[static_cast<std::size_t>(x)] == 3L * x, "result");
}

// Seconds until `processes` processes, forked together, have each run the campaign. With
// `shards` ("dynamic", or "static" for k/processes), each process is element k of an array.
double campaign_wall(int processes, int tasks, int milliseconds, std::string_view shards = {}) {
  const ScratchDir scratch("CACHE_BENCH_DIR", "campaign-bench");
  const auto start = Clock::now();
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t child = ::fork();
    if (child < 0) throw std::runtime_error("fork failed");
    if (child == 0) {
      try {
        if (shards == "dynamic") ::setenv("JOBLET_SHARD", "dynamic", 1);
        if (shards == "static") ::setenv("JOBLET_SHARD", (std::to_string(p) + "/" + std::to_string(processes)).c_str(), 1);
        // An element whose static shard is done while others still run ends here, with status 0.
        run_campaign(scratch / "cache", tasks, milliseconds, !shards.empty());
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
  } else if (workload == "array-skew" && (system == "joblet-dynamic" || system == "joblet-static")) {
    const std::string_view shards = system == "joblet-dynamic" ? "dynamic" : "static";
    const double seconds = joblet::bench::median_of(3, [&] { return campaign_wall(4, 400, 10, shards); });
    joblet::bench::print_measurement(workload, system, seconds, "s");
  } else {
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) { return joblet::bench::bench_main(argc, argv, kUsage, run); }
