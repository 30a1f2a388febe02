// The shared mapping behind SharedCounters: one region for the process's life, handed out by a
// bump counter that lives in the region itself, so that a forked child taking counters of its own
// never hands out the parent's. Regions are never reused: counters are few (one set per cached
// function and Memory, one per verbose call), and a program that makes more than fit gets heap
// counters, which count only in their own process.
#include "joblet/detail/shared_counters.hpp"

#include <sys/mman.h>

#include <new>

namespace joblet::detail {
namespace {

constexpr std::size_t kRegionBytes = std::size_t{2} << 20;
constexpr std::size_t kSlots = kRegionBytes / sizeof(std::atomic<std::uint64_t>);

struct Region {
  std::atomic<std::uint64_t>* slots = nullptr;  // slots[0] is the bump counter
};

Region& region() {
  static Region made = [] {
    Region fresh;
    // Pages are only touched when handed out: the region costs address space, not memory.
    void* memory = mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory != MAP_FAILED) {
      fresh.slots = static_cast<std::atomic<std::uint64_t>*>(memory);
      new (fresh.slots) std::atomic<std::uint64_t>(1);
    }
    return fresh;
  }();
  return made;
}

std::atomic<std::uint64_t>* take_slots(std::size_t count) noexcept {
  Region& shared = region();
  if (shared.slots == nullptr) return nullptr;
  const std::uint64_t first = shared.slots[0].fetch_add(count, std::memory_order_relaxed);
  if (first + count > kSlots) return nullptr;
  // Zero pages from the kernel: every slot starts at 0, a valid atomic.
  return shared.slots + first;
}

}  // namespace

SharedCounters::SharedCounters(std::size_t count, bool own_mapping) : counters_(nullptr) {
  if (own_mapping) {
    const std::size_t bytes = count * sizeof(std::atomic<std::uint64_t>);
    void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory != MAP_FAILED) {
      counters_ = static_cast<std::atomic<std::uint64_t>*>(memory);
      own_bytes_ = bytes;
    }
  } else {
    counters_ = take_slots(count);
  }
  on_heap_ = counters_ == nullptr;
  if (on_heap_) counters_ = new std::atomic<std::uint64_t>[count]();
}

SharedCounters::~SharedCounters() {
  if (on_heap_) {
    delete[] counters_;
  } else if (own_bytes_ > 0) {
    munmap(counters_, own_bytes_);
  }
}

}  // namespace joblet::detail
