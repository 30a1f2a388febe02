// threads: oneTBB worker threads in a task_arena of n_jobs slots. Workers claim batches of
// indices and write results straight into their slots; nothing is serialized.
//
// The calling thread stays free to wait, yield generator results, draw progress and watch
// timeouts. A call made from inside a task of another call runs batches in the calling thread
// too, so nested calls never block a oneTBB thread waiting for others.
//
// A call with a timeout runs on threads of its own instead: a task abandoned at its timeout
// keeps its thread until it returns, and oneTBB keeps another worker parked with the arena of
// a running task, so later calls would get fewer workers — a new 1-slot arena got none for
// 1.8 s in our measurements with oneTBB 2021.8. There the caller, nested or not, runs no task:
// a task it ran could not be abandoned.
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>

#include <fmt/format.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "backends.hpp"
#include "joblet/detail/batch_sizer.hpp"
#include "joblet/detail/runtime.hpp"
#include "joblet/detail/task_watchdog.hpp"
#include "worker_context.hpp"

namespace joblet::detail {
namespace {

// Each claim should take about this long: the claim and publish cost (~0.2 µs) then stays
// around 1 % of the work while the last batches remain short enough to balance.
constexpr auto kBatchTarget = std::chrono::microseconds(20);
// If no oneTBB thread picked up work by then (all busy elsewhere, or a global_control limit),
// the caller runs batches itself so that the call always progresses. Never with a timeout: the
// caller must stay free to stop waiting for a task, so every task runs on a thread of its own.
constexpr auto kHelpAfter = std::chrono::milliseconds(50);

// Arenas are cached per concurrency and never destroyed: a thread abandoned after a timeout
// may still be running a task in one when the program exits.
tbb::task_arena& arena_for(int concurrency) {
  static std::mutex mutex;
  static auto* arenas = new std::map<int, tbb::task_arena*>();
  static tbb::global_control* limit = nullptr;
  static int limit_value = 0;
  std::lock_guard lock(mutex);
  // oneTBB starts at most default_concurrency - 1 worker threads; an arena of n slots with
  // none reserved for the caller needs n, so the global limit is raised when needed.
  const int wanted = concurrency + 1;
  if (wanted > limit_value && wanted > static_cast<int>(tbb::info::default_concurrency())) {
    auto* raised =
        new tbb::global_control(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(wanted));
    delete limit;
    limit = raised;
    limit_value = wanted;
  }
  tbb::task_arena*& arena = (*arenas)[concurrency];
  if (arena == nullptr) {
    arena = new tbb::task_arena(concurrency, 0);
    arena->initialize();
  }
  note_tbb_started();
  return *arena;
}

struct alignas(64) WorkerSlot : WatchedSlot {};

// While a thread runs batches of a call (a worker, or the caller helping): calls made by its
// tasks are nested in this one, and "all CPUs" means the worker's share.
class RunningBatches {
 public:
  explicit RunningBatches(int budget_per_worker)
      : budget_(budget_per_worker), outer_(std::exchange(thread_context().in_threads_worker, true)) {}
  ~RunningBatches() { thread_context().in_threads_worker = outer_; }
  RunningBatches(const RunningBatches&) = delete;
  RunningBatches& operator=(const RunningBatches&) = delete;

 private:
  CpuBudgetScope budget_;
  bool outer_;
};

// Everything a worker loop touches; kept alive by every loop, queued or running.
struct SharedState {
  std::shared_ptr<Job> job;
  int n_workers;
  int budget_per_worker;
  std::vector<WorkerSlot> slots;  // one per worker, plus one for the caller
  TaskWatchdog watchdog;
  std::atomic<int> started{0};
  std::mutex mutex;
  std::condition_variable loop_exited;
  int active = 0;                // loops running now
  std::vector<bool> slot_taken;  // by a loop enlisted (queued or running)
  int first_slot = 0;            // the slots of loops are first_slot .. n_workers - 1

  SharedState(std::shared_ptr<Job> j, int workers)
      : job(std::move(j)),
        n_workers(workers),
        budget_per_worker(std::max(1, job->settings().cpu_budget / workers)),
        slots(static_cast<std::size_t>(workers) + 1),
        watchdog(job->settings().timeout),
        slot_taken(static_cast<std::size_t>(workers), false) {}

  bool tracks_tasks() const noexcept { return watchdog.active(); }

  // Runs batches until none is left (or just one); returns whether it ran any. `slot`
  // records the running task for timeouts.
  bool run_batches(int slot, bool one_batch_only) {
    BatchSizer sizer(job->settings().batch_size, kBatchTarget, n_workers);
    RunningTask* tracker = tracks_tasks() ? &slots[static_cast<std::size_t>(slot)] : nullptr;
    bool ran = false;
    do {
      const IndexRange range = job->claim(sizer.next(job->unclaimed()));
      if (range.empty()) return ran;
      const auto start = Job::Clock::now();
      job->run(range, tracker);
      sizer.observe(range.size(), Job::Clock::now() - start);
      ran = true;
    } while (!one_batch_only);
    return ran;
  }

  void worker_loop(int slot) {
    {
      std::lock_guard lock(mutex);
      ++active;
    }
    started.fetch_add(1, std::memory_order_relaxed);
    for (;;) {
      {
        const RunningBatches running(budget_per_worker);
        run_batches(slot, false);
      }
      // A loop stopped at the end of a generator's window goes on if its consumer took more
      // meanwhile; otherwise its slot is free for the loop that resume() enlists then.
      std::lock_guard lock(mutex);
      if (!job->follows_consumer() || !job->claimable()) {
        slot_taken[static_cast<std::size_t>(slot)] = false;
        break;
      }
    }
    note_thread_loop_exiting(+1);  // until its LoopTask lets go of this state
    {
      std::lock_guard lock(mutex);
      --active;
    }
    loop_exited.notify_all();
  }

  // Loops still running a task the caller has not given up on.
  int busy_loops() {
    int stuck = 0;
    for (const WorkerSlot& slot : slots) {
      if (slot.index.load(std::memory_order_acquire) >= 0 && slot.watched_index() < 0) ++stuck;
    }
    return active - stuck;
  }
};

// A worker loop as queued or started: it keeps the call's state alive, and a loop that ran
// counts as exiting until it let go of that state (worker_context.hpp).
class LoopTask {
 public:
  LoopTask(std::shared_ptr<SharedState> state, int worker) : state_(std::move(state)), worker_(worker) {}
  LoopTask(LoopTask&& other) noexcept
      : state_(std::move(other.state_)), worker_(other.worker_), ran_(std::exchange(other.ran_, false)) {}
  LoopTask(const LoopTask&) = delete;
  LoopTask& operator=(const LoopTask&) = delete;
  LoopTask& operator=(LoopTask&&) = delete;
  ~LoopTask() {
    state_.reset();
    if (ran_) note_thread_loop_exiting(-1);
  }
  void operator()() const {
    ran_ = true;
    state_->worker_loop(worker_);
  }

 private:
  std::shared_ptr<SharedState> state_;
  int worker_;
  mutable bool ran_ = false;
};

class ThreadsRun final : public Run {
 public:
  explicit ThreadsRun(std::shared_ptr<Job> job)
      : caller_works_(thread_context().in_threads_worker || !job->wakes_on_each_outcome()),
        state_(std::make_shared<SharedState>(job, job->settings().n_workers)) {
    // A nested call's caller is itself one of the n workers, and so is the caller of a list
    // that nobody watches task by task: it would only wait for the end (as the caller of
    // tbb::parallel_for works too). A generator's caller stays free to hand out results. With
    // a timeout every worker is a thread of its own (see the top of this file).
    state_->first_slot = caller_works_ && !state_->tracks_tasks() ? 1 : 0;
    if (!state_->tracks_tasks()) arena_ = &arena_for(state_->n_workers);
    std::lock_guard lock(state_->mutex);
    enlist_loops();
  }

  // Starts a loop in every free slot (all of them at the start).
  void enlist_loops() {
    for (int slot = state_->first_slot; slot < state_->n_workers; ++slot) {
      if (state_->slot_taken[static_cast<std::size_t>(slot)]) continue;
      state_->slot_taken[static_cast<std::size_t>(slot)] = true;
      if (arena_ != nullptr) {
        arena_->enqueue(LoopTask(state_, slot));
      } else {
        std::thread(LoopTask(state_, slot)).detach();
      }
    }
  }

  void resume() override {
    if (!state_->job->claimable()) return;
    std::lock_guard lock(state_->mutex);
    enlist_loops();
  }

  ~ThreadsRun() override {
    std::unique_lock lock(state_->mutex);
    // Timed-out tasks cannot be stopped; everything else is waited for, so no task of this
    // call still runs when the call returns. A call that failed (at its first timeout, say)
    // still stops waiting for each other task once that task passes the timeout too.
    const bool tracks_tasks = state_->tracks_tasks();
    while (state_->busy_loops() > 0) {
      const auto now = Job::Clock::now();
      state_->loop_exited.wait_until(
          lock, tracks_tasks ? state_->watchdog.next_expiry(state_->slots, now) : now + std::chrono::milliseconds(50));
      state_->watchdog.check(state_->slots, [](WatchedSlot&, std::size_t) { return true; });
    }
  }

  void wait(Job::Clock::time_point deadline) override {
    Job& job = *state_->job;
    const auto now = Job::Clock::now();
    if (state_->tracks_tasks()) {
      job.wait_for_outcomes(std::min(deadline, state_->watchdog.next_expiry(state_->slots, now)));
      enforce_timeout();
      return;
    }
    const bool no_worker_yet = state_->started.load(std::memory_order_relaxed) == 0;
    if (!job.cancelled() && (caller_works_ || (no_worker_yet && now - created_ > kHelpAfter))) {
      // One batch at a time: between batches the caller draws progress and sees stops.
      const RunningBatches running(state_->budget_per_worker);
      if (state_->run_batches(state_->n_workers, true)) return;
    }
    auto wake = deadline;
    if (no_worker_yet && !caller_works_) wake = std::min(wake, created_ + kHelpAfter);
    job.wait_for_outcomes(wake);
  }

  void cancel() noexcept override { state_->job->cancel(); }

 private:
  void enforce_timeout() {
    Job& job = *state_->job;
    state_->watchdog.check(state_->slots, [&](WatchedSlot&, std::size_t task) {
      return job.complete_failed(
          task, std::make_exception_ptr(TimeoutError(
                    state_->watchdog.describe(task,
                                              "the call stopped waiting for it (a thread cannot be stopped: it "
                                              "finishes the task in the background, and its result is discarded)"),
                    ErrorSite::here(task))));
    });
  }

  bool caller_works_;
  std::shared_ptr<SharedState> state_;
  tbb::task_arena* arena_ = nullptr;  // null: loops run on threads of their own
  Job::Clock::time_point created_ = Job::Clock::now();
};

class ThreadsBackend final : public Backend {
 public:
  bool sequential_when_one_worker() const noexcept override { return true; }
  bool shares_memory() const noexcept override { return true; }
  std::unique_ptr<Run> start(std::shared_ptr<Job> job) override { return std::make_unique<ThreadsRun>(std::move(job)); }
};

}  // namespace

std::unique_ptr<Backend> make_threads_backend() { return std::make_unique<ThreadsBackend>(); }

}  // namespace joblet::detail
