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
/// run the same command again to compute only what is missing. JOBLET_LOG_FILE=joblet-\%j-\%t.log
/// also writes joblet's log lines to a file per process (\%j job, \%t rank, \%A array job, \%a
/// array index, \%N host, \%p pid).
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

/// What a Session does beyond what the launcher asks for.
struct SessionOptions {
  /// Initialise MPI even for one rank (for programs that make their own MPI calls).
  bool always_init_mpi = false;
};

/// The program's joblet session (see session.hpp): one per process, made first thing in main()
/// and kept until the end of it. Neither copyable nor movable.
class Session {
 public:
  /// Checks the JOBLET_* variables, detects the launcher and, when it started several ranks (or
  /// `options` ask), initialises MPI with `argc` and `argv` (which MPI may change) unless the
  /// program did. Throws ConfigError for a malformed JOBLET_* variable, for several ranks in a
  /// program built without joblet's MPI support, and for the silent-singleton trap.
  Session(int& argc, char**& argv, SessionOptions options = {});
  /// Finalises MPI when this Session initialised it. Destroyed while an exception propagates in a
  /// job of several ranks, it first aborts the MPI job, so that no other rank waits for this one.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// This process's MPI rank; 0 without MPI.
  int rank() const noexcept { return rank_; }
  /// The number of MPI ranks; 1 without MPI.
  int size() const noexcept { return size_; }
  /// Whether this is rank 0, the one to report results (true without MPI).
  bool is_root() const noexcept { return rank_ == 0; }
  /// Whether the Session runs on MPI: it initialised MPI, or found it initialised already (then it
  /// leaves finalising MPI to the program).
  bool uses_mpi() const noexcept { return mpi_; }
  /// How the program was started, as read when the Session was made.
  const Environment& environment() const noexcept { return environment_; }
  /// The cache directory to use when none is given: $JOBLET_CACHE_DIR, else ./joblet-cache.
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
