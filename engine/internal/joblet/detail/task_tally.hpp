#pragma once
// The busy time and cached calls of the tasks one worker runs, for the summary that ends a
// verbose call (Job::tally()), and whether each one's cached call loads what a round of the
// call's campaign stored (Job::loads_campaign_result(): no hit of its own). One per worker thread
// and batch, or per worker process, on the thread that runs the tasks.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "joblet/backend.hpp"
#include "joblet/detail/runtime.hpp"
#include "joblet/detail/shared_counters.hpp"

namespace joblet::detail {

class TaskTally {
 public:
  explicit TaskTally(const Job& job) noexcept
      : job_(job), counters_(job.tally()), outer_loads_(thread_context().loads_campaign_results) {
    // While it lives, the cached calls this thread's tasks make count in the call's tally.
    if (counters_ != nullptr) outer_ = std::exchange(thread_context().call_tally, counters_);
  }
  ~TaskTally() {
    thread_context().loads_campaign_results = outer_loads_;
    if (counters_ != nullptr) thread_context().call_tally = outer_;
  }
  TaskTally(const TaskTally&) = delete;
  TaskTally& operator=(const TaskTally&) = delete;

  // Around each task.
  void start(std::size_t index) noexcept {
    thread_context().loads_campaign_results = job_.loads_campaign_result(index);
    if (counters_ != nullptr) started_ = Clock::now();
  }
  void finish() noexcept {
    if (counters_ == nullptr) return;
    const auto busy = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started_).count();
    counters_->add(kTallyBusyNs, static_cast<std::uint64_t>(busy > 0 ? busy : 0));
  }

 private:
  using Clock = std::chrono::steady_clock;
  const Job& job_;
  SharedCounters* counters_;
  SharedCounters* outer_ = nullptr;
  bool outer_loads_;
  Clock::time_point started_{};
};

}  // namespace joblet::detail
