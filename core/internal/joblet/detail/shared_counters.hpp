#pragma once
// Counters that the processes this one forks afterwards (the processes backend's workers) add to
// as well: lock-free atomics in memory shared with them (MAP_SHARED | MAP_ANONYMOUS), so that a
// count made in a worker is seen by the caller. A cache's statistics and a call's tally use them.

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace joblet::detail {

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shared counters must be lock-free atomics");

class SharedCounters {
 public:
  // `count` counters, all 0. Taken from one shared mapping made at the first request, or with
  // `own_mapping` from a mapping of their own, unmapped with them (for short-lived counters: the
  // shared one is never reused). When no mapping can be had, from the heap: counts made in forked
  // workers are then not seen.
  explicit SharedCounters(std::size_t count, bool own_mapping = false);
  ~SharedCounters();
  SharedCounters(const SharedCounters&) = delete;
  SharedCounters& operator=(const SharedCounters&) = delete;

  void add(std::size_t index, std::uint64_t value) const noexcept {
    counters_[index].fetch_add(value, std::memory_order_relaxed);
  }
  std::uint64_t load(std::size_t index) const noexcept { return counters_[index].load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t>* counters_;
  std::size_t own_bytes_ = 0;  // the size of a mapping of their own
  bool on_heap_;
};

}  // namespace joblet::detail
