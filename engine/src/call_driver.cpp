#include "joblet/detail/call.hpp"
#include "joblet/detail/campaign_start.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/shared_counters.hpp"
#include "joblet/detail/task_scope.hpp"
#include "joblet/detail/task_trace.hpp"
#include "progress_reporter.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace joblet::detail {

std::size_t PlainCallStart::size() const noexcept { return job_.size(); }
bool PlainCallStart::input_complete() const noexcept { return job_.input_complete(); }
const std::string& PlainCallStart::backend_name() const noexcept { return plan_.backend_name; }
int PlainCallStart::n_workers() const noexcept { return plan_.settings.n_workers; }
bool PlainCallStart::nested() const noexcept { return in_task(); }
bool PlainCallStart::keep_going() const noexcept { return job_.settings().keep_going; }
bool PlainCallStart::collective() const noexcept { return plan_.backend->starts_every_call(); }
bool PlainCallStart::all_agree(bool value) { return plan_.backend->all_agree(value); }
std::int64_t PlainCallStart::first_process_value(std::int64_t value) {
  return plan_.backend->first_process_value(value);
}

namespace {
thread_local std::optional<CampaignRound> t_next_round;
}  // namespace

CampaignRoundScope::CampaignRoundScope(const CampaignRound& round) noexcept { t_next_round = round; }
CampaignRoundScope::~CampaignRoundScope() { t_next_round.reset(); }

void start_tally_if_summarised(Job& job, const CallPlan& plan) {
  // Workers forked by this process add to the tally; an MPI rank's would count its own tasks only.
  if (plan.verbose > 0 && !t_next_round && !plan.backend->starts_every_call()) job.start_tally();
}

void notify_call_start(const CallObservers& observers, CallStart& call) {
  for (const auto& observer : observers) observer->on_call_start(call);
}

CallDriver::CallDriver(std::shared_ptr<Job> job, const CallPlan& plan, bool streaming, bool in_order)
    : job_(std::move(job)),
      keep_going_(job_->settings().keep_going),
      // The ranks of a collective call agree on failures as a list does.
      in_order_(in_order && !keep_going_ && !plan.backend->starts_every_call()),
      round_(std::exchange(t_next_round, std::nullopt)),
      // Across MPI ranks, progress is printed by rank 0 only (callbacks run on every rank).
      reporter_(std::make_unique<ProgressReporter>(
          process_rank() > 0 ? 0 : plan.verbose, plan.progress, plan.backend_name, job_->settings().n_workers,
          round_ ? round_->share_started : std::nullopt, !round_ || round_->first)),
      observers_(call_observers()),
      started_(Job::Clock::now()) {
  job_->set_wake_on_each_outcome(streaming || plan.verbose > 0 || plan.progress != nullptr);
  if (!in_task()) {
    running_.emplace();
    job_->set_stops_on_signal(true);
  }
  if (round_ && round_->tally) job_->use_tally(round_->tally);
  if (!job_->settings().trace.empty()) {
    detail::open_trace(job_->settings().trace);
    job_->set_trace_call(new_trace_call_name(plan.backend->starts_every_call()));
  }
  // An empty input needs no workers, unless the backend's calls are collectives.
  if (!all_finished() || plan.backend->starts_every_call()) run_ = plan.backend->start(job_);
}

CallDriver::~CallDriver() {
  if (run_ && !all_finished()) cancel();
  run_.reset();          // waits for running in-process tasks, reaps worker processes
  if (!reported_end_) {  // a generator dropped before its end
    try {
      report(true);
    } catch (...) {  // observers must not throw at the end; nothing can be reported from here
    }
  }
}

void CallDriver::cancel() noexcept {
  cancelled_ = true;
  job_->cancel();
  if (run_) run_->cancel();
}

bool CallDriver::all_finished() const noexcept {
  return !job_->results_here() || (job_->input_complete() && done_ >= job_->size());
}

void CallDriver::report(bool finished, int stop_signal) {
  if (reported_end_) {
    // A stop that arrived after the call's end was reported (between its last tasks and the
    // caller's last look): the observers still hear of it, so that launch/'s time-limit policy
    // ends the process (status 75) here, as it does on every MPI rank of a stopped call.
    if (stop_signal != 0) tell_observers_the_end(stop_signal);
    return;
  }
  reported_end_ = finished;
  const auto total = job_->input_complete() ? std::optional<std::size_t>(job_->size()) : std::nullopt;
  if (round_) {
    const std::size_t before = round_->done_here + round_->done_elsewhere;
    // A share of many rounds counts its rate from the share's start, over all its rounds.
    const std::size_t not_this_share = round_->share_started ? round_->done_elsewhere : before;
    reporter_->update(before + done_ - put_aside_, failed_ - put_aside_, round_->tasks, finished && round_->last,
                      {.done_before = not_this_share, .done_elsewhere = round_->done_elsewhere});
  } else {
    reporter_->update(done_, failed_, total, finished);
  }
  if (finished && !round_ && job_->tally() != nullptr) summarise();
  if (finished) tell_observers_the_end(stop_signal);
}

void CallDriver::summarise() const {
  const SharedCounters& tally = *job_->tally();
  constexpr double kSecondsPerNs = 1e-9;
  reporter_->summarise(
      {.done = done_,
       .failed = failed_,
       .not_run = not_run_,
       .cache_hits = tally.load(kTallyCacheHits),
       .cache_computed = tally.load(kTallyCacheComputed),
       .saved_seconds = static_cast<double>(tally.load(kTallySavedNs)) * kSecondsPerNs,
       .busy_seconds = static_cast<double>(tally.load(kTallyBusyNs)) * kSecondsPerNs,
       .workers = job_->settings().n_workers,
       .elapsed_seconds = std::chrono::duration<double>(Job::Clock::now() - job_->tally_started()).count()});
}

void CallDriver::tell_observers_the_end(int stop_signal) {
  if (!observers_) return;
  const CallEnd end{.tasks = job_->size(),
                    .done = done_,
                    .failed = failed_,
                    .stop_signal = stop_signal,
                    .nested = !running_.has_value(),
                    .elapsed = Job::Clock::now() - started_};
  for (const auto& observer : *observers_) observer->on_call_end(end);
}

void CallDriver::took(std::size_t taken) {
  if (!job_->follows_consumer()) return;
  job_->consumer_took(taken);
  run_->resume();
}

bool CallDriver::advance(std::vector<IndexRange>& finished) {
  const std::size_t before = finished.size();
  for (;;) {
    if (running_ && stop_requested()) stop_gracefully();
    if (failure_ && !keep_going_ && !in_order_) std::rethrow_exception(failure_);
    if (all_finished()) {
      report(true);
      return false;
    }
    // Cancelled: tasks that never started will never finish. Hand over what has arrived, then
    // report the end instead of waiting for the rest.
    if (!cancelled_) run_->wait(Job::Clock::now() + reporter_->interval());
    drained_.clear();
    job_->drain_outcomes(drained_);
    for (const FinishedTasks& tasks : drained_) {
      finished.push_back(tasks.range);
      done_ += tasks.range.size();
      std::vector<std::pair<std::size_t, std::exception_ptr>> failures;
      if (tasks.any_failed) failures = job_->failures_in(tasks.range);
      for (const auto& [index, error] : failures) {
        ++failed_;
        if (stopped_for_failures_ && is_error_of<NotRunError>(error)) ++not_run_;
        if (!failure_) failure_ = error;
        first_failed_ = std::min(first_failed_, index);
        if (round_ && is_put_aside(error)) ++put_aside_;
      }
      if (observers_) {
        auto failure = failures.begin();
        for (std::size_t index = tasks.range.begin; index < tasks.range.end; ++index) {
          const bool failed = failure != failures.end() && failure->first == index;
          // A task never run (max_failures) did nothing an observer could record.
          const bool not_run = failed && stopped_for_failures_ && is_error_of<NotRunError>(failure->second);
          if (failed) ++failure;
          if (not_run) continue;
          for (const auto& observer : *observers_) observer->on_task_done({.index = index, .failed = failed});
        }
      }
    }
    const std::size_t max_failures = job_->settings().max_failures;
    if (max_failures > 0 && keep_going_ && !stopped_for_failures_ && failed_ - put_aside_ >= max_failures) {
      stop_for_failures();
    }
    // The input range itself failed: there is nothing to keep going with.
    if (auto input_error = job_->input_error()) {
      failure_ = input_error;
      cancel();
      report(true);
      std::rethrow_exception(failure_);
    }
    if (failure_ && !keep_going_) {
      if (in_order_) {
        job_->stop_at(first_failed_);  // the caller rethrows it when it gets there
      } else {
        cancel();
        report(true);
        std::rethrow_exception(failure_);
      }
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

void CallDriver::stop_for_failures() {
  stopped_for_failures_ = true;
  cancelled_ = true;
  job_->cancel();
  if (run_) {
    run_->stop();
    run_.reset();  // returns once every running task has finished
  }
  const std::size_t limit = job_->settings().max_failures;
  const std::size_t not_run = job_->fail_tasks_not_run(
      fmt::format("the call stopped after {} failed tasks (Config::max_failures = {})", failed_ - put_aside_, limit));
  log().warn("{} tasks failed, reaching max_failures = {}: the call started no more tasks and {} were not run",
             failed_ - put_aside_, limit, not_run);
}

void CallDriver::stop_gracefully() {
  job_->cancel();
  if (run_) {
    run_->stop();
    run_.reset();  // returns once every running task has finished
  }
  drained_.clear();
  job_->drain_outcomes(drained_);
  for (const FinishedTasks& tasks : drained_) done_ += tasks.range.size();
  const int signal = stop_signal();
  report(true, signal);  // launch/'s time-limit policy ends the process here (status 75)
  throw Error(
      fmt::format("the call was stopped by signal {} with {} of {} tasks done, and no call observer ended "
                  "the process; create a joblet::Session, whose policy says what is left and exits with "
                  "status 75",
                  signal, done_, job_->size()));
}

}  // namespace joblet::detail
