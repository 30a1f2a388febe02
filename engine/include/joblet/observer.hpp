#pragma once
/// @file
/// Call observers: code outside the engine that follows every Parallel call of the process
/// (launch/'s campaign, job-array and time-limit policies; traces) without the engine knowing
/// what it does, in the spirit of Taskflow's ObserverInterface.
///
/// @code
///   struct Counter : joblet::CallObserver {
///     void on_task_done(const joblet::TaskDone&) override { ++done; }
///     std::size_t done = 0;
///   };
///   auto counter = std::make_shared<Counter>();
///   joblet::add_call_observer(counter);      // ConfigError if it was added already
///   ...
///   joblet::remove_call_observer(counter);
/// @endcode
///
/// Every method runs on the thread that made the call (the caller of Parallel::operator() or the
/// consumer of its generator), in the order observers were added. An exception thrown by
/// on_call_start fails the call before any task starts; on_call_end must not throw.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "joblet/hash.hpp"

namespace joblet {

/// A call whose tasks all call one cached function that stores its results (see
/// cached_call.hpp): a campaign, whose task keys are known before any task runs.
class Campaign {
 public:
  virtual ~Campaign() = default;
  /// The name of the cached function every task calls.
  virtual const std::string& function() const = 0;
  /// The directory of that function's cache.
  virtual const std::filesystem::path& location() const = 0;
  /// The cache key of every task, in input order (computed on first use).
  virtual std::span<const Hash128> keys() = 0;
  /// Whether task `index`'s result is stored now.
  virtual bool in_cache(std::size_t index) const = 0;
  /// Runs only the tasks at these indices, now, as a call of their own with the call's settings
  /// (a job-array element computing its shard). Rethrows their first failure.
  virtual void run_only(std::span<const std::size_t> indices) = 0;
  /// Elastic campaigns: run_only() with every task under the compute-once lock, putting a task
  /// whose lock another live process holds aside at once. Runs every task even when one fails;
  /// then rethrows the first failure, or returns the tasks put aside, in the order given.
  virtual std::vector<std::size_t> run_deferring(std::span<const std::size_t> indices) = 0;
  /// Elastic campaigns: run_only() with every task under the compute-once lock, waiting for the
  /// processes that hold a task's lock (taking over the locks of those that died). Rethrows the
  /// first failure.
  virtual void run_waiting(std::span<const std::size_t> indices) = 0;
  /// Elastic campaigns in runs (CampaignRuns): run_only for tasks of a run this process has
  /// claimed, each computed with no lock of its own. Its progress counts the whole campaign,
  /// with `done_elsewhere` tasks done by other processes, and only a `last` round prints the
  /// campaign's end (so that a round with no tasks reports the end of this process's share).
  /// When done_elsewhere is not 0, each task looks for its entry once more past the client's
  /// memory of missing names before computing it (others may have written it meanwhile).
  virtual void run_held(std::span<const std::size_t> indices, std::size_t done_elsewhere, bool last) = 0;
};

/// A call about to start, as its observers see it.
class CallStart {
 public:
  virtual ~CallStart() = default;
  /// Tasks read so far: all of them unless the call reads its input lazily (pre_dispatch).
  virtual std::size_t size() const noexcept = 0;
  /// Whether the whole input was read, so that size() is final.
  virtual bool input_complete() const noexcept = 0;
  /// The backend the call runs on (Parallel::backend_name()).
  virtual const std::string& backend_name() const noexcept = 0;
  /// The number of workers the call gets (Parallel::n_workers()).
  virtual int n_workers() const noexcept = 0;
  /// Made inside a task of another call.
  virtual bool nested() const noexcept = 0;
  /// Whether the call returns every task's Outcome (keep_going()) instead of stopping at its
  /// first failure.
  virtual bool keep_going() const noexcept = 0;
  /// Whether every process of the call makes it (every MPI rank: Backend::starts_every_call), so
  /// that an observer running part of it must pass the same tasks in every one of them.
  virtual bool collective() const noexcept = 0;
  /// Non-null when the call is a campaign: its whole input is read and every task calls one
  /// cached function that has a store.
  virtual Campaign* campaign() = 0;
  /// Whether `value` holds in every process that takes part in the call (every MPI rank: a
  /// collective there), so that all of them take the same branch. `value` itself elsewhere.
  virtual bool all_agree(bool value) = 0;
  /// The `value` the first process of the call (MPI rank 0) passed, in every process of the call
  /// (a collective there), so that all of them act on one decision. `value` itself elsewhere.
  virtual std::int64_t first_process_value(std::int64_t value) = 0;
};

/// A task of the call that finished, as CallObserver::on_task_done() hears of it.
struct TaskDone {
  std::size_t index = 0;  ///< the task's position in the call's input
  bool failed = false;    ///< whether it failed
};

/// The end of a call, as CallObserver::on_call_end() hears of it: also the end of a call that
/// failed, was cancelled or stopped, or whose generator was dropped before its end.
struct CallEnd {
  std::size_t tasks = 0;   ///< read from the input
  std::size_t done = 0;    ///< finished, failed ones included
  std::size_t failed = 0;  ///< of those done, how many failed
  /// The signal that stopped the call before its end (SIGTERM, SIGUSR1: a time limit under
  /// Session), 0 when it was not stopped. No new task started after it; running ones finished.
  int stop_signal = 0;
  bool nested = false;                            ///< made inside a task of another call
  std::chrono::steady_clock::duration elapsed{};  ///< from the call's start to its end
};

/// Follows every Parallel call of the process once added with add_call_observer(). Override the
/// methods wanted; each does nothing by default. They run on the thread that made the call (for
/// a generator, the one that consumes it).
class CallObserver {
 public:
  virtual ~CallObserver() = default;
  /// Before any task of the call starts; the CallStart lives only during this method. An
  /// exception thrown here fails the call.
  virtual void on_call_start(CallStart&) {}
  /// For each task that finished, failed ones included, as the calling thread learns of it: in
  /// batches of consecutive tasks, not always in input order.
  virtual void on_task_done(const TaskDone&) {}
  /// Once at the end of every call, however it ended (not for a call whose on_call_start() threw).
  /// Must not throw.
  virtual void on_call_end(const CallEnd&) {}
};

/// Adds an observer to every call that starts from now on. Throws ConfigError when it is null or
/// already added.
void add_call_observer(std::shared_ptr<CallObserver> observer);
/// Removes it from calls that start from now on; false when it was not added.
bool remove_call_observer(const std::shared_ptr<CallObserver>& observer);

namespace detail {
using CallObservers = std::vector<std::shared_ptr<CallObserver>>;
/// The observers a call starting now gets; null when there are none (the common case costs one
/// atomic load).
std::shared_ptr<const CallObservers> call_observers();
}  // namespace detail

}  // namespace joblet
