#pragma once
// What joblet knows about the process and the thread it runs in, each in one place (Kokkos keeps
// its runtime state the same way). Modules read and write these fields instead of keeping
// globals and thread-locals of their own. Every process field is a lock-free atomic with a
// constant initial value: signal handlers and forked children may read it.

#include <atomic>
#include <cstdint>
#include <string>

namespace joblet {
class ParallelConfig;
}

namespace joblet::detail {

struct MpiHooks;

struct ProcessRuntime {
  // The MPI rank under a Session with several ranks; -1 otherwise (error sites, logs).
  std::atomic<int> rank{-1};
  // CPUs this process may use (a forked worker's or an MPI rank's share); 0: all of them.
  std::atomic<int> cpu_budget{0};
  std::atomic<bool> forked_worker{false};
  // oneTBB cannot run in a child forked after it started its threads.
  std::atomic<bool> tbb_started{false};
  // Graceful stop (stop.hpp): asked by a signal, for the calls running now.
  std::atomic<bool> stop_requested{false};
  std::atomic<int> stop_signal{0};
  std::atomic<int> running_calls{0};
  std::atomic<bool> graceful_stop_enabled{false};
  std::atomic<void (*)(int)> exit_hook{nullptr};
  std::atomic<const MpiHooks*> mpi_hooks{nullptr};
};

// What a cached function tells the task trace about the call a traced task made (the last one,
// when a task makes several): filled only while a trace is recording the task.
struct TracedCachedCall {
  const std::string* function = nullptr;  // null: the task made no cached call
  std::uint64_t key_high = 0;
  std::uint64_t key_low = 0;
  // A reload: an elastic campaign's call loading the results its own rounds stored.
  enum Cache : std::uint8_t { computed, hit, reloaded } cache = computed;
  double computed_seconds = 0;  // a hit: what computing it took when it was stored
  std::string arguments;        // a miss: the argument summary stored with the entry
};

class SharedCounters;

// What a call whose end is summarised (verbose > 0) counts over every worker, in SharedCounters
// its forked workers add to: their busy time, and the cached calls its tasks made.
enum CallTally : std::size_t { kTallyBusyNs, kTallyCacheHits, kTallyCacheComputed, kTallySavedNs, kTallyCounts };

struct ThreadContext {
  // Inside a task of a threads call: that task's share of the CPUs ("all CPUs" of a nested
  // call); 0 elsewhere.
  int cpu_budget = 0;
  // Running a task of a parallel call: calls made here are nested.
  bool in_task = false;
  // A worker thread of the threads backend (a call made here is nested in its arena).
  bool in_threads_worker = false;
  // An mpi rank's compute thread.
  bool runs_mpi_tasks = false;
  // The innermost ParallelConfig scope opened on this thread.
  const ParallelConfig* innermost_config = nullptr;
  // Set while a task trace records the task running on this thread.
  TracedCachedCall* traced_call = nullptr;
  // Set while this thread runs tasks of a call that tallies them (CallTally).
  SharedCounters* call_tally = nullptr;
  // Set while this thread runs a task that a round of its call's campaign ran first: its cached
  // call loads what that round stored, which is no hit of its own.
  bool loads_campaign_results = false;
};

extern constinit ProcessRuntime g_process_runtime;
extern constinit thread_local ThreadContext g_thread_context;

inline ProcessRuntime& process_runtime() noexcept { return g_process_runtime; }

// getpid() without a system call after the first (a cache miss names its temporary file and its
// writer with it; on a VM each system call costs about a microsecond). A fork() child, whoever
// forked it, asks the kernel again.
int process_id() noexcept;
inline ThreadContext& thread_context() noexcept { return g_thread_context; }

static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "signal handlers read the process runtime: its atomics must be lock-free");

}  // namespace joblet::detail
