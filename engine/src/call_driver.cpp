#include "joblet/detail/call.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/task_scope.hpp"
#include "progress_reporter.hpp"

#include <signal.h>

#include <algorithm>

namespace joblet::detail {

CallDriver::CallDriver(std::shared_ptr<Job> job, const CallPlan& plan, bool streaming)
    : job_(std::move(job)),
      keep_going_(job_->settings().keep_going),
      // Across MPI ranks, progress is printed by rank 0 only (callbacks run on every rank).
      reporter_(std::make_unique<ProgressReporter>(process_rank() > 0 ? 0 : plan.verbose, plan.progress,
                                                   plan.backend_name, job_->settings().n_workers)) {
  job_->set_wake_on_each_outcome(streaming || plan.verbose > 0 || plan.progress != nullptr);
  if (!in_task()) {
    running_.emplace();
    job_->set_stops_on_signal(true);
  }
  // An empty input needs no workers, unless the backend's calls are collectives.
  if (!all_finished() || plan.backend->starts_every_call()) run_ = plan.backend->start(job_);
}

CallDriver::~CallDriver() {
  if (run_ && !all_finished()) cancel();
  run_.reset();  // waits for running in-process tasks, reaps worker processes
}

void CallDriver::cancel() noexcept {
  cancelled_ = true;
  job_->cancel();
  if (run_) run_->cancel();
}

bool CallDriver::all_finished() const noexcept {
  return !job_->results_here() || (job_->input_complete() && done_ >= job_->size());
}

void CallDriver::report(bool finished) {
  if (reported_end_) return;
  reported_end_ = finished;
  const auto total = job_->input_complete() ? std::optional<std::size_t>(job_->size()) : std::nullopt;
  reporter_->update(done_, failed_, total, finished);
}

bool CallDriver::advance(std::vector<std::size_t>& finished) {
  const std::size_t before = finished.size();
  for (;;) {
    if (running_ && stop_requested()) stop_and_exit();
    if (failure_ && !keep_going_) std::rethrow_exception(failure_);
    if (all_finished()) {
      report(true);
      return false;
    }
    // Cancelled: tasks that never started will never finish. Hand over what has arrived, then
    // report the end instead of waiting for the rest.
    if (!cancelled_) run_->wait(Job::Clock::now() + reporter_->interval());
    drained_.clear();
    job_->drain_outcomes(drained_);
    for (const IndexRange& range : drained_) {
      for (std::size_t index = range.begin; index < range.end; ++index) {
        finished.push_back(index);
        ++done_;
        if (job_->failed(index)) {
          ++failed_;
          if (!failure_) failure_ = job_->error(index);
        }
      }
    }
    // The input range itself failed: there is nothing to keep going with.
    if (auto input_error = job_->input_error()) {
      failure_ = input_error;
      cancel();
      report(true);
      std::rethrow_exception(failure_);
    }
    if (failure_ && !keep_going_) {
      cancel();
      report(true);
      std::rethrow_exception(failure_);
    }
    if (finished.size() > before) {
      report(all_finished());
      return true;
    }
    if (cancelled_) {
      report(true);
      return false;
    }
    report(false);
  }
}

void CallDriver::stop_and_exit() {
  job_->cancel();
  if (run_) {
    run_->stop();
    run_.reset();  // returns once every running task has finished
  }
  drained_.clear();
  job_->drain_outcomes(drained_);
  for (const IndexRange& range : drained_) done_ += range.size();
  const std::size_t total = job_->size();
  const int signal = stop_signal();
  log().warn(
      "stopped by {}: {} of {} tasks done, {} remaining; the results of cached tasks are in the cache: run "
      "the same command again to compute only what is missing",
      signal == SIGUSR1 ? "SIGUSR1 (early warning of the time limit)" : "SIGTERM", done_, total,
      total - std::min(done_, total));
  report(true);
  exit_process(kIncompleteExitStatus);
}

}  // namespace joblet::detail
