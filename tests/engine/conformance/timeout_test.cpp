// A task past its timeout fails the call with a TimeoutError naming it.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <chrono>
#include <ranges>

#include "../support.hpp"

namespace {

using namespace std::chrono_literals;
using joblet::testing::sleep_ms;

auto tasks_with_slow(int n, int slow, int slow_ms) {
  return std::views::iota(0, n) | std::views::transform([slow, slow_ms](int i) {
           return [i, slow, slow_ms] {
             if (i == slow) sleep_ms(slow_ms);
             return i;
           };
         });
}

TEST(Timeout, ThreadsStopWaitingAndNameTheTask) {
  const auto begin = std::chrono::steady_clock::now();
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "threads", .timeout = 200ms})(tasks_with_slow(20, 7, 3000));
    FAIL() << "expected TimeoutError";
  } catch (const joblet::TimeoutError& e) {
    EXPECT_EQ(e.site().task_index, 7u);
    EXPECT_NE(std::string(e.what()).find("task 7"), std::string::npos) << e.what();
  }
  // The call did not wait for the 3 s task (loose bound: this is about not hanging).
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 2500ms);
}

TEST(Timeout, ProcessesKillTheWorker) {
  const auto begin = std::chrono::steady_clock::now();
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes", .timeout = 200ms})(tasks_with_slow(20, 11, 30000));
    FAIL() << "expected TimeoutError";
  } catch (const joblet::TimeoutError& e) {
    EXPECT_EQ(e.site().task_index, 11u);
    EXPECT_NE(std::string(e.what()).find("killed"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 10s);
  EXPECT_FALSE(joblet::testing::has_children());
}

TEST(Timeout, OneWorkerStillEnforcesTheTimeout) {
  for (const std::string backend : {"threads", "processes"}) {
    SCOPED_TRACE(backend);
    EXPECT_THROW(joblet::Parallel({.n_jobs = 1, .backend = backend, .timeout = 100ms})(tasks_with_slow(3, 1, 2000)),
                 joblet::TimeoutError);
  }
}

TEST(Timeout, KeepGoingRecordsTimeoutsAndFinishesTheRest) {
  for (const std::string backend : {"threads", "processes"}) {
    SCOPED_TRACE(backend);
    auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = backend, .timeout = 150ms, .batch_size = 4})(
        tasks_with_slow(40, 13, 1500), joblet::return_as::list.keep_going());
    ASSERT_EQ(outcomes.size(), 40u);
    for (int i = 0; i < 40; ++i) {
      if (i == 13) {
        ASSERT_FALSE(outcomes[i].ok());
        EXPECT_THROW(outcomes[i].value(), joblet::TimeoutError);
      } else {
        ASSERT_TRUE(outcomes[i].ok()) << i << ": " << outcomes[i].error_message();
        EXPECT_EQ(outcomes[i].value(), i);
      }
    }
  }
}

TEST(Timeout, FastTasksAreUnaffected) {
  for (const std::string backend : {"threads", "processes"}) {
    auto out = joblet::Parallel({.n_jobs = 2, .backend = backend, .timeout = 5s})(tasks_with_slow(500, -1, 0));
    EXPECT_EQ(out.size(), 500u) << backend;
  }
}

}  // namespace
