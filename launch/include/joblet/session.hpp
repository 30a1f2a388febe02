#pragma once
/// @file
/// Session: what a joblet program creates first thing in main().
///
/// @code
///   int main(int argc, char** argv) {
///     joblet::Session session(argc, argv);
///     ...
///     if (session.is_root()) report(results);
///   }
/// @endcode
///
/// It detects how the program was started (Environment) and, when a launcher started more than
/// one rank, initialises MPI (MPI_THREAD_MULTIPLE), registers the "mpi" backend and makes it
/// the default, turns compute-once on for Memory (ranks missing the same key compute it once),
/// and prefixes log lines with the rank and host. It finalises MPI when it ends: a rank that
/// ends while other ranks still make parallel calls makes those calls fail with an error naming
/// it, instead of leaving them waiting forever. Started without a launcher, the same program runs
/// on the "threads" backend.
///
/// Slurm: SIGTERM (a time limit) or SIGUSR1 (the `--signal` early warning) during a parallel
/// call stops it gracefully: no new task starts, running ones finish (cached results are
/// published as each finishes), a summary is logged, and the process exits with status 75 —
/// run the same command again to compute only what is missing. JOBLET_LOG_FILE=joblet-%j-%t.log
/// also writes joblet's log lines to a file per process (%j job, %t rank, %A array job, %a
/// array index, %N host, %p pid).
///
/// The silent-singleton trap — Slurm started N > 1 tasks but each sees an MPI world of one,
/// because MPI was not started through Slurm's PMI — stops the program with a ConfigError that
/// says to use `srun --mpi=pmix` or `mpirun`.

#include <string>

#include "joblet/environment.hpp"

namespace joblet {

namespace detail {
bool install_launch_policies() noexcept;
/// launch/'s policies for every Parallel call (campaign records for `joblet status`, job-array
/// shards of a campaign, status 75 after a time limit) are installed in any program that
/// includes this header (this initialiser also makes the linker keep them).
inline const bool launch_policies_installed = install_launch_policies();
}  // namespace detail

struct SessionOptions {
  /// Initialise MPI even for one rank (for programs that make their own MPI calls).
  bool always_init_mpi = false;
};

class Session {
 public:
  Session(int& argc, char**& argv, SessionOptions options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  bool is_root() const noexcept { return rank_ == 0; }
  /// Whether this Session initialised MPI (and will finalise it).
  bool uses_mpi() const noexcept { return mpi_; }
  const Environment& environment() const noexcept { return environment_; }
  /// $JOBLET_CACHE_DIR, else ./joblet-cache.
  std::string cache_dir() const { return default_cache_dir(); }
  /// The backend calls get when nothing names one: "mpi" across ranks, else "threads".
  std::string default_backend() const;

 private:
  std::string expand_log_file_name(const std::string& pattern) const;

  Environment environment_;
  int rank_ = 0;
  int size_ = 1;
  bool mpi_ = false;
  bool owns_mpi_ = false;
};

}  // namespace joblet
