#pragma once
// The workloads of the comparison and the pieces every bench program shares (bench_engine,
// bench_raw, bench_mpi, cache_bench, array_bench; the engine workloads are mirrored
// line by line in joblib_bench.py): task counts, durations, kernels, the deterministic shuffle
// and the output line "<workload> <system> <value> <unit>" that bench/compare reads.
//
// Header-only and free of heavy dependencies so the bench programs compile in seconds.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace joblet::bench {

using Clock = std::chrono::steady_clock;

// ---- command line ---------------------------------------------------------------------------

struct Options {
  std::string workload;
  std::string system;
  int workers = 2;
  bool quick = false;  // smaller counts and shorter tasks: for checking that everything runs
};

[[noreturn]] inline void usage_error(std::string_view program, std::string_view usage, std::string_view message) {
  std::fprintf(stderr, "%.*s: %.*s\nusage: %.*s %.*s\n", static_cast<int>(program.size()), program.data(),
               static_cast<int>(message.size()), message.data(), static_cast<int>(program.size()), program.data(),
               static_cast<int>(usage.size()), usage.data());
  std::exit(2);
}

inline Options parse_options(int argc, char** argv, std::string_view usage) {
  Options options;
  const std::string_view program = argc > 0 ? argv[0] : "bench";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(program, usage, std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--workload") {
      options.workload = value();
    } else if (arg == "--system") {
      options.system = value();
    } else if (arg == "--workers") {
      const std::string text = value();
      options.workers = std::atoi(text.c_str());
      if (options.workers < 1) usage_error(program, usage, "--workers must be >= 1, got " + text);
    } else if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--help" || arg == "-h") {
      std::printf("usage: %.*s %.*s\n", static_cast<int>(program.size()), program.data(),
                  static_cast<int>(usage.size()), usage.data());
      std::exit(0);
    } else {
      usage_error(program, usage, "unknown argument " + std::string(arg));
    }
  }
  if (options.workload.empty() || options.system.empty())
    usage_error(program, usage, "--workload and --system are required");
  return options;
}

// The main() of a bench program. `run(options)` measures and prints; it returns false when it
// has no such workload and system. Exit status: 0 measured, 1 failed (a wrong result, a
// system call error), 2 bad arguments.
template <class Run>
int bench_main(int argc, char** argv, std::string_view usage, Run run) {
  const Options options = parse_options(argc, argv, usage);
  std::string_view program = argv[0];
  program = program.substr(program.rfind('/') + 1);
  try {
    if (!run(options)) {
      usage_error(program, usage, "nothing to run for --workload " + options.workload + " --system " + options.system);
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%.*s: %s %s: %s\n", static_cast<int>(program.size()), program.data(),
                 options.workload.c_str(), options.system.c_str(), error.what());
    return 1;
  }
}

// ---- output ---------------------------------------------------------------------------------

inline void print_measurement(std::string_view workload, std::string_view system, double value, std::string_view unit) {
  std::printf("%.*s %.*s %.6g %.*s\n", static_cast<int>(workload.size()), workload.data(),
              static_cast<int>(system.size()), system.data(), value, static_cast<int>(unit.size()), unit.data());
  std::fflush(stdout);
}

// Lines starting with '#' are notes: bench/compare shows them with --verbose only.
template <class... Args>
void note(const char* format, Args... args) {
  std::printf("# ");
  std::printf(format, args...);
  std::printf("\n");
  std::fflush(stdout);
}

// A result that differs from the sequential answer fails the program: a fast wrong run is no run.
inline void check(bool ok, std::string_view what) {
  if (!ok) throw std::runtime_error("wrong result: " + std::string(what));
}

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A fresh directory in $<env_var>, else in the current directory (the filesystem a user's cache
// or output would be on), removed at the end. File creation and fsync cost very different
// amounts on different filesystems (about 1 ms on some VM disks, 5 µs on tmpfs): compare systems
// on the same one.
class ScratchDir {
 public:
  ScratchDir(const char* env_var, std::string_view prefix) {
    const char* base = std::getenv(env_var);
    const std::filesystem::path parent =
        (base != nullptr && *base != '\0') ? std::filesystem::path(base) : std::filesystem::current_path();
    std::string pattern = (parent / ("." + std::string(prefix) + "-XXXXXX")).string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("cannot create a scratch directory in " + parent.string() + " (set " + env_var +
                               " to a writable directory)");
    }
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The median of `runs` measurements (bench/compare takes the median of its rounds on top).
inline double median_of(int runs, const std::function<double()>& measure) {
  std::vector<double> values;
  for (int i = 0; i < runs; ++i) values.push_back(measure());
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// ---- sizes ----------------------------------------------------------------------------------

struct Sizes {
  std::size_t tiny_tasks;
  std::size_t million_tasks;  // tiny-1M
  std::size_t sleep_tasks;
  std::chrono::milliseconds sleep_each{10};
  double cpu_seconds;  // one CPU task
  std::size_t busy_tasks;
  std::chrono::microseconds busy_each{50};
  std::size_t skewed_tasks;
  std::chrono::microseconds skewed_long{20000};
  std::chrono::microseconds skewed_short{20};
};

inline Sizes sizes(bool quick) {
  if (quick)
    return Sizes{.tiny_tasks = 5000,
                 .million_tasks = 100000,
                 .sleep_tasks = 50,
                 .cpu_seconds = 0.25,
                 .busy_tasks = 2500,
                 .skewed_tasks = 500};
  return Sizes{.tiny_tasks = 20000,
               .million_tasks = 1000000,
               .sleep_tasks = 200,
               .cpu_seconds = 1.0,
               .busy_tasks = 10000,
               .skewed_tasks = 2000};
}

// The tasks of a map of trivial tasks: tiny-1M's million, or tiny's (tiny-batch1 too).
inline std::size_t tiny_tasks_of(const Sizes& s, const std::string& workload) {
  return workload == "tiny-1M" ? s.million_tasks : s.tiny_tasks;
}

// ---- hygiene --------------------------------------------------------------------------------

// Touches every page of a buffer (keeping its contents) before a timed run, so that the timer
// does not pay for first-touch page faults or for memory the VM handed back to the host, which
// is slow to touch again (0.3 GB/s instead of ~17). Workloads on large buffers call it first.
inline void touch_pages(void* data, std::size_t size) {
  auto* bytes = static_cast<volatile unsigned char*>(data);
  for (std::size_t offset = 0; offset < size; offset += 4096) bytes[offset] = bytes[offset];
}

// ---- kernels --------------------------------------------------------------------------------

// Busy-waits (no sleep, no yield): a task that occupies its CPU for `duration` of wall time.
inline void spin_for(std::chrono::nanoseconds duration) {
  const auto end = Clock::now() + duration;
  while (Clock::now() < end) {
  }
}

inline constexpr std::uint64_t kLcgMultiplier = 6364136223846793005ULL;
inline constexpr std::uint64_t kLcgIncrement = 1442695040888963407ULL;

// The CPU-bound task: a serial dependency chain of multiplies, adds and shifts. The trip count
// is a run-time value, so the compiler can neither fold nor vectorize it.
inline std::uint64_t cpu_kernel(std::uint64_t iterations, std::uint64_t seed) {
  std::uint64_t x = seed;
  for (std::uint64_t i = 0; i < iterations; ++i) {
    x = x * kLcgMultiplier + kLcgIncrement;
    x ^= x >> 29;
  }
  return x;
}

// Iterations of cpu_kernel that take about `seconds` on this CPU now (measured for >= 0.1 s).
inline std::uint64_t calibrate_cpu_kernel(double seconds) {
  std::uint64_t iterations = 1 << 20;
  volatile std::uint64_t sink = 0;
  for (;;) {
    const auto start = Clock::now();
    sink = sink + cpu_kernel(iterations, 12345);
    const double elapsed = seconds_since(start);
    if (elapsed >= 0.1) return static_cast<std::uint64_t>(static_cast<double>(iterations) * seconds / elapsed);
    iterations *= 2;
  }
}

struct CpuSpeedup {
  std::uint64_t iterations;  // of cpu_kernel per task
  double sequential;         // seconds for the tasks one after the other
  double parallel;           // seconds for the parallel run
  double speedup() const { return sequential / parallel; }
};

// Times `workers` kernel tasks run one after the other and `run_parallel(iterations)` running
// them at once (it returns each task's result, checked against the sequential ones). Half of
// the sequential tasks run before the parallel run and half after it, so that a steady drift
// of the CPU speed cancels out of the ratio.
template <class RunParallel>
CpuSpeedup measure_cpu_speedup(int workers, double task_seconds, RunParallel run_parallel) {
  CpuSpeedup m{calibrate_cpu_kernel(task_seconds), 0, 0};
  std::vector<std::uint64_t> expected(static_cast<std::size_t>(workers));
  auto run_sequential = [&](std::size_t k) {
    const auto start = Clock::now();
    expected[k] = cpu_kernel(m.iterations, k + 1);
    m.sequential += seconds_since(start);
  };
  const std::size_t half = (expected.size() + 1) / 2;
  for (std::size_t k = 0; k < half; ++k) run_sequential(k);
  const auto start = Clock::now();
  const std::vector<std::uint64_t> results = run_parallel(m.iterations);
  m.parallel = seconds_since(start);
  for (std::size_t k = half; k < expected.size(); ++k) run_sequential(k);
  check(results == expected, "cpu: the parallel results differ from the sequential ones");
  return m;
}

// The skewed workload's task durations: 1 % long, the rest short, in a deterministic shuffle
// (Fisher-Yates driven by a 64-bit LCG; joblib_bench.py draws the identical permutation).
inline std::vector<std::chrono::microseconds> skewed_durations(const Sizes& s) {
  const std::size_t n = s.skewed_tasks;
  std::vector<std::chrono::microseconds> durations(n, s.skewed_short);
  std::fill_n(durations.begin(), n / 100, s.skewed_long);
  std::uint64_t x = 2024;
  for (std::size_t i = n - 1; i > 0; --i) {
    x = x * kLcgMultiplier + kLcgIncrement;
    std::swap(durations[i], durations[(x >> 33) % (i + 1)]);
  }
  return durations;
}

template <class Duration>
double total_seconds(const std::vector<Duration>& durations) {
  double total = 0;
  for (const auto& d : durations) total += std::chrono::duration<double>(d).count();
  return total;
}

}  // namespace joblet::bench
