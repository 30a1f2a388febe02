#include <gtest/gtest.h>
#include <joblet/joblet.hpp>
#include <ranges>

TEST(Smoke, Threads) {
  auto out = joblet::Parallel({.n_jobs = 2, .backend = "threads"})(
      std::views::iota(0, 100) | std::views::transform([](int i) { return joblet::delayed([](int x) { return x * x; }, i); }));
  ASSERT_EQ(out.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(out[i], i * i);
}
TEST(Smoke, Processes) {
  auto out = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
      std::views::iota(0, 100) | std::views::transform([](int i) { return joblet::delayed([](int x) { return x * x; }, i); }));
  ASSERT_EQ(out.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(out[i], i * i);
}
