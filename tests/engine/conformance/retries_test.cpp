// Config::retries runs a failed task again; Config::max_failures stops a keep_going call after
// that many failed tasks. In-process backends here; worker processes in workers_test.cpp.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <array>
#include <atomic>
#include <cstdlib>
#include <ranges>
#include <stdexcept>
#include <string>

#include "../support.hpp"

namespace {

struct SolverDiverged : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::size_t count_of(const std::string& text, const std::string& part) {
  std::size_t count = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++count;
  return count;
}

class RetriesOnEveryInProcessBackend : public ::testing::TestWithParam<const char*> {};

TEST_P(RetriesOnEveryInProcessBackend, ATaskThatFailsTwiceSucceedsOnItsThirdAttempt) {
  std::array<std::atomic<int>, 20> runs{};
  auto tasks = std::views::iota(0, 20) | std::views::transform([&runs](int i) {
                 return [&runs, i] {
                   if (runs[static_cast<std::size_t>(i)].fetch_add(1) < 2 && i % 5 == 0) {
                     throw SolverDiverged("diverged at step " + std::to_string(i));
                   }
                   return i;
                 };
               });
  const auto results = joblet::Parallel({.n_jobs = 2, .backend = GetParam(), .retries = 2})(tasks);
  ASSERT_EQ(results.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(results[static_cast<std::size_t>(i)], i);
    EXPECT_EQ(runs[static_cast<std::size_t>(i)].load(), i % 5 == 0 ? 3 : 1) << "task " << i;
  }
}

TEST_P(RetriesOnEveryInProcessBackend, ATaskThatFailsEveryAttemptListsThemAllInItsError) {
  std::atomic<int> runs{0};
  auto tasks = std::views::iota(0, 8) | std::views::transform([&runs](int i) {
                 return [&runs, i] {
                   if (i == 6) throw SolverDiverged("diverged, run " + std::to_string(++runs));
                   return i;
                 };
               });
  try {
    joblet::Parallel({.n_jobs = 2, .backend = GetParam(), .retries = 2})(tasks);
    FAIL() << "expected RetriesExhaustedError";
  } catch (const joblet::RetriesExhaustedError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.attempts(), 3);
    EXPECT_EQ(e.site().task_index, 6u);
    EXPECT_NE(what.find("task 6 failed on all 3 attempts"), std::string::npos) << what;
    for (int run = 1; run <= 3; ++run) {
      EXPECT_NE(what.find("attempt " + std::to_string(run) + ": "), std::string::npos) << what;
      EXPECT_NE(what.find("diverged, run " + std::to_string(run)), std::string::npos) << what;
    }
    EXPECT_EQ(count_of(what, "SolverDiverged"), 3u) << what;
    // The last attempt's own exception, with its type, for a caller that wants it.
    ASSERT_TRUE(e.last_error());
    EXPECT_THROW(std::rethrow_exception(e.last_error()), SolverDiverged);
  }
  EXPECT_EQ(runs.load(), 3);
}

TEST_P(RetriesOnEveryInProcessBackend, RetryIfLeavesOtherFailuresAsTheyWere) {
  std::atomic<int> runs{0};
  auto tasks = std::views::iota(0, 4) | std::views::transform([&runs](int i) {
                 return [&runs, i] {
                   if (i == 2) {
                     ++runs;
                     throw std::invalid_argument("bad input");
                   }
                   return i;
                 };
               });
  joblet::Parallel retrying_divergence(
      {.n_jobs = 2, .backend = GetParam(), .retries = 3, .retry_if = joblet::retry_on<SolverDiverged>()});
  // Not retried, so the error is the task's own, not a list of one attempt.
  EXPECT_THROW(retrying_divergence(tasks), std::invalid_argument);
  EXPECT_EQ(runs.load(), 1);
}

TEST_P(RetriesOnEveryInProcessBackend, KeepGoingGetsTheOutcomeOfTheLastAttempt) {
  std::array<std::atomic<int>, 6> runs{};
  auto tasks = std::views::iota(0, 6) | std::views::transform([&runs](int i) {
                 return [&runs, i] {
                   const int run = ++runs[static_cast<std::size_t>(i)];
                   if (i == 1) throw SolverDiverged("always");
                   if (i == 4 && run == 1) throw SolverDiverged("once");
                   return i;
                 };
               });
  const auto outcomes =
      joblet::Parallel({.n_jobs = 2, .backend = GetParam(), .retries = 1})(tasks, joblet::return_as::list.keep_going());
  ASSERT_EQ(outcomes.size(), 6u);
  EXPECT_THROW(outcomes[1].value(), joblet::RetriesExhaustedError);
  EXPECT_EQ(outcomes[4].value(), 4);
  EXPECT_EQ(runs[1].load(), 2);
  EXPECT_EQ(runs[4].load(), 2);
  EXPECT_EQ(runs[0].load(), 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, RetriesOnEveryInProcessBackend, ::testing::Values("sequential", "threads"));

TEST(Retries, ARetriedTaskFromALazyInputIsKeptUntilItsLastAttempt) {
  // pre_dispatch reads the input as tasks are claimed and frees each task once it ran: a retry
  // must run the same task again, not a freed one.
  std::atomic<int> runs{0};
  auto tasks =
      std::views::iota(0, 50) | std::views::filter([](int) { return true; }) | std::views::transform([&runs](int i) {
        return [&runs, i, payload = std::string(100, 'x')] {
          if (i == 10 && ++runs < 3) throw SolverDiverged("flaky");
          return static_cast<int>(payload.size()) + i;
        };
      });
  const auto results = joblet::Parallel({.n_jobs = 2, .backend = "threads", .pre_dispatch = 4, .retries = 2})(tasks);
  ASSERT_EQ(results.size(), 50u);
  EXPECT_EQ(results[10], 110);
  EXPECT_EQ(runs.load(), 3);
}

TEST(Retries, InvalidCountsAreRefusedWithTheFix) {
  auto tasks = std::views::iota(0, 3) | std::views::transform([](int i) { return [i] { return i; }; });
  try {
    joblet::Parallel({.retries = -1})(tasks);
    FAIL() << "expected ConfigError";
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("retries = -1 is not valid"), std::string::npos) << e.what();
  }
  try {
    joblet::Parallel({.max_failures = 0})(tasks);
    FAIL() << "expected ConfigError";
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("max_failures = 0 is not valid"), std::string::npos) << e.what();
  }
}

TEST(Retries, TheEnvironmentSetsRetriesForCallsThatSetNone) {
  std::atomic<int> runs{0};
  auto tasks = std::views::iota(0, 1) | std::views::transform([&runs](int) {
                 return [&runs] {
                   if (++runs < 2) throw SolverDiverged("flaky");
                   return 1;
                 };
               });
  setenv("JOBLET_RETRIES", "1", 1);
  const auto results = joblet::Parallel()(tasks);
  unsetenv("JOBLET_RETRIES");
  EXPECT_EQ(results.front(), 1);
  EXPECT_EQ(runs.load(), 2);
  // A call's own setting wins over the environment.
  runs = 0;
  setenv("JOBLET_RETRIES", "5", 1);
  EXPECT_THROW(joblet::Parallel({.retries = 0})(tasks), SolverDiverged);
  unsetenv("JOBLET_RETRIES");
  EXPECT_EQ(runs.load(), 1);
}

TEST(MaxFailures, AKeepGoingCallStopsAfterThatManyFailuresAndNamesTheTasksNeverRun) {
  std::atomic<int> runs{0};
  auto tasks = std::views::iota(0, 40) | std::views::transform([&runs](int i) {
                 return [&runs, i] {
                   ++runs;
                   if (i < 3 || i == 30) throw SolverDiverged("diverged " + std::to_string(i));
                   return i;
                 };
               });
  // One task per batch in the caller: the call sees each outcome before the next task starts.
  const auto outcomes = joblet::Parallel({.backend = "sequential", .batch_size = 1, .max_failures = 3})(
      tasks, joblet::return_as::list.keep_going());
  ASSERT_EQ(outcomes.size(), 40u);
  EXPECT_EQ(runs.load(), 3);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_THROW(outcomes[i].value(), SolverDiverged);
  for (std::size_t i = 3; i < 40; ++i) {
    try {
      outcomes[i].value();
      FAIL() << "task " << i << " ran";
    } catch (const joblet::NotRunError& e) {
      EXPECT_EQ(e.site().task_index, i);
      EXPECT_NE(std::string(e.what()).find("stopped after 3 failed tasks (Config::max_failures = 3)"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(MaxFailures, RunningTasksFinishAndEveryTaskHasAnOutcome) {
  auto tasks = std::views::iota(0, 400) | std::views::transform([](int i) {
                 return [i] {
                   if (i % 50 == 0) throw SolverDiverged("diverged");
                   joblet::testing::sleep_ms(5);
                   return i;
                 };
               });
  const auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = "threads", .max_failures = 2})(
      tasks, joblet::return_as::list.keep_going());
  ASSERT_EQ(outcomes.size(), 400u);
  const auto [failed, not_run] = joblet::testing::count_failed_and_not_run<SolverDiverged>(outcomes);
  EXPECT_GE(failed, 2u);
  EXPECT_GT(not_run, 0u);
}

TEST(MaxFailures, ACallWithoutKeepGoingStillStopsAtItsFirstFailure) {
  auto tasks = std::views::iota(0, 10) | std::views::transform([](int i) {
                 return [i] {
                   if (i == 4) throw SolverDiverged("diverged");
                   return i;
                 };
               });
  EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "threads", .max_failures = 5})(tasks), SolverDiverged);
}

}  // namespace
