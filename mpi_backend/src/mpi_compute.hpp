#pragma once
// The compute thread(s) of a rank in an mpi call: they run the batches queued for them and leave
// the outcomes, as frames, for the calling thread, which makes every MPI call of the rank. One
// thread normally; keep_going starts another when a task is abandoned at its timeout, and the
// stuck one finishes its batch whenever its task returns.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "joblet/backend.hpp"
#include "joblet/detail/task_watchdog.hpp"

namespace joblet::detail {

class MpiTaskCounter;
class ResultFiles;

// Kept alive by its threads, which may outlive the call (a task abandoned at its timeout).
class MpiComputeThreads : public std::enable_shared_from_this<MpiComputeThreads> {
 public:
  using Clock = Job::Clock;

  struct Finished {
    IndexRange range;
    std::string frames;
    Clock::duration elapsed;
  };
  // What the threads have to do besides their running task.
  struct Backlog {
    std::size_t queued = 0;       // batches waiting
    bool running = false;         // a batch runs
    std::int64_t started_ns = 0;  // when the running batch started
    std::uint64_t tasks = 0;      // and how many tasks it has
  };

  // `counter`: rank 0's, from which its threads take their own batches (null elsewhere).
  // `results`: where result arrays above max_nbytes go instead of frames (null: nowhere).
  MpiComputeThreads(std::shared_ptr<Job> job, std::unique_ptr<MpiTaskCounter> counter,
                    std::shared_ptr<const ResultFiles> results);
  ~MpiComputeThreads();

  void start_thread();
  // While `on`, the calling thread runs the queued batches itself (take_here, run_here) and the
  // compute threads leave them.
  void run_on_caller(bool on);
  // The next queued batch, now counted as running on the calling thread; empty when none.
  IndexRange take_here();
  // Runs a batch take_here() gave and leaves its outcomes with the others.
  void run_here(IndexRange range);
  // Queues a batch; an empty one means that no more will come: the threads end when the queue
  // is empty.
  void give(IndexRange range);
  // Drops the queued batches; no more will come.
  void stop();

  Backlog backlog();
  // Whether nothing is queued, running, or finished and not taken yet.
  bool idle();
  // Whether a batch runs that this rank should wait for: one whose task was abandoned at its
  // timeout may never end.
  bool running_unabandoned();
  std::vector<Finished> take_finished();
  // Whether a batch finished that take_finished() has not taken; lock-free.
  bool has_finished() const noexcept { return finished_count_.load(std::memory_order_acquire) > 0; }
  // Until a batch finished, or `timeout`.
  void wait_for_finished(std::chrono::microseconds timeout);

  // The task the newest thread runs.
  WatchedSlot& running_task() noexcept { return running_task_; }
  MpiTaskCounter* counter() noexcept { return counter_.get(); }

 private:
  void loop();
  // The next queued batch, now running (mutex_ held; the queue is not empty).
  IndexRange start_next_locked();
  // Runs a batch start_next_locked() gave (mutex_ not held).
  Finished run(IndexRange range);
  // The batch's outcomes for take_finished() (mutex_ held).
  void finish_locked(Finished finished);

  std::shared_ptr<Job> job_;
  std::unique_ptr<MpiTaskCounter> counter_;
  std::shared_ptr<const ResultFiles> results_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable outcomes_ready_;
  std::deque<IndexRange> queue_;
  bool no_more_work_ = false;
  bool caller_runs_ = false;
  int busy_ = 0;  // threads running a batch now
  std::vector<Finished> finished_;
  std::atomic<std::size_t> finished_count_{0};  // finished_.size(), read without the lock
  WatchedSlot running_task_;
  std::atomic<std::int64_t> batch_started_ns_{0};  // the running batch: when it started
  std::atomic<std::uint64_t> batch_tasks_{0};      // and how many tasks it has
};

// Whether this thread runs the tasks of an mpi call.
bool runs_mpi_tasks() noexcept;

}  // namespace joblet::detail
