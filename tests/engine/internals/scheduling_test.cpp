// The batch size policy and the stable task storage.
#include <gtest/gtest.h>
#include <joblet/detail/stable_vector.hpp>

#include <thread>

#include "joblet/detail/batch_sizer.hpp"

namespace {

using joblet::detail::BatchSizer;
using namespace std::chrono_literals;

TEST(BatchSizer, AFixedSizeIsAlwaysUsed) {
  BatchSizer sizer(7, 20us, 2);
  EXPECT_EQ(sizer.next(1000), 7u);
  sizer.observe(7, 1s);
  EXPECT_EQ(sizer.next(3), 7u);
}

TEST(BatchSizer, StartsWithOneTaskToMeasure) {
  BatchSizer sizer(0, 20us, 2);
  EXPECT_EQ(sizer.next(1'000'000), 1u);
}

TEST(BatchSizer, TinyTasksGrowBatchesQuicklyButNotAllAtOnce) {
  BatchSizer sizer(0, 20us, 2);
  std::size_t batch = sizer.next(1'000'000);
  std::vector<std::size_t> sizes;
  for (int step = 0; step < 8; ++step) {
    sizer.observe(batch, std::chrono::nanoseconds(static_cast<long>(batch) * 10));  // 10 ns per task
    batch = sizer.next(1'000'000);
    sizes.push_back(batch);
  }
  EXPECT_EQ(sizes[0], 8u);                  // at most 8x per claim
  EXPECT_EQ(sizes.back(), 2000u);           // 20 us / 10 ns
  for (std::size_t i = 1; i < sizes.size(); ++i) EXPECT_LE(sizes[i], sizes[i - 1] * 8);
}

TEST(BatchSizer, LongTasksStayOneAtATime) {
  BatchSizer sizer(0, 20us, 2);
  for (int step = 0; step < 5; ++step) {
    EXPECT_EQ(sizer.next(500), 1u);
    sizer.observe(1, 10ms);
  }
}

TEST(BatchSizer, BatchesShrinkNearTheEndSoWorkersFinishTogether) {
  BatchSizer sizer(0, 20us, 4);
  sizer.next(100000);
  sizer.observe(1, 1ns);
  for (int i = 0; i < 6; ++i) sizer.observe(sizer.next(100000), 1ns);
  EXPECT_EQ(sizer.next(80), 10u);  // 80 left / (2 x 4 workers)
  EXPECT_EQ(sizer.next(3), 1u);
}

TEST(BatchSizer, FollowsAChangeOfTaskCost) {
  BatchSizer sizer(0, 20us, 2);
  std::size_t batch = sizer.next(1'000'000);
  for (int i = 0; i < 10; ++i) {
    sizer.observe(batch, std::chrono::nanoseconds(static_cast<long>(batch) * 10));
    batch = sizer.next(1'000'000);
  }
  // Tasks become 1 ms each: the next batch is back to one task.
  sizer.observe(batch, std::chrono::milliseconds(static_cast<long>(batch)));
  EXPECT_EQ(sizer.next(1'000'000), 1u);
}

TEST(StableVector, ElementsKeepTheirAddressesWhileItGrows) {
  joblet::detail::StableVector<int> vector;
  vector.grow_to(10);
  int* first = &vector[0];
  vector[0] = 42;
  vector.grow_to(100000);
  EXPECT_EQ(first, &vector[0]);
  EXPECT_EQ(vector[0], 42);
  for (std::size_t i = 0; i < 100000; ++i) vector[i] = static_cast<int>(i);
  for (std::size_t i = 0; i < 100000; ++i) ASSERT_EQ(vector[i], static_cast<int>(i));
}

TEST(StableVector, ReadersRunWhileOneThreadGrows) {
  joblet::detail::StableVector<std::atomic<int>> vector;
  vector.grow_to(1);
  std::atomic<std::size_t> published{0};
  std::thread writer([&] {
    for (std::size_t i = 0; i < 200000; ++i) {
      vector.grow_to(i + 1);
      vector[i].store(static_cast<int>(i), std::memory_order_relaxed);
      published.store(i + 1, std::memory_order_release);
    }
  });
  std::size_t checked = 0;
  while (checked < 200000) {
    const std::size_t limit = published.load(std::memory_order_acquire);
    for (; checked < limit; ++checked) ASSERT_EQ(vector[checked].load(std::memory_order_relaxed), static_cast<int>(checked));
  }
  writer.join();
}

}  // namespace
