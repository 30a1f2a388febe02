// ising_sweep: the quick-start parameter sweep. One task per temperature of a grid around
// T_c, each a call to the pure function ising::simulate(params), run by joblet::Parallel on
// every CPU. Progress goes to stderr, the result table to stdout: the table is bit-identical
// whatever the backend and n_jobs, because each task's seed is derived from its index alone.
//
//   build/examples/ising_sweep                       # default backend, all CPUs
//   build/examples/ising_sweep --backend processes --n-jobs 2 --size 48 --sweeps 20000
//
// Caching the sweep on disk (so a rerun is instant) only needs simulate wrapped by a Memory:
// the task is already a named function of serializable parameters.
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <joblet/joblet.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <ranges>
#include <string>
#include <vector>

#include "ising/ising.hpp"

namespace {

struct Options {
  int size = 32;
  int temperatures = 24;
  double t_min = 1.5;
  double t_max = 3.1;
  int sweeps = 25000;
  std::string algorithm = "wolff";
  std::string backend;  // empty: the default backend (JOBLET_BACKEND or threads)
  std::optional<int> n_jobs;
  int verbose = 10;
  std::uint64_t seed = 20240611;
};

std::vector<ising::IsingParams> temperature_grid(const Options& options) {
  std::vector<ising::IsingParams> grid;
  for (int i = 0; i < options.temperatures; ++i) {
    ising::IsingParams params;
    params.size = options.size;
    params.temperature = options.temperatures == 1
                             ? options.t_min
                             : options.t_min + (options.t_max - options.t_min) * i / (options.temperatures - 1);
    params.measurement_sweeps = options.sweeps;
    params.equilibration_sweeps = std::max(options.sweeps / 10, 1);
    params.algorithm = ising::parse_algorithm(options.algorithm);
    // From the index, not from the order tasks happen to run in: that is what makes the
    // results independent of the backend.
    params.seed = ising::task_seed(options.seed, static_cast<std::size_t>(i));
    grid.push_back(params);
  }
  return grid;
}

void print_table(const Options& options, const std::vector<ising::IsingResult>& results) {
  fmt::print("2D Ising model, L = {} ({} spins), {} algorithm, {} measurement sweeps per temperature, seed {}\n",
             options.size, options.size * options.size, options.algorithm, options.sweeps, options.seed);
  fmt::print("exact columns: Onsager's infinite lattice (T_c = {:.4f}); finite L rounds them near T_c\n\n",
             ising::kCriticalTemperature);
  fmt::print("{:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>7}\n", "T", "<|m|>", "+-", "exact", "<e>", "+-",
             "exact", "chi", "C", "U_L");
  for (const ising::IsingResult& r : results) {
    fmt::print("{:7.4f} {:8.5f} {:8.5f} {:8.5f} {:9.5f} {:8.5f} {:9.5f} {:9.3f} {:8.4f} {:7.4f}\n", r.temperature,
               r.abs_magnetization, r.abs_magnetization_error, ising::onsager_magnetization(r.temperature), r.energy,
               r.energy_error, ising::onsager_energy(r.temperature), r.susceptibility, r.specific_heat,
               r.binder_cumulant);
  }
  // The peaks of chi and C locate the finite-lattice T_c(L), which tends to T_c as L grows.
  auto by = [](auto member) { return [member](const auto& a, const auto& b) { return a.*member < b.*member; }; };
  const auto chi_peak = std::ranges::max_element(results, by(&ising::IsingResult::susceptibility));
  const auto c_peak = std::ranges::max_element(results, by(&ising::IsingResult::specific_heat));
  if (chi_peak != results.end()) {
    fmt::print("\nchi peaks at T = {:.4f}, C peaks at T = {:.4f} (T_c = {:.4f} for L -> infinity)\n",
               chi_peak->temperature, c_peak->temperature, ising::kCriticalTemperature);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // First: under mpirun or srun it starts MPI and makes every rank a worker; alone, threads.
  joblet::Session session(argc, argv);
  Options options;
  CLI::App app("2D Ising model: a temperature sweep around T_c, one joblet task per temperature");
  app.option_defaults()->always_capture_default();
  app.add_option("--size,-L", options.size, "lattice side L")->check(CLI::Range(2, 4096));
  app.add_option("--temperatures,-n", options.temperatures, "number of temperatures")->check(CLI::Range(1, 100000));
  app.add_option("--t-min", options.t_min, "lowest temperature")->check(CLI::PositiveNumber);
  app.add_option("--t-max", options.t_max, "highest temperature")->check(CLI::PositiveNumber);
  app.add_option("--sweeps,-s", options.sweeps, "measurement sweeps per temperature (plus 10% to equilibrate)")
      ->check(CLI::Range(1, 1 << 30));
  app.add_option("--algorithm", options.algorithm, "wolff or metropolis")
      ->check(CLI::IsMember({"wolff", "metropolis"}));
  app.add_option("--backend,-b", options.backend, "joblet backend (default: JOBLET_BACKEND, else threads)");
  int n_jobs = -1;
  auto* n_jobs_option = app.add_option("--n-jobs,-j", n_jobs,
                                       "workers: -1 all CPUs, -2 all but one, ... (default: JOBLET_N_JOBS, else -1)");
  app.add_option("--verbose,-v", options.verbose, "progress on stderr: 0 silent, higher reports more often")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", options.seed, "base seed; task i uses a seed derived from it and i");
  std::string cache_dir = session.cache_dir();
  app.add_option("--cache", cache_dir, "where results are memoized (default: $JOBLET_CACHE_DIR, else ./joblet-cache)");
  bool no_cache = false;
  app.add_flag("--no-cache", no_cache, "compute everything, read and write no cache");
  std::string trace_dir;
  app.add_option("--trace", trace_dir,
                 "record every task in this directory (default: $JOBLET_TRACE, else none); `joblet trace DIR` "
                 "summarises it");
  CLI11_PARSE(app, argc, argv);
  if (n_jobs_option->count() > 0) options.n_jobs = n_jobs;

  try {
    joblet::Config config{.n_jobs = options.n_jobs, .verbose = options.verbose};
    if (!options.backend.empty()) config.backend = options.backend;
    if (!trace_dir.empty()) config.trace = trace_dir;
    // All CPUs unless the command line or JOBLET_N_JOBS says otherwise (an explicit n_jobs
    // would override the variable, so it is only set when the variable is not).
    if (!config.n_jobs && !joblet::current_config().n_jobs) config.n_jobs = -1;
    const std::vector<ising::IsingParams> grid = temperature_grid(options);
    // Memoized on disk: a rerun (or a job resubmitted after its time limit) computes only what
    // is missing. Bump the version when the physics changes, so old results are not reused.
    const joblet::Memory memory = no_cache ? joblet::Memory() : joblet::Memory(cache_dir);
    const auto simulate = memory.cache("ising.simulate", ising::simulate, {.version = "1"});
    joblet::Parallel parallel(config);
    const auto start = std::chrono::steady_clock::now();
    std::vector<ising::IsingResult> results = parallel(
        grid | std::views::transform([&](const ising::IsingParams& p) { return joblet::delayed(simulate, p); }));
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    if (!session.is_root()) return 0;  // every rank has the results; one prints them
    print_table(options, results);
    // Run details go to stderr so that stdout is the same for every backend.
    const auto stats = simulate.statistics();
    fmt::print(stderr, "{} temperatures in {:.2f} s on backend {} with {} worker{}{}\n", grid.size(), elapsed.count(),
               parallel.backend_name(), parallel.n_workers(), parallel.n_workers() == 1 ? "" : "s",
               no_cache ? std::string() : fmt::format("; cache {}: {} hits in this process", cache_dir, stats.hits));
  } catch (const std::exception& e) {
    fmt::print(stderr, "ising_sweep: {}\n", e.what());
    return 1;
  }
  return 0;
}
