#include "mpi_compute.hpp"

#include <optional>
#include <span>
#include <thread>
#include <utility>

#include "joblet/detail/frames.hpp"
#include "joblet/detail/result_files.hpp"
#include "joblet/detail/runtime.hpp"
#include "joblet/detail/task_tally.hpp"
#include "joblet/detail/task_trace.hpp"
#include "mpi_claims.hpp"

namespace joblet::detail {
namespace {

std::int64_t now_ns() { return Job::Clock::now().time_since_epoch().count(); }

class RunsMpiTasks {
 public:
  RunsMpiTasks() noexcept : outer_(std::exchange(thread_context().runs_mpi_tasks, true)) {}
  ~RunsMpiTasks() { thread_context().runs_mpi_tasks = outer_; }
  RunsMpiTasks(const RunsMpiTasks&) = delete;
  RunsMpiTasks& operator=(const RunsMpiTasks&) = delete;

 private:
  bool outer_;
};

}  // namespace

bool runs_mpi_tasks() noexcept { return thread_context().runs_mpi_tasks; }

MpiComputeThreads::MpiComputeThreads(std::shared_ptr<Job> job, std::unique_ptr<MpiTaskCounter> counter,
                                     std::shared_ptr<const ResultFiles> results)
    : job_(std::move(job)), counter_(std::move(counter)), results_(std::move(results)) {}

MpiComputeThreads::~MpiComputeThreads() = default;

void MpiComputeThreads::start_thread() {
  std::thread([self = shared_from_this()] { self->loop(); }).detach();
}

void MpiComputeThreads::give(IndexRange range) {
  bool wake = true;
  {
    std::lock_guard lock(mutex_);
    if (range.empty()) {
      no_more_work_ = true;
    } else {
      queue_.push_back(range);
      wake = !caller_runs_;  // waking a thread that would not take the batch costs two switches
    }
  }
  if (wake) work_ready_.notify_all();
}

void MpiComputeThreads::stop() {
  {
    std::lock_guard lock(mutex_);
    queue_.clear();
    no_more_work_ = true;
  }
  work_ready_.notify_all();
}

MpiComputeThreads::Backlog MpiComputeThreads::backlog() {
  std::lock_guard lock(mutex_);
  return {queue_.size(), busy_ > 0, batch_started_ns_.load(std::memory_order_relaxed),
          batch_tasks_.load(std::memory_order_relaxed)};
}

bool MpiComputeThreads::idle() {
  std::lock_guard lock(mutex_);
  return busy_ == 0 && queue_.empty() && finished_.empty();
}

bool MpiComputeThreads::running_unabandoned() {
  std::lock_guard lock(mutex_);
  return busy_ > 0 && running_task_.abandoned.load() < 0;
}

std::vector<MpiComputeThreads::Finished> MpiComputeThreads::take_finished() {
  if (!has_finished()) return {};
  std::vector<Finished> finished;
  std::lock_guard lock(mutex_);
  finished.swap(finished_);
  finished_count_.store(0, std::memory_order_release);
  return finished;
}

void MpiComputeThreads::wait_for_finished(std::chrono::microseconds timeout) {
  std::unique_lock lock(mutex_);
  outcomes_ready_.wait_for(lock, timeout, [&] { return !finished_.empty(); });
}

void MpiComputeThreads::run_on_caller(bool on) {
  {
    std::lock_guard lock(mutex_);
    if (caller_runs_ == on) return;
    caller_runs_ = on;
  }
  if (!on) work_ready_.notify_all();
}

IndexRange MpiComputeThreads::take_here() {
  std::lock_guard lock(mutex_);
  return queue_.empty() ? IndexRange{} : start_next_locked();
}

void MpiComputeThreads::run_here(IndexRange range) {
  Finished finished = run(range);
  std::lock_guard lock(mutex_);
  finish_locked(std::move(finished));
}

void MpiComputeThreads::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (queue_.empty() && counter_ && !no_more_work_) {
      const IndexRange own = counter_->grant_own();
      if (own.empty()) {
        no_more_work_ = true;
      } else {
        queue_.push_back(own);
      }
    }
    work_ready_.wait(lock, [&] { return (!queue_.empty() && !caller_runs_) || (queue_.empty() && no_more_work_); });
    if (queue_.empty()) return;
    const IndexRange range = start_next_locked();
    lock.unlock();
    outcomes_ready_.notify_one();  // the caller may want to ask for the next batch now
    Finished finished = run(range);
    lock.lock();
    finish_locked(std::move(finished));
    outcomes_ready_.notify_one();
  }
}

IndexRange MpiComputeThreads::start_next_locked() {
  const IndexRange range = queue_.front();
  queue_.pop_front();
  ++busy_;
  batch_tasks_.store(range.size(), std::memory_order_relaxed);
  batch_started_ns_.store(now_ns(), std::memory_order_relaxed);
  return range;
}

void MpiComputeThreads::finish_locked(Finished finished) {
  --busy_;
  finished_.push_back(std::move(finished));
  finished_count_.store(finished_.size(), std::memory_order_release);
}

MpiComputeThreads::Finished MpiComputeThreads::run(IndexRange range) {
  // On the calling thread too (run_here): a task that starts an mpi call must be told it cannot.
  const RunsMpiTasks scope;
  std::string frames;
  const auto start = Clock::now();
  ArrayWriter* arrays = results_ ? &results_->writer() : nullptr;  // large arrays to files, references in frames
  const bool timed = job_->settings().timeout.has_value();         // only the watchdog reads started_ns
  TaskTrace trace(*job_);
  TaskTally tally(*job_);  // no tally on mpi: marks the loads of a campaign's results
  for (std::size_t index = range.begin; index < range.end && !job_->stopping(); ++index) {
    if (timed) running_task_.started_ns.store(now_ns(), std::memory_order_relaxed);
    running_task_.index.store(static_cast<std::int64_t>(index), std::memory_order_release);
    trace.start();
    tally.start(index);
    append_frame(frames, index, [&](std::string& out) {
      const std::size_t outcome_start = out.size();
      job_->run_encoded(index, out, arrays);
      if (trace.on()) trace.finish_encoded(index, std::as_bytes(std::span(out).subspan(outcome_start)));
    });
    running_task_.index.store(-1, std::memory_order_release);
  }
  return {range, std::move(frames), Clock::now() - start};
}

}  // namespace joblet::detail
