#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <string>
#include <tuple>
#include <utility>

#include "joblet/backend.hpp"
#include "joblet/codec.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/shared_counters.hpp"
#include "joblet/detail/stop.hpp"
#include "joblet/detail/task_scope.hpp"
#include "joblet/detail/task_tally.hpp"
#include "joblet/detail/task_trace.hpp"
#include "joblet/exceptions.hpp"

namespace joblet {

namespace {
// Outcome bytes (run_encoded -> complete_encoded) start with one of these.
constexpr std::byte kValueOutcome{0};
constexpr std::byte kErrorOutcome{1};
constexpr std::byte kInputErrorOutcome{2};  // the range failed making the task (remake_task)
}  // namespace

bool Job::stopping() const noexcept {
  return cancelled() || (stops_on_signal_.load(std::memory_order_relaxed) && detail::stop_requested());
}

IndexRange Job::claim(std::size_t count) {
  count = std::max<std::size_t>(count, 1);
  if (stopping()) return {};
  if (follows_consumer_) {
    // The window grows while claims are made, so next_ must never run past its end (the
    // fetch_add below may): the tasks past it are handed out once it has grown.
    std::lock_guard lock(input_mutex_);
    return claim_locked(count, 0, window_end_.load(std::memory_order_acquire));
  }
  if (!input_complete()) {
    // A lazy input is read one thread at a time, and claims are taken under the same lock
    // so that no claim can run past what has been read.
    std::lock_guard lock(input_mutex_);
    if (!input_complete()) {
      return claim_locked(count, settings_.pre_dispatch.value_or(0), std::numeric_limits<std::size_t>::max());
    }
  }
  const std::size_t begin = next_.fetch_add(count, std::memory_order_relaxed);
  const std::size_t total = std::min(size(), stop_at_.load(std::memory_order_acquire));
  if (begin >= total) return {};
  return {begin, std::min(begin + count, total)};
}

IndexRange Job::claim_locked(std::size_t count, std::size_t read_ahead, std::size_t limit) {
  const std::size_t next = next_.load(std::memory_order_relaxed);
  const std::size_t wanted = std::min(next + count + read_ahead, limit);
  if (!input_complete() && size() < wanted) {
    bool exhausted = false;
    try {
      const std::size_t read = read_input(wanted, exhausted);
      if (settings_.outcomes_per_task) states_.grow_to(read);
      size_.store(read, std::memory_order_release);
    } catch (...) {
      note_input_error(std::current_exception());
      exhausted = true;
    }
    if (exhausted) input_complete_.store(true, std::memory_order_release);
    if (input_error_) wake_caller();
  }
  if (cancelled()) return {};
  const std::size_t available = std::min({size(), stop_at_.load(std::memory_order_acquire), limit});
  if (next >= available) return {};
  const std::size_t end = std::min(next + count, available);
  next_.store(end, std::memory_order_relaxed);
  return {next, end};
}

void Job::follow_consumer() noexcept {
  if (!settings_.pre_dispatch) return;
  follows_consumer_ = true;
  window_end_.store(*settings_.pre_dispatch, std::memory_order_release);
}

void Job::consumer_took(std::size_t taken) noexcept {
  if (follows_consumer_) window_end_.store(taken + *settings_.pre_dispatch, std::memory_order_release);
}

bool Job::claimable() const noexcept {
  if (stopping()) return false;
  const std::size_t next = next_.load(std::memory_order_relaxed);
  const std::size_t end =
      std::min(stop_at_.load(std::memory_order_acquire), window_end_.load(std::memory_order_acquire));
  return next < end && (next < size() || !input_complete());
}

void Job::stop_at(std::size_t index) noexcept {
  std::size_t current = stop_at_.load(std::memory_order_relaxed);
  while (index < current && !stop_at_.compare_exchange_weak(current, index, std::memory_order_acq_rel)) {
  }
}

std::size_t Job::unclaimed() const noexcept {
  const std::size_t total = size();
  const std::size_t next = std::min(next_.load(std::memory_order_relaxed), total);
  // While a lazy input is being read its end is unknown: assume plenty is left.
  return input_complete() ? total - next : std::max<std::size_t>(total - next, 1) * 4;
}

void Job::start_tally() {
  // A mapping of its own: calls are many, and the shared one's counters are never reused.
  tally_ = std::make_shared<detail::SharedCounters>(detail::kTallyCounts, /*own_mapping=*/true);
  tally_started_ = Clock::now();
}

void Job::run(IndexRange range, RunningTask* tracker) {
  // Calls made by these tasks are nested in them.
  const detail::TaskScope scope;
  OutcomeRun recorded(*this);  // a task whose outcome a timeout recorded first is left out
  detail::TaskTrace trace(*this);
  detail::TaskTally tally(*this);
  for (std::size_t index = range.begin; index < range.end; ++index) {
    if (stopping() || index >= stop_at_.load(std::memory_order_relaxed)) break;
    if (tracker != nullptr) {
      tracker->started_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
      tracker->index.store(static_cast<std::int64_t>(index), std::memory_order_release);
    }
    trace.start();
    tally.start(index);
    const TaskRun outcome = run_task(index);
    tally.finish();
    if (outcome != TaskRun::not_recorded) {
      recorded.add(index, outcome == TaskRun::failed);
      trace.finish(index, outcome == TaskRun::failed ? error(index) : nullptr);
    }
  }
  if (tracker != nullptr) tracker->index.store(-1, std::memory_order_release);
}

bool Job::complete_encoded(std::size_t index, std::span<const std::byte> outcome, const ErrorSite& where,
                           detail::ArrayReader* arrays) {
  const TaskRun recorded = record_encoded(index, outcome, where, arrays);
  if (recorded == TaskRun::not_recorded) return false;
  publish({index, index + 1}, recorded == TaskRun::failed);
  return true;
}

Job::TaskRun Job::record_encoded(std::size_t index, std::span<const std::byte> outcome, const ErrorSite& where,
                                 detail::ArrayReader* arrays) {
  try {
    if (outcome.empty()) throw SerializationError("a worker sent an empty outcome", ErrorSite::here(index));
    if (outcome.front() == kValueOutcome) {
      return store_encoded(index, outcome.subspan(1), arrays) ? TaskRun::succeeded : TaskRun::not_recorded;
    }
    auto [type, message, payload] = decode<std::tuple<std::string, std::string, std::string>>(outcome.subspan(1));
    const detail::EncodedException encoded{std::move(type), std::move(message), std::move(payload)};
    if (outcome.front() == kInputErrorOutcome) {
      std::exception_ptr error = remake_task(index);
      fail_input(error ? std::move(error) : detail::make_exception(encoded, where));
      return TaskRun::not_recorded;
    }
    // Every rank of an MPI job makes the same exception from the same bytes.
    return record_failure(index, detail::make_exception(encoded, where)) ? TaskRun::failed : TaskRun::not_recorded;
  } catch (const SerializationError& e) {
    const bool recorded = record_failure(
        index, std::make_exception_ptr(SerializationError(
                   "the result of the task could not be decoded (" + e.message() + ")", ErrorSite::here(index))));
    return recorded ? TaskRun::failed : TaskRun::not_recorded;
  }
}

bool Job::complete_failed(std::size_t index, std::exception_ptr error) {
  const std::exception_ptr traced = settings_.trace.empty() ? nullptr : error;
  const std::exception_ptr failure = error;
  if (!record_failure(index, std::move(error))) return false;
  failed_outside_task(index, failure);
  if (traced) detail::trace_lost_task(*this, index, traced);
  publish({index, index + 1}, true);
  return true;
}

std::size_t Job::fail_tasks_not_run(const std::string& why) {
  std::size_t failed = 0;
  for (std::size_t index = 0; index < size(); ++index) {
    if (finished(index)) continue;
    if (!record_failure(index, std::make_exception_ptr(NotRunError(fmt::format("task {} was not run: {}", index, why),
                                                                   ErrorSite::here(index))))) {
      continue;
    }
    publish({index, index + 1}, true);
    ++failed;
  }
  return failed;
}

namespace {

// One failed attempt, for RetriesExhaustedError's list: the exception's type, message and site.
std::string describe_attempt(std::size_t index, const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const TaskError& e) {
    return e.what();  // names the original type itself
  } catch (const Error& e) {
    return detail::demangle(typeid(e).name()) + ": " + e.what();
  } catch (const std::exception& e) {
    return detail::demangle(typeid(e).name()) + ": " + e.what() + " [" + ErrorSite::here(index).describe() + "]";
  } catch (...) {
    return "an exception that is not a std::exception [" + ErrorSite::here(index).describe() + "]";
  }
}

}  // namespace

bool Job::retry_attempt(std::size_t index, const std::exception_ptr& error) noexcept {
  if (settings_.retries <= 0 || stopping() || finished(index)) return false;
  try {
    if (settings_.retry_if) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        if (!settings_.retry_if(e)) return false;
      } catch (...) {
        return false;
      }
    }
    const int failed = attempt(index);
    if (failed > settings_.retries) return false;
    std::string described = describe_attempt(index, error);
    detail::log().warn("task {} failed on attempt {} of {}: {}; running it again", index, failed, settings_.retries + 1,
                       described);
    if (!settings_.trace.empty()) detail::trace_failed_attempt(*this, index, error);
    std::lock_guard lock(retries_mutex_);
    failed_attempts_[index].push_back(std::move(described));
    any_retried_.store(true, std::memory_order_release);
    return true;
  } catch (...) {  // retry_if threw, or out of memory: the failure stands
    return false;
  }
}

int Job::attempt(std::size_t index) const noexcept {
  if (!any_retried_.load(std::memory_order_acquire)) return 1;
  std::lock_guard lock(retries_mutex_);
  const auto found = failed_attempts_.find(index);
  return found == failed_attempts_.end() ? 1 : static_cast<int>(found->second.size()) + 1;
}

std::exception_ptr Job::final_error(std::size_t index, std::exception_ptr error) const noexcept {
  if (!any_retried_.load(std::memory_order_acquire)) return error;
  try {
    std::string message;
    int attempts = 0;
    {
      std::lock_guard lock(retries_mutex_);
      const auto found = failed_attempts_.find(index);
      if (found == failed_attempts_.end()) return error;
      attempts = static_cast<int>(found->second.size()) + 1;
      message =
          fmt::format("task {} failed on all {} attempts (Config::retries = {})", index, attempts, settings_.retries);
      for (std::size_t i = 0; i < found->second.size(); ++i) {
        message += fmt::format("; attempt {}: {}", i + 1, found->second[i]);
      }
    }
    message += fmt::format("; attempt {}: {}", attempts, describe_attempt(index, error));
    ErrorSite site = ErrorSite::here(index);
    try {
      std::rethrow_exception(error);
    } catch (const Error& e) {
      site = e.site();
    } catch (...) {
    }
    return std::make_exception_ptr(RetriesExhaustedError(message, std::move(site), attempts, std::move(error)));
  } catch (...) {  // out of memory: the last attempt's own error
    return error;
  }
}

namespace {

void encode_failure(std::byte kind, const std::exception_ptr& error, std::string& out) noexcept {
  const std::size_t start = out.size();
  try {
    detail::EncodedException encoded = detail::encode_exception(error);
    out.push_back(static_cast<char>(kind));
    encode(std::tuple(std::move(encoded.type), std::move(encoded.message), std::move(encoded.payload)), out);
  } catch (...) {
    // Out of memory while describing an error: send what cannot fail to encode.
    out.resize(start);
    out.push_back(static_cast<char>(kind));
    encode(std::tuple<std::string, std::string, std::string>("std::bad_alloc", "std::bad_alloc", ""), out);
  }
}

}  // namespace

bool detail::describe_encoded_failure(std::span<const std::byte> outcome, std::string& type,
                                      std::string& message) noexcept {
  if (outcome.empty() || outcome.front() == kValueOutcome) return false;
  try {
    auto [name, what, payload] = decode<std::tuple<std::string, std::string, std::string>>(outcome.subspan(1));
    type = std::move(name);
    message = std::move(what);
  } catch (...) {
    type = "unknown";
  }
  return true;
}

void Job::encode_error(const std::exception_ptr& error, std::string& out) noexcept {
  encode_failure(kErrorOutcome, error, out);
}

void Job::encode_input_error(const std::exception_ptr& error, std::string& out) noexcept {
  encode_failure(kInputErrorOutcome, error, out);
}

std::exception_ptr Job::input_error() const {
  // Written once, before input_failed_ is released.
  return input_failed_.load(std::memory_order_acquire) ? input_error_ : nullptr;
}

void Job::note_input_error(std::exception_ptr error) noexcept {
  if (!input_failed_.load(std::memory_order_relaxed)) {  // the first one is reported
    input_error_ = std::move(error);
    input_failed_.store(true, std::memory_order_release);
  }
  cancel();
}

void Job::fail_input(std::exception_ptr error) noexcept {
  {
    std::lock_guard lock(input_mutex_);
    note_input_error(std::move(error));
  }
  wake_caller();
}

bool Job::record_failure(std::size_t index, std::exception_ptr error) noexcept {
  if (!claim_outcome(index)) return false;
  {
    std::lock_guard lock(failures_mutex_);
    failures_.insert_or_assign(index, std::move(error));
  }
  any_failure_.store(true, std::memory_order_release);
  if (settings_.outcomes_per_task) states_[index].store(kFailed, std::memory_order_release);
  return true;
}

std::exception_ptr Job::error(std::size_t index) const noexcept {
  if (!any_failure_.load(std::memory_order_acquire)) return nullptr;
  std::lock_guard lock(failures_mutex_);
  const auto found = failures_.find(index);
  return found == failures_.end() ? nullptr : found->second;
}

std::vector<std::pair<std::size_t, std::exception_ptr>> Job::failures_in(IndexRange range) const {
  std::vector<std::pair<std::size_t, std::exception_ptr>> found;
  if (!any_failure_.load(std::memory_order_acquire)) return found;
  std::lock_guard lock(failures_mutex_);
  for (auto it = failures_.lower_bound(range.begin); it != failures_.end() && it->first < range.end; ++it) {
    found.emplace_back(it->first, it->second);
  }
  return found;
}

void Job::finish_without_results() {
  results_here_.store(false, std::memory_order_release);
  wake_caller();
}

void Job::set_complete_input(std::size_t size) {
  if (settings_.outcomes_per_task) states_.grow_to(size);
  size_.store(size, std::memory_order_release);
  input_complete_.store(true, std::memory_order_release);
}

void Job::publish(IndexRange range, bool any_failed) {
  bool wake = false;
  {
    std::lock_guard lock(outcomes_mutex_);
    if (!published_.empty() && published_.back().range.end == range.begin) {
      published_.back().range.end = range.end;
      published_.back().any_failed = published_.back().any_failed || any_failed;
    } else {
      published_.push_back({range, any_failed});
    }
    published_count_ += range.size();
    // Lists only need the caller when everything is done or something failed: skipping the
    // other wake-ups keeps the per-task cost of tiny tasks low. The caller also wakes on its
    // own deadline to draw progress.
    wake = caller_waiting_ && (wake_each_.load(std::memory_order_relaxed) || any_failed || cancelled() ||
                               !input_complete() || published_count_ >= size());
  }
  if (wake) outcomes_ready_.notify_one();
}

void Job::wake_caller() {
  {
    std::lock_guard lock(outcomes_mutex_);
    wake_requested_ = true;
  }
  outcomes_ready_.notify_one();
}

bool Job::wait_for_outcomes(Clock::time_point deadline) {
  std::unique_lock lock(outcomes_mutex_);
  while (published_.empty() && !wake_requested_) {
    if (Clock::now() >= deadline) return false;
    caller_waiting_ = true;
    outcomes_ready_.wait_until(lock, deadline);
    caller_waiting_ = false;
  }
  wake_requested_ = false;
  return !published_.empty();
}

void Job::drain_outcomes(std::vector<FinishedTasks>& out) {
  std::lock_guard lock(outcomes_mutex_);
  out.insert(out.end(), published_.begin(), published_.end());
  published_.clear();
}

}  // namespace joblet
