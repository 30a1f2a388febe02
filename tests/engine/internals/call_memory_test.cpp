// What a call allocates: its results, and a constant for the call, never a record per task.
// Its own executable: it counts every operator new of the process.
#include <gtest/gtest.h>
#include <joblet/parallel.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <ranges>
#include <string>
#include <vector>

namespace {
std::atomic<bool> g_counting{false};
std::atomic<std::size_t> g_allocated{0};
}  // namespace

void* operator new(std::size_t size) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocated.fetch_add(size, std::memory_order_relaxed);
  if (void* memory = std::malloc(size == 0 ? 1 : size)) return memory;
  throw std::bad_alloc();
}
void operator delete(void* memory) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t) noexcept { std::free(memory); }

namespace {

std::int64_t identity(std::int64_t i) { return i; }

std::vector<std::int64_t> identities(const std::string& backend, std::size_t n) {
  return joblet::Parallel({.n_jobs = 2, .backend = backend})(
      std::views::iota(std::size_t{0}, n) |
      std::views::transform([](std::size_t i) { return joblet::delayed(identity, static_cast<std::int64_t>(i)); }));
}

TEST(CallMemory, AListOfIndexedTasksAllocatesItsResultsAndAConstant) {
  constexpr std::size_t kTasks = 1'000'000;
  constexpr std::size_t kPerCall = 256 * 1024;  // workers' first calls, queues, the progress reporter
  for (const std::string backend : {"sequential", "threads"}) {
    identities(backend, 1000);  // starts the workers and everything made once per process
    g_allocated.store(0);
    g_counting.store(true);
    const auto out = identities(backend, kTasks);
    g_counting.store(false);
    ASSERT_EQ(out.size(), kTasks);
    for (std::size_t i = 0; i < kTasks; ++i) ASSERT_EQ(out[i], static_cast<std::int64_t>(i));
    EXPECT_LT(g_allocated.load(), kTasks * sizeof(std::int64_t) + kPerCall) << backend;
  }
}

}  // namespace
