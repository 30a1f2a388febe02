#pragma once
/// @file
/// The backend interface. A backend is a scheduler of task indices 0..n-1 plus, when its
/// workers live in other processes, a transport for their outcomes as bytes. It never sees a
/// C++ type: the Parallel front end owns the tasks, the results, ordering, generators,
/// progress and the error policy, once, for every backend.
///
/// To add a backend, implement Backend and Run (examples/custom_backend.cpp is a small one),
/// and register a factory under a new name:
/// @code
///   joblet::register_backend("mine", [] { return std::make_unique<MyBackend>(); });
/// @endcode

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "joblet/detail/stable_vector.hpp"
#include "joblet/error.hpp"

namespace joblet {

namespace detail {
class ArrayWriter;
class ArrayReader;
class SharedCounters;
}  // namespace detail

/// Task indices [begin, end).
struct IndexRange {
  std::size_t begin = 0;  ///< the first index
  std::size_t end = 0;    ///< one past the last index
  /// The number of indices; only for a range with begin <= end.
  std::size_t size() const noexcept { return end - begin; }
  /// Whether the range holds no index (also when begin > end).
  bool empty() const noexcept { return begin >= end; }
};

/// Tasks whose outcomes were recorded, as drain_outcomes() hands them over; any_failed says
/// whether failures_in() has something for them.
struct FinishedTasks {
  IndexRange range;         ///< the tasks, consecutive indices
  bool any_failed = false;  ///< whether at least one of them failed
};

/// Where a worker records the task it is running, so a backend can enforce timeouts and name
/// the task a dead worker was running. It may live in memory shared with worker processes.
struct RunningTask {
  /// The index of the task running, -1 between tasks. Written (release) after started_ns.
  std::atomic<std::int64_t> index{-1};
  /// When that task started: Job::Clock (steady_clock) nanoseconds since its epoch, which every
  /// process of the machine shares.
  std::atomic<std::int64_t> started_ns{0};
};

/// What a call asks of its backend.
struct JobSettings {
  int n_workers = 1;                                ///< workers to run: Backend::effective_n_jobs of n_jobs
  std::size_t batch_size = 0;                       ///< 0: adapt to task duration
  std::optional<std::chrono::nanoseconds> timeout;  ///< per task
  bool keep_going = false;                          ///< a failure does not cancel the rest
  bool results_to_root = false;                     ///< multi-process: only the root gets results
  int cpu_budget = 1;                               ///< CPUs the whole call may use
  std::optional<std::size_t> pre_dispatch;          ///< lazy input window; unset: read all first
  /// Process workers: result arrays above this go through files in temp_folder (see Config).
  std::size_t max_nbytes = std::numeric_limits<std::size_t>::max();
  std::string temp_folder;  ///< empty: /dev/shm with room, else TMPDIR
  /// The directory task attempts are recorded in (Config::trace); empty: none.
  std::string trace;
  /// How many more times a failed task runs (Config::retries), and which failures (retry_if;
  /// empty: every one).
  int retries = 0;
  std::function<bool(const std::exception&)> retry_if;  ///< see Config::retry_if
  /// keep_going calls: no task starts once this many failed (Config::max_failures); 0: no limit.
  std::size_t max_failures = 0;
  /// Whether the job keeps a state per task, so that the first of several outcomes recorded for
  /// one task wins and finished() can be asked: for backends whose outcomes arrive task by task
  /// from other processes, and calls with a timeout. Without it a task's outcome is recorded
  /// where it ran, once, and the only per-task memory of a call is its results.
  bool outcomes_per_task = false;
  /// Whether the input is read whole before the run starts (Backend::needs_all_tasks): workers
  /// in other processes cannot read it, nor see what the caller reads later. A range that can be
  /// indexed is not read: each worker makes its tasks from it.
  bool all_tasks_before_run = false;
};

/// One parallel call as a backend sees it. Thread-safe where noted.
class Job {
 public:
  /// The clock of deadlines and task start times.
  using Clock = std::chrono::steady_clock;

  /// Made by the Parallel front end (a subclass that knows the tasks' types), never by a backend.
  explicit Job(JobSettings settings) : settings_(std::move(settings)) {}
  virtual ~Job() = default;
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  /// What the call asks of its backend; fixed for the job's life.
  const JobSettings& settings() const noexcept { return settings_; }
  /// The call's name in task traces, the same in every process of the call; empty when the call
  /// is not traced. Set before the run starts.
  const std::string& trace_call() const noexcept { return trace_call_; }
  /// Names the call in task traces (the front end does, before the backend starts).
  void set_trace_call(std::string name) { trace_call_ = std::move(name); }
  /// Whether task `index` ran in a round of the call's campaign before the call started
  /// (CallStart::campaign()), so that its cached call loads what that round stored: no hit.
  bool loads_campaign_result(std::size_t index) const noexcept {
    return index < campaign_round_tasks_.size() && campaign_round_tasks_[index];
  }
  /// Tells the job that a round of its campaign ran these tasks (the front end does, before the
  /// call starts).
  void note_campaign_round(std::span<const std::size_t> indices) {
    if (campaign_round_tasks_.empty()) campaign_round_tasks_.assign(size(), false);
    for (std::size_t index : indices) {
      if (index < campaign_round_tasks_.size()) campaign_round_tasks_[index] = true;
    }
  }

  /// Counts over every worker of a call whose end is summarised (verbose > 0): busy time and
  /// cached calls, in counters forked workers add to (see detail::CallTally); null otherwise.
  detail::SharedCounters* tally() const noexcept { return tally_.get(); }
  /// Starts those counts, now (the front end does, before the call starts: before the rounds of
  /// its campaign, which count in them too).
  void start_tally();
  /// When start_tally() was called.
  Clock::time_point tally_started() const noexcept { return tally_started_; }
  /// The counts, to share with the calls that run rounds of this call's campaign.
  const std::shared_ptr<detail::SharedCounters>& shared_tally() const noexcept { return tally_; }
  /// Counts this job's tasks in another call's tally (a round of that call's campaign).
  void use_tally(std::shared_ptr<detail::SharedCounters> tally) noexcept { tally_ = std::move(tally); }

  // --- tasks ------------------------------------------------------------------------------
  /// Tasks read from the input so far (all of them once input_complete()).
  std::size_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  /// Whether the whole input was read (or reading it failed), so that size() is final.
  bool input_complete() const noexcept { return input_complete_.load(std::memory_order_acquire); }
  /// Thread-safe: the next at most `count` unclaimed indices; empty when none are left or the
  /// job is cancelled. Reads more of a lazy input as needed, one thread at a time.
  IndexRange claim(std::size_t count);
  /// Unclaimed tasks, for balancing batch sizes; an estimate while the input is lazy.
  std::size_t unclaimed() const noexcept;
  /// Thread-safe: runs these tasks in this process and records each outcome; stops at the
  /// first index reached after cancel(). Keeps `tracker` (if given) up to date. Never throws.
  /// A tracker needs settings().outcomes_per_task: whoever gives up on a task races its worker.
  void run(IndexRange range, RunningTask* tracker = nullptr);
  /// For backends whose workers are other processes: runs one task here and appends its
  /// outcome (value or error) as bytes for complete_encoded() on the other side. `arrays`,
  /// when given, takes the result's large arrays (detail/result_files.hpp).
  virtual void run_encoded(std::size_t index, std::string& out, detail::ArrayWriter* arrays = nullptr) noexcept = 0;
  /// The outcome bytes of a failure, as run_encoded() makes them (for failures a backend
  /// detects itself, such as a timeout, that other processes must learn about).
  static void encode_error(const std::exception_ptr& error, std::string& out) noexcept;
  /// Records an outcome made by run_encoded() in another process (at `where`); `arrays`
  /// resolves the references of a writer given to run_encoded(). Returns false, changing
  /// nothing, when the task already has an outcome.
  bool complete_encoded(std::size_t index, std::span<const std::byte> outcome, const ErrorSite& where,
                        detail::ArrayReader* arrays = nullptr);
  /// What recording one task's outcome came to.
  enum class TaskRun : std::uint8_t { succeeded, failed, not_recorded };
  /// @var TaskRun::succeeded
  /// Its value was recorded.

  /// @var TaskRun::failed
  /// Its error was recorded.

  /// @var TaskRun::not_recorded
  /// Nothing was: the task had an outcome already (a timeout or a worker's death came first), or
  /// the input range failed making it and the call fails with that error (fail_input()).

  /// complete_encoded() for a backend that receives many outcomes at once: records one without
  /// telling the caller, who then hands whole runs of them over with an OutcomeRun (adding each
  /// task that returns succeeded or failed).
  TaskRun record_encoded(std::size_t index, std::span<const std::byte> outcome, const ErrorSite& where,
                         detail::ArrayReader* arrays = nullptr);
  /// Hands recorded outcomes to the caller's thread in runs of consecutive tasks, not one by one:
  /// add() each task recorded; a run goes when the next task is not its neighbour, at flush(),
  /// or when the OutcomeRun goes (an exception included).
  class OutcomeRun {
   public:
    /// Collects runs for `job`, which must outlive it.
    explicit OutcomeRun(Job& job) noexcept : job_(job) {}
    /// Hands over the run collected last (flush()).
    ~OutcomeRun() { flush(); }
    OutcomeRun(const OutcomeRun&) = delete;
    OutcomeRun& operator=(const OutcomeRun&) = delete;
    /// Adds task `index`, whose outcome was just recorded (`failed`: as a failure). Hands over the
    /// run collected so far first when `index` does not follow its last task.
    void add(std::size_t index, bool failed) {
      if (range_.end != index) flush();
      if (range_.empty()) range_.begin = index;
      range_.end = index + 1;
      any_failed_ = any_failed_ || failed;
    }
    /// Hands over the run collected so far, if any.
    void flush() {
      if (!range_.empty()) job_.publish(range_, any_failed_);
      range_ = {};
      any_failed_ = false;
    }

   private:
    Job& job_;
    IndexRange range_;
    bool any_failed_ = false;
  };
  /// Records that a task failed outside its own code (timeout, worker died). Returns false and
  /// changes nothing when the task already has an outcome.
  bool complete_failed(std::size_t index, std::exception_ptr error);
  /// After the run ended early (Config::max_failures): records every task read that has no
  /// outcome as failed with NotRunError ("task i was not run: `why`"), untraced, as they never ran;
  /// returns how many. Needs settings().outcomes_per_task.
  std::size_t fail_tasks_not_run(const std::string& why);

  // --- retries (Config::retries) ---------------------------------------------------------
  /// A task's attempt that failed with `error`: whether the call allows it another one. If so
  /// the attempt is noted (for the final error, the log and the trace: the trace line is written
  /// here when the task runs on this thread) and the caller runs the task again: in place for an
  /// exception, in a fresh worker for a dead one. Thread-safe; one thread at a time per task.
  bool retry_attempt(std::size_t index, const std::exception_ptr& error) noexcept;
  /// The attempt task `index` is at: 1 for its first run.
  int attempt(std::size_t index) const noexcept;
  /// What a task that failed with `error` on its last attempt fails with: `error` itself when it
  /// ran once, else a RetriesExhaustedError listing every attempt.
  std::exception_ptr final_error(std::size_t index, std::exception_ptr error) const noexcept;

  /// Whether results can cross a process boundary (their type can be encoded): backends whose
  /// workers are other processes refuse a call whose results cannot (ConfigError).
  virtual bool results_encodable() const noexcept = 0;
  /// The result type's name as people write it, for error messages.
  virtual std::string result_type_name() const = 0;

  // --- outcomes ---------------------------------------------------------------------------
  /// Whether task `index` has an outcome; only a job with settings().outcomes_per_task knows
  /// (others report finished tasks through drain_outcomes()).
  bool finished(std::size_t index) const noexcept {
    return settings_.outcomes_per_task && states_[index].load(std::memory_order_acquire) >= kSucceeded;
  }
  /// Whether task `index`, which has an outcome, failed. Thread-safe.
  bool failed(std::size_t index) const noexcept { return error(index) != nullptr; }
  /// The error of task `index`; null when it succeeded or has no outcome yet. Thread-safe.
  std::exception_ptr error(std::size_t index) const noexcept;
  /// The failures among `range`, in index order.
  std::vector<std::pair<std::size_t, std::exception_ptr>> failures_in(IndexRange range) const;
  /// An exception thrown while reading the input range; the call rethrows it.
  std::exception_ptr input_error() const;
  /// For backends whose results go to another process only (MPI with ResultsTo::root): the
  /// call is over here and returns no results. Thread-safe; wakes the caller.
  void finish_without_results();
  /// False once finish_without_results() was called: the results are in another process.
  bool results_here() const noexcept { return results_here_.load(std::memory_order_acquire); }

  // --- cancellation -----------------------------------------------------------------------
  /// Thread-safe: hands out and starts no task any more (claim() returns nothing, run() stops
  /// before its next task). Running tasks go on; the caller is not woken (see wake_caller()).
  void cancel() noexcept { cancelled_.store(true, std::memory_order_release); }
  /// Whether cancel() was called.
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }
  /// A top-level call stops handing out tasks the moment a graceful stop is requested
  /// (SIGTERM/SIGUSR1 under Session); a nested one runs to its end inside its task.
  void set_stops_on_signal(bool stops) noexcept { stops_on_signal_.store(stops, std::memory_order_relaxed); }
  /// Whether no new task should start: cancelled, or stopping on a signal.
  bool stopping() const noexcept;
  /// Hands out no task at or after `index` any more and ends runs there, while the tasks before
  /// it go on (an ordered generator's first failure: it yields every result before it first).
  void stop_at(std::size_t index) noexcept;

  // --- a generator's consumer (pre_dispatch) ------------------------------------------------
  /// With pre_dispatch set, the call of a generator hands out (and reads from a lazy input) no
  /// task at or past the results its consumer took plus pre_dispatch: a consumer that stops
  /// taking stops the input and the work too. follow_consumer() starts that, before the run.
  void follow_consumer() noexcept;
  /// The consumer took `taken` results in all: the window now ends `pre_dispatch` tasks past them.
  void consumer_took(std::size_t taken) noexcept;
  /// Whether a claim could hand out a task now, as far as the window, the input and a stop allow.
  bool claimable() const noexcept;
  /// Whether follow_consumer() took effect (it does only with pre_dispatch set).
  bool follows_consumer() const noexcept { return follows_consumer_; }

  // --- waking the caller (the front end's thread) -----------------------------------------
  /// Whether the caller wants waking for every outcome (generators) or only when the last
  /// task finished or one failed (lists: fewer wake-ups, less overhead per task).
  void set_wake_on_each_outcome(bool each) noexcept { wake_each_.store(each, std::memory_order_relaxed); }
  /// What set_wake_on_each_outcome() chose last; true before it is called.
  bool wakes_on_each_outcome() const noexcept { return wake_each_.load(std::memory_order_relaxed); }
  /// Blocks until outcomes were recorded that drain_outcomes() has not taken, wake_caller() was
  /// called, or `deadline` passed; returns whether there are outcomes to drain.
  bool wait_for_outcomes(Clock::time_point deadline);
  /// Moves the tasks recorded since the last call into `out` (appending).
  void drain_outcomes(std::vector<FinishedTasks>& out);
  /// Wakes a caller blocked in wait_for_outcomes() (after cancel(), or a failure with no outcome).
  void wake_caller();

 protected:
  /// A task state with settings().outcomes_per_task: no outcome yet. A task moves on to
  /// kWriting, then to kSucceeded or kFailed, and never back.
  static constexpr std::uint8_t kPending = 0, kWriting = 1, kSucceeded = 2, kFailed = 3;
  /// @var kWriting
  /// A task state: claim_outcome() succeeded and the outcome is being written.

  /// @var kSucceeded
  /// A task state: its value was recorded, for good.

  /// @var kFailed
  /// A task state: its error was recorded, for good.

  // --- what the typed front end provides ---
  /// Reads the input until `count` tasks exist or it ends; returns the new size. Called with
  /// the input lock held; may throw (the exception fails the call).
  virtual std::size_t read_input(std::size_t count, bool& exhausted) = 0;
  /// Runs task `index` and records its outcome (not_recorded: a timeout or worker death
  /// recorded one first, or making the task failed and fail_input() was called).
  virtual TaskRun run_task(std::size_t index) noexcept = 0;
  /// Decodes and records a value made by run_encoded(); false when the task had an outcome.
  virtual bool store_encoded(std::size_t index, std::span<const std::byte> value, detail::ArrayReader* arrays) = 0;
  /// Task `index` failed outside its own code (complete_failed(): its worker died, or it ran past
  /// its timeout), so its own code could not tell anyone: a cached call records it in its cache.
  virtual void failed_outside_task(std::size_t /*index*/, const std::exception_ptr& /*error*/) noexcept {}
  /// Makes task `index` from the range here and returns what that throws: the range failed
  /// making it in another process, which could send only a description (null: it did not throw
  /// here).
  virtual std::exception_ptr remake_task(std::size_t index) noexcept = 0;

  // --- recording outcomes, for the typed front end ---
  /// Makes the caller the one who records task `index`'s outcome; false when another did.
  bool claim_outcome(std::size_t index) noexcept {
    if (!settings_.outcomes_per_task) return true;
    std::uint8_t expected = kPending;
    return states_[index].compare_exchange_strong(expected, kWriting, std::memory_order_acq_rel);
  }
  /// After claim_outcome() and storing the value.
  void settle_success(std::size_t index) noexcept {
    if (settings_.outcomes_per_task) states_[index].store(kSucceeded, std::memory_order_release);
  }
  /// Claims and records a failure; false when the task had an outcome.
  bool record_failure(std::size_t index, std::exception_ptr error) noexcept;
  /// The input range failed while a task was made from it: the call fails with `error`.
  void fail_input(std::exception_ptr error) noexcept;
  /// The outcome bytes of a range that failed making task `index` in a worker process, for
  /// run_encoded(): the receiving side makes the task again to get the range's own exception.
  static void encode_input_error(const std::exception_ptr& error, std::string& out) noexcept;

  /// For typed jobs constructed with their whole input already read, or able to make any task.
  void set_complete_input(std::size_t size);
  /// Hands recorded outcomes of the tasks in `range` to the caller's thread.
  void publish(IndexRange range, bool any_failed);

 private:
  JobSettings settings_;
  std::string trace_call_;
  std::vector<bool> campaign_round_tasks_;  // empty: no round ran
  std::shared_ptr<detail::SharedCounters> tally_;
  Clock::time_point tally_started_{};
  std::atomic<std::size_t> size_{0};
  std::atomic<bool> input_complete_{false};
  std::atomic<std::size_t> next_{0};
  std::atomic<bool> cancelled_{false};
  std::atomic<std::size_t> stop_at_{std::numeric_limits<std::size_t>::max()};
  /// The consumer's window end (follow_consumer); claims never pass it, and it only grows.
  std::atomic<std::size_t> window_end_{std::numeric_limits<std::size_t>::max()};
  bool follows_consumer_ = false;
  std::atomic<bool> stops_on_signal_{false};
  std::atomic<bool> results_here_{true};
  std::mutex input_mutex_;
  std::exception_ptr input_error_;
  std::atomic<bool> input_failed_{false};
  /// With input_mutex_ held: keeps the first error the input range threw, and cancels the call.
  void note_input_error(std::exception_ptr error) noexcept;
  /// claim() with input_mutex_ held: reads a lazy input `read_ahead` tasks past the claim, then
  /// hands out at most `count` tasks, none at or past `limit` (the consumer's window end).
  IndexRange claim_locked(std::size_t count, std::size_t read_ahead, std::size_t limit);

  /// With settings_.outcomes_per_task: one state per task read (kPending...kFailed).
  detail::StableVector<std::atomic<std::uint8_t>> states_;
  /// Failures are rare: they are kept apart, so that a task that succeeds costs nothing here.
  mutable std::mutex failures_mutex_;
  std::map<std::size_t, std::exception_ptr> failures_;
  std::atomic<bool> any_failure_{false};
  /// The failed attempts of tasks that were retried, each described ("std::runtime_error: ..
  /// (task 3, pid 12 on node07)"); rare, so kept apart like failures.
  mutable std::mutex retries_mutex_;
  std::map<std::size_t, std::vector<std::string>> failed_attempts_;
  std::atomic<bool> any_retried_{false};

  std::mutex outcomes_mutex_;
  std::condition_variable outcomes_ready_;
  std::vector<FinishedTasks> published_;
  std::size_t published_count_ = 0;
  bool caller_waiting_ = false;
  bool wake_requested_ = false;
  std::atomic<bool> wake_each_{true};
};

/// One call being executed by a backend.
class Run {
 public:
  virtual ~Run() = default;
  /// Makes progress until an outcome is recorded or `deadline` passes. Backends that run
  /// tasks in the caller's thread run them here; others wait, enforce the per-task timeout
  /// and detect dead workers.
  virtual void wait(Job::Clock::time_point deadline) = 0;
  /// Starts no more tasks and stops workers (processes are killed). The destructor then
  /// returns once no worker runs a task of this call, except tasks abandoned after a timeout.
  virtual void cancel() noexcept = 0;
  /// Starts no more tasks but lets every running task finish, however long it takes (a graceful
  /// stop before a time limit); the destructor waits for them.
  virtual void stop() noexcept { cancel(); }
  /// The consumer took more results (Job::consumer_took): workers that stopped at the end of its
  /// window may go on.
  virtual void resume() {}
};

/// A way to run the tasks of calls (threads, worker processes, MPI ranks, ...), made by the
/// factory register_backend() stored under its name. Each Parallel object gets its own instance
/// when constructed, and start() runs each of its calls.
class Backend {
 public:
  virtual ~Backend() = default;
  /// The number of workers `n_jobs` (non-zero; negative counts from the CPUs) means for this
  /// backend. The default is the free function joblet::effective_n_jobs().
  virtual int effective_n_jobs(int n_jobs) const;
  /// The n_jobs a call gets when neither it nor a scope sets one (joblib: 1).
  virtual int default_n_jobs() const { return 1; }
  /// Tasks run in the caller's memory (required by Require::sharedmem).
  virtual bool shares_memory() const noexcept = 0;
  /// Every task must be read before the run starts (fork and MPI backends).
  virtual bool needs_all_tasks() const noexcept { return false; }
  /// Whether a call with one worker should run as a plain loop in the caller instead (as the
  /// built-in threads and processes backends do, following joblib's n_jobs = 1). A backend
  /// that returns false gets every call made with it, whatever n_jobs.
  virtual bool sequential_when_one_worker() const noexcept { return false; }
  /// Whether every call starts a run, even one with no tasks: for backends whose calls are
  /// collectives of several processes (MPI), where a process with an empty input must still meet
  /// the others (and be told when theirs is not empty) instead of leaving them waiting.
  virtual bool starts_every_call() const noexcept { return false; }
  /// Starts running the tasks of `job`, one call, on the caller's thread. The caller drives the
  /// Run returned with Run::wait() until every task has an outcome or the call ends otherwise,
  /// then destroys it. Not called when the whole input is read and empty, unless
  /// starts_every_call().
  virtual std::unique_ptr<Run> start(std::shared_ptr<Job> job) = 0;
  /// For backends whose calls span processes (MPI): whether `value` holds in every one of them,
  /// so that all take the same branch. Collective there; identity elsewhere.
  virtual bool all_agree(bool value) { return value; }
  /// For the same backends: the value the first of those processes (rank 0) passed, so that all
  /// act on one decision. Collective there; identity elsewhere.
  virtual std::int64_t first_process_value(std::int64_t value) { return value; }
};

/// Makes a new instance of a backend, for each Parallel object that uses it: possibly on several
/// threads at once. Returning null fails the Parallel's construction with ConfigError.
using BackendFactory = std::function<std::unique_ptr<Backend>()>;

/// Registers a backend under `name`. Throws ConfigError when the name is taken or empty.
void register_backend(const std::string& name, BackendFactory factory);
/// The registered names, sorted.
std::vector<std::string> backend_names();
/// A new instance of the named backend; ConfigError listing the registered names when unknown.
std::unique_ptr<Backend> make_backend(const std::string& name);
/// The backend used when nothing names one ("threads" unless a launcher chose another).
std::string default_backend();
/// Makes the registered backend `name` the default from now on: Parallel objects constructed
/// later use it when neither their Config, a ParallelConfig scope, JOBLET_BACKEND nor `prefer`
/// names one (a joblet::Session over several MPI ranks picks "mpi"). Throws ConfigError when `name`
/// is not registered.
void set_default_backend(const std::string& name);

}  // namespace joblet
