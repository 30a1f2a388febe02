#pragma once
/// @file
/// Config: the knobs of a parallel call (joblib's Parallel arguments), and ParallelConfig, an
/// RAII scope that sets defaults for every call made in it (joblib's parallel_config).
///
/// Every field is optional; an unset field comes from the enclosing ParallelConfig scopes
/// (innermost first), then from JOBLET_N_JOBS / JOBLET_BACKEND, then from built-in defaults.
/// Write it with designated initializers, `joblet::Parallel({.n_jobs = -1, .verbose = 5})` (every
/// field has a default initializer, so -Wextra does not warn about the fields left out).

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <string>

#include "joblet/progress.hpp"

namespace joblet {

/// batch_size value that lets joblet pick (the default).
inline constexpr std::size_t auto_batch_size = 0;
/// max_nbytes value that sends every result through pipes (joblib's max_nbytes=None).
inline constexpr std::size_t disable_memmapping = std::numeric_limits<std::size_t>::max();

/// The kind of workers the tasks run best on (joblib's prefer): a soft hint, used only when no
/// backend is named (by the call, a scope or JOBLET_BACKEND).
enum class Prefer { threads, processes };
/// @var Prefer::threads
/// The "threads" backend: threads of the calling process, sharing its memory.

/// @var Prefer::processes
/// The "processes" backend: forked worker processes, each with a copy of the caller's memory.

/// A hard constraint on the backend (joblib's require).
enum class Require { sharedmem };
/// @var Require::sharedmem
/// Tasks must see the caller's memory: calls run on "threads" unless their backend shares it; a
/// Parallel whose own Config names a backend that does not throws ConfigError.

/// Which processes of a multi-process call (MPI ranks) receive the results: all of them (the
/// default), or only the root, which saves every other rank from holding them.
enum class ResultsTo { every_rank, root };
/// @var ResultsTo::every_rank
/// Every rank gets every result.

/// @var ResultsTo::root
/// Rank 0 gets the results; the other ranks get an empty list.

/// The knobs of one parallel call (joblib's Parallel arguments). Every field is optional: an unset
/// one comes from the enclosing ParallelConfig scopes, then JOBLET_N_JOBS / JOBLET_BACKEND /
/// JOBLET_TEMP_FOLDER, then the built-in default.
struct Config {
  /// Workers: n >= 1; -1 all CPUs; -k all but k-1; 0 is an error. Default 1, as in joblib.
  std::optional<int> n_jobs{};
  /// A registered backend: "sequential", "threads", "processes", "mpi" when linked, or your own.
  std::optional<std::string> backend{};
  /// 0 silent; > 0 progress on stderr (a live bar on a terminal, periodic lines in logs);
  /// higher values report more often.
  std::optional<int> verbose{};
  /// A task running longer than this fails the call with TimeoutError.
  std::optional<std::chrono::duration<double>> timeout{};
  /// Tasks claimed at once by a worker; auto_batch_size adapts to the tasks' duration.
  std::optional<std::size_t> batch_size{};
  /// How many tasks to take from a lazy input range ahead of the workers. Unset: the whole
  /// input is read before any task starts (fastest, and required by fork and MPI backends).
  /// A generator's call also stays that far ahead of its consumer: after it took k results, no
  /// more than k + pre_dispatch tasks were read or started (threads and sequential).
  std::optional<std::size_t> pre_dispatch{};
  /// Soft hint used when no backend is named: the kind of workers the tasks run best on.
  std::optional<Prefer> prefer{};
  /// Hard constraint: sharedmem means tasks must see the caller's memory (forces threads).
  std::optional<Require> require{};
  /// MPI: ResultsTo::root returns the results on rank 0 only (an empty list elsewhere).
  std::optional<ResultsTo> results_to{};
  /// Called in the calling thread as tasks finish (and once more at the end).
  std::function<void(const Progress&)> progress{};
  /// Process workers: arrays (NDArray, std::vector of numbers) in a task's result larger than
  /// this many bytes are written to a file in temp_folder and mapped by the caller instead of
  /// being copied through a pipe (joblib's max_nbytes, which joblib applies to inputs: here
  /// inputs are shared by fork already). Default 1 MiB; disable_memmapping turns it off.
  std::optional<std::size_t> max_nbytes{};
  /// Where those files go, in a folder made for the call and removed when it ends (joblib's
  /// temp_folder). Unset: JOBLET_TEMP_FOLDER, else /dev/shm when it has room, else TMPDIR.
  std::optional<std::string> temp_folder{};
  /// A directory to record every task attempt in: one JSON line per attempt (call, task, cache
  /// key and hit or computed, rank, host, pid, worker, start and end, outcome), in one file per
  /// process, `<host>-<pid>.jsonl`, that `joblet trace DIR` summarises. Unset: JOBLET_TRACE, else
  /// no trace. A directory that cannot be made or written fails the call with ConfigError.
  std::optional<std::string> trace{};
  /// How many more times a failed task is run before its failure counts (Nextflow's maxRetries).
  /// A task that throws runs again at once in the same worker; on "processes", a task whose
  /// worker died or ran past the timeout runs again in a fresh worker process (a timeout on
  /// threads, sequential or mpi cannot stop the task, so it is not retried). Every attempt is
  /// in the trace; a task that fails them all fails with RetriesExhaustedError, which lists them.
  /// Unset: JOBLET_RETRIES, else 0.
  std::optional<int> retries{};
  /// Which failures retries applies to (it gets each failed attempt's exception; one that is not
  /// a std::exception is never retried when this is set); empty: every failure. retry_on<E...>()
  /// makes one for exception types, e.g. retry_on<WorkerDiedError, TimeoutError>().
  std::function<bool(const std::exception&)> retry_if{};
  /// For keep_going() calls: once this many tasks failed (after their retries), no task starts
  /// any more (HyperQueue's --max-fails); the call returns the outcomes so far, the tasks that
  /// never ran failing with NotRunError. Calls without keep_going() stop at the first failure
  /// anyway. Unset: JOBLET_MAX_FAILURES, else no limit. Not available on the mpi backend.
  std::optional<std::size_t> max_failures{};

  /// This config with its unset fields filled from `outer`.
  Config merged_over(const Config& outer) const;
};

/// A Config::retry_if that retries the failures of these exception types (and their subclasses).
/// @code
///   joblet::Parallel({.retries = 2, .retry_if = joblet::retry_on<joblet::WorkerDiedError>()})
/// @endcode
template <class... E>
std::function<bool(const std::exception&)> retry_on() {
  static_assert(sizeof...(E) > 0, "retry_on<E...>(): name at least one exception type");
  return [](const std::exception& error) { return ((dynamic_cast<const E*>(&error) != nullptr) || ...); };
}

/// Sets defaults for the parallel calls made in this thread while it lives. Scopes nest; an
/// inner scope overrides only the fields it sets.
///
/// A Parallel takes the defaults in effect when it is constructed, not when it is called.
/// Make it a local variable: scopes must end in the reverse order they began, on their thread.
/// @code
///   joblet::ParallelConfig scope({.n_jobs = 4, .verbose = 1});
///   auto results = joblet::Parallel()(tasks);  // 4 workers, with progress
/// @endcode
class ParallelConfig {
 public:
  /// Opens a scope on this thread: the fields `config` sets, over those of the enclosing scope.
  explicit ParallelConfig(Config config);
  /// Closes the scope: the enclosing one applies again.
  ~ParallelConfig();
  ParallelConfig(const ParallelConfig&) = delete;
  ParallelConfig& operator=(const ParallelConfig&) = delete;

 private:
  Config merged_;
  const ParallelConfig* outer_;
  friend Config current_config();
};

/// The config in effect here: all enclosing scopes merged, then JOBLET_* variables.
Config current_config();

}  // namespace joblet
