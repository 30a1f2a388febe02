#include "mpi_compute.hpp"

#include <optional>
#include <thread>

#include "joblet/detail/frames.hpp"
#include "joblet/detail/result_files.hpp"
#include "joblet/detail/runtime.hpp"
#include "mpi_claims.hpp"

namespace joblet::detail {
namespace {

std::int64_t now_ns() { return Job::Clock::now().time_since_epoch().count(); }

}  // namespace

bool runs_mpi_tasks() noexcept { return thread_context().runs_mpi_tasks; }

MpiComputeThreads::MpiComputeThreads(std::shared_ptr<Job> job, std::unique_ptr<MpiTaskCounter> counter,
                                     std::shared_ptr<const ResultFiles> results)
    : job_(std::move(job)), counter_(std::move(counter)), results_(std::move(results)) {}

MpiComputeThreads::~MpiComputeThreads() = default;

void MpiComputeThreads::start_thread() {
  std::thread([self = shared_from_this()] {
    thread_context().runs_mpi_tasks = true;
    self->loop();
  }).detach();
}

void MpiComputeThreads::give(IndexRange range) {
  {
    std::lock_guard lock(mutex_);
    if (range.empty()) {
      no_more_work_ = true;
    } else {
      queue_.push_back(range);
    }
  }
  work_ready_.notify_all();
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
  return {!queue_.empty(), busy_ > 0, batch_started_ns_.load(std::memory_order_relaxed),
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

std::deque<MpiComputeThreads::Finished> MpiComputeThreads::take_finished() {
  std::deque<Finished> finished;
  std::lock_guard lock(mutex_);
  finished.swap(finished_);
  return finished;
}

void MpiComputeThreads::wait_for_finished(std::chrono::microseconds timeout) {
  std::unique_lock lock(mutex_);
  outcomes_ready_.wait_for(lock, timeout, [&] { return !finished_.empty(); });
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
    work_ready_.wait(lock, [&] { return !queue_.empty() || no_more_work_; });
    if (queue_.empty()) return;
    const IndexRange range = queue_.front();
    queue_.pop_front();
    ++busy_;
    lock.unlock();
    batch_tasks_.store(range.size(), std::memory_order_relaxed);
    batch_started_ns_.store(now_ns(), std::memory_order_relaxed);
    outcomes_ready_.notify_one();  // the caller may want to ask for the next batch now
    std::string frames;
    const auto start = Clock::now();
    ArrayWriter* arrays = results_ ? &results_->writer() : nullptr;  // large arrays to files, references in frames
    for (std::size_t index = range.begin; index < range.end && !job_->stopping(); ++index) {
      running_task_.started_ns.store(now_ns(), std::memory_order_relaxed);
      running_task_.index.store(static_cast<std::int64_t>(index), std::memory_order_release);
      append_frame(frames, index, [&](std::string& out) { job_->run_encoded(index, out, arrays); });
      running_task_.index.store(-1, std::memory_order_release);
    }
    const auto elapsed = Clock::now() - start;
    lock.lock();
    --busy_;
    finished_.push_back({range, std::move(frames), elapsed});
    outcomes_ready_.notify_one();
  }
}

}  // namespace joblet::detail
