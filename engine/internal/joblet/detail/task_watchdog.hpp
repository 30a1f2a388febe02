#pragma once
// The per-task timeout of every backend: workers record the task they run in a slot (a thread's,
// a worker process's in shared memory, an MPI rank's compute thread's); the waiting side asks
// the watchdog when to wake and which tasks passed the timeout. What happens to an overdue task
// is the backend's: a thread is abandoned, a worker process killed, an MPI rank's compute thread
// replaced. A slot's task is given up on at most once.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "joblet/backend.hpp"

namespace joblet::detail {

struct WatchedSlot : RunningTask {
  std::atomic<std::int64_t> abandoned{-1};  // the task index the watchdog gave up on

  // The running task not given up on yet, or -1.
  std::int64_t watched_index() const noexcept {
    const auto running = index.load(std::memory_order_acquire);
    return running >= 0 && abandoned.load(std::memory_order_relaxed) == running ? -1 : running;
  }
};

class TaskWatchdog {
 public:
  using Clock = Job::Clock;

  // Inactive without a timeout: next_expiry() is never, check() finds nothing.
  explicit TaskWatchdog(std::optional<std::chrono::nanoseconds> timeout) noexcept : timeout_(timeout) {}

  bool active() const noexcept { return timeout_.has_value(); }

  // When the earliest watched task of `slots` (a range of WatchedSlot&) passes the timeout, a
  // task starting now included; 1 ms late, so that the check then finds it overdue.
  template <class Slots>
  Clock::time_point next_expiry(Slots&& slots, Clock::time_point now) const {
    if (!timeout_) return Clock::time_point::max();
    auto earliest = now + *timeout_;
    for (const WatchedSlot& slot : slots) {
      if (slot.watched_index() < 0) continue;
      earliest = std::min(
          earliest, Clock::time_point(Clock::duration(slot.started_ns.load(std::memory_order_relaxed))) + *timeout_);
    }
    return earliest + std::chrono::milliseconds(1);
  }

  // Calls give_up(slot, task) for each watched task past the timeout; the slot's task is
  // abandoned when give_up returns true (false: the task had an outcome already, look again).
  template <class Slots, class GiveUp>
  void check(Slots&& slots, GiveUp give_up) const {
    if (!timeout_) return;
    const auto now_ns = Clock::now().time_since_epoch().count();
    for (WatchedSlot& slot : slots) {
      const auto index = slot.watched_index();
      if (index < 0) continue;
      const auto started = slot.started_ns.load(std::memory_order_relaxed);
      if (slot.index.load(std::memory_order_acquire) != index) continue;  // it moved on meanwhile
      if (now_ns - started <= timeout_->count()) continue;
      if (give_up(slot, static_cast<std::size_t>(index))) slot.abandoned.store(index, std::memory_order_relaxed);
    }
  }

  // A TimeoutError's text: "task 7 ran past the timeout of 0.5 s; <consequence>".
  std::string describe(std::size_t task, std::string_view consequence) const;

 private:
  std::optional<std::chrono::nanoseconds> timeout_;
};

}  // namespace joblet::detail
