// Process workers that die (segfault, SIGKILL, abort, exit inside a task) fail the call with
// an error naming the task and the signal or exit status: never a hang, never a zombie.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <unistd.h>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ranges>
#include <string>
#include <vector>

#include "../support.hpp"

namespace {

template <class Kill>
auto tasks_dying_at(int n, int bad, Kill kill) {
  return std::views::iota(0, n) | std::views::transform([bad, kill](int i) {
           return [i, bad, kill] {
             if (i == bad) kill();
             return i;
           };
         });
}

void expect_death_reported(const auto& tasks, std::size_t index, int signal, int exit_code, const char* words) {
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks);
    FAIL() << "expected WorkerDiedError";
  } catch (const joblet::WorkerDiedError& e) {
    EXPECT_EQ(e.site().task_index, index);
    EXPECT_EQ(e.signal(), signal);
    EXPECT_EQ(e.exit_code(), exit_code);
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("task " + std::to_string(index)), std::string::npos) << e.what();
  }
  EXPECT_EQ(joblet::testing::zombie_children(), 0);
  EXPECT_FALSE(joblet::testing::has_children());
}

TEST(Workers, SegfaultIsReported) {
  expect_death_reported(tasks_dying_at(50, 17, [] { std::raise(SIGSEGV); }), 17, SIGSEGV, -1, "SIGSEGV");
}

TEST(Workers, SigkillIsReportedWithTheOomHint) {
  expect_death_reported(tasks_dying_at(50, 3, [] { std::raise(SIGKILL); }), 3, SIGKILL, -1, "out-of-memory");
  // The task itself may have sent it: the message does not blame memory alone.
  expect_death_reported(tasks_dying_at(50, 3, [] { std::raise(SIGKILL); }), 3, SIGKILL, -1, "sent by the task");
}

TEST(Workers, AbortIsReported) {
  expect_death_reported(tasks_dying_at(50, 49, [] { std::abort(); }), 49, SIGABRT, -1, "SIGABRT");
}

TEST(Workers, ExitInsideATaskIsReportedWithItsStatus) {
  expect_death_reported(tasks_dying_at(50, 8, [] { std::exit(3); }), 8, 0, 3, "status 3");
  // exit(0) is a death too: the task never returned.
  expect_death_reported(tasks_dying_at(50, 9, [] { std::exit(0); }), 9, 0, 0, "status 0");
}

TEST(Workers, KeepGoingRecordsTheDeathAndFinishesTheOtherTasks) {
  auto tasks = tasks_dying_at(200, 57, [] { std::raise(SIGSEGV); });
  auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = "processes", .batch_size = 16})(
      tasks, joblet::return_as::list.keep_going());
  joblet::testing::expect_only_failed<joblet::WorkerDiedError>(outcomes, 200, 57);
  EXPECT_FALSE(joblet::testing::has_children());
}

// With keep_going, a worker's death fails only the task it was running: every other task runs
// (on a fresh worker) and keeps its own outcome, however many workers die and however the
// batches fall. Deaths in every batch used to exhaust a "no progress" budget and fail them all.
TEST(Workers, KeepGoingSurvivesManyDeaths) {
  for (const std::size_t batch_size : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
    SCOPED_TRACE(batch_size);
    auto dying = std::views::iota(0, 120) | std::views::transform([](int i) {
                   return [i] {
                     if (i % 3 == 0) std::raise(SIGKILL);
                     return i;
                   };
                 });
    joblet::Config config{.n_jobs = 2, .backend = "processes"};
    if (batch_size > 0) config.batch_size = batch_size;
    auto outcomes = joblet::Parallel(config)(dying, joblet::return_as::list.keep_going());
    ASSERT_EQ(outcomes.size(), 120u);
    for (int i = 0; i < 120; ++i) {
      ASSERT_EQ(outcomes[i].ok(), i % 3 != 0)
          << "task " << i << ": " << (outcomes[i].ok() ? "" : outcomes[i].error_message());
      if (i % 3 != 0) EXPECT_EQ(outcomes[i].value(), i);
    }
  }
  EXPECT_FALSE(joblet::testing::has_children());
}

// Timeouts kill the worker too: many of them fail only the tasks that ran too long.
TEST(Workers, KeepGoingSurvivesManyTimeouts) {
  using namespace std::chrono_literals;
  auto tasks = std::views::iota(0, 24) | std::views::transform([](int i) {
                 return [i] {
                   if (i % 2 == 0) pause();  // until the timeout's SIGKILL
                   return i;
                 };
               });
  auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = "processes", .timeout = 50ms, .batch_size = 1})(
      tasks, joblet::return_as::list.keep_going());
  for (int i = 0; i < 24; ++i) {
    ASSERT_EQ(outcomes[i].ok(), i % 2 != 0) << "task " << i;
    if (i % 2 == 0) EXPECT_THROW(outcomes[i].value(), joblet::TimeoutError);
  }
  EXPECT_FALSE(joblet::testing::has_children());
}

// A worker catches SIGTERM and SIGUSR1 (a graceful stop is the parent's decision), but what a
// task starts must get the default dispositions: an ignored signal would survive exec, and
// Slurm's time-limit SIGTERM could not stop a helper program a task runs.
TEST(Workers, ProgramsStartedByTasksGetDefaultSignalDispositions) {
  auto masks = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
      std::views::iota(0, 2) | std::views::transform([](int) {
        return [] {
          FILE* pipe = popen("grep -E '^Sig(Ign|Cgt):' /proc/self/status", "r");
          std::string text;
          char buffer[256];
          while (pipe != nullptr && std::fgets(buffer, sizeof buffer, pipe) != nullptr) text += buffer;
          if (pipe != nullptr) pclose(pipe);
          return text;
        };
      }));
  for (const std::string& text : masks) {
    for (const char* field : {"SigIgn:", "SigCgt:"}) {
      const auto at = text.find(field);
      ASSERT_NE(at, std::string::npos) << text;
      const unsigned long long mask = std::stoull(text.substr(at + std::strlen(field)), nullptr, 16);
      EXPECT_EQ(mask & (1ULL << (SIGTERM - 1)), 0u) << field << " has SIGTERM: " << text;
      EXPECT_EQ(mask & (1ULL << (SIGUSR1 - 1)), 0u) << field << " has SIGUSR1: " << text;
    }
  }
}

TEST(Workers, ProcessesSeeTheCallersDataAndOnlyResultsComeBack) {
  // Workers inherit the caller's memory: a large input is read in place, never sent.
  std::vector<double> big(1 << 20, 1.5);
  auto sums = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
      std::views::iota(0, 8) | std::views::transform([&big](int i) {
        return [&big, i] {
          double sum = 0;
          for (std::size_t k = static_cast<std::size_t>(i); k < big.size(); k += 8) sum += big[k];
          return sum;
        };
      }));
  for (double sum : sums) EXPECT_DOUBLE_EQ(sum, 1.5 * (1 << 17));
}

TEST(Workers, WorkersDoNotSeeWritesToCallerMemory) {
  // Processes, unlike threads, work on a copy: this is why require = sharedmem exists.
  std::vector<int> marks(10, 0);
  joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
      std::views::iota(0, 10) |
      std::views::transform([&marks](int i) { return [&marks, i] { return marks[i] = 1; }; }));
  EXPECT_EQ(std::count(marks.begin(), marks.end(), 1), 0);
}

// Config::retries on worker processes: a task whose worker died or ran past the timeout runs
// again in a fresh worker; a task that throws runs again in its own.
struct AttemptRecord {
  std::atomic<int> runs[64];
  std::atomic<int> pids[64][4];
};

TEST(WorkerRetries, ATaskWhoseWorkerDiedRunsAgainInAFreshWorker) {
  joblet::testing::SharedMemory<AttemptRecord> record;
  auto tasks = std::views::iota(0, 40) | std::views::transform([&record](int i) {
                 return [&record, i] {
                   const int run = record->runs[i]++;
                   if (run < 4) record->pids[i][run] = getpid();
                   if (i == 13 && run == 0) std::raise(SIGKILL);
                   if (i == 21 && run < 2) std::raise(SIGSEGV);
                   return i;
                 };
               });
  const auto results = joblet::Parallel({.n_jobs = 2, .backend = "processes", .retries = 2})(tasks);
  ASSERT_EQ(results.size(), 40u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(results[i], i);
  EXPECT_EQ(record->runs[13].load(), 2);
  EXPECT_EQ(record->runs[21].load(), 3);
  EXPECT_NE(record->pids[13][0].load(), record->pids[13][1].load());
  EXPECT_NE(record->pids[21][1].load(), record->pids[21][2].load());
  EXPECT_EQ(record->runs[0].load(), 1);
  EXPECT_FALSE(joblet::testing::has_children());
}

TEST(WorkerRetries, ATaskWhoseWorkerDiesEveryTimeFailsWithEveryAttemptListed) {
  joblet::testing::SharedMemory<AttemptRecord> record;
  auto tasks = std::views::iota(0, 10) | std::views::transform([&record](int i) {
                 return [&record, i] {
                   ++record->runs[i];
                   if (i == 7) std::raise(SIGKILL);
                   return i;
                 };
               });
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes", .retries = 2})(tasks);
    FAIL() << "expected RetriesExhaustedError";
  } catch (const joblet::RetriesExhaustedError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.attempts(), 3);
    EXPECT_EQ(e.site().task_index, 7u);
    EXPECT_THROW(std::rethrow_exception(e.last_error()), joblet::WorkerDiedError);
    for (const char* part : {"attempt 1: joblet::WorkerDiedError", "attempt 2: joblet::WorkerDiedError",
                             "attempt 3: joblet::WorkerDiedError", "SIGKILL"}) {
      EXPECT_NE(what.find(part), std::string::npos) << part << " in " << what;
    }
  }
  EXPECT_EQ(record->runs[7].load(), 3);
  EXPECT_FALSE(joblet::testing::has_children());
}

TEST(WorkerRetries, ATaskPastTheTimeoutRunsAgainInAFreshWorker) {
  using namespace std::chrono_literals;
  joblet::testing::SharedMemory<AttemptRecord> record;
  auto tasks = std::views::iota(0, 6) | std::views::transform([&record](int i) {
                 return [&record, i] {
                   const int run = record->runs[i]++;
                   if (i == 2 && run == 0) pause();  // until the timeout's SIGKILL
                   return i;
                 };
               });
  const auto results = joblet::Parallel({.n_jobs = 2, .backend = "processes", .timeout = 200ms, .retries = 1})(tasks);
  EXPECT_EQ(results, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(record->runs[2].load(), 2);
  EXPECT_FALSE(joblet::testing::has_children());
}

TEST(WorkerRetries, RetryIfChoosesWhichFailuresRunAgain) {
  using namespace std::chrono_literals;
  joblet::testing::SharedMemory<AttemptRecord> record;
  auto tasks = std::views::iota(0, 6) | std::views::transform([&record](int i) {
                 return [&record, i] {
                   const int run = record->runs[i]++;
                   if (i == 1 && run == 0) pause();  // a timeout: retried
                   if (i == 4) std::raise(SIGKILL);  // a death: not retried
                   return i;
                 };
               });
  const auto outcomes = joblet::Parallel({.n_jobs = 2,
                                          .backend = "processes",
                                          .timeout = 200ms,
                                          .retries = 3,
                                          .retry_if = joblet::retry_on<joblet::TimeoutError>()})(
      tasks, joblet::return_as::list.keep_going());
  EXPECT_EQ(outcomes[1].value(), 1);
  EXPECT_THROW(outcomes[4].value(), joblet::WorkerDiedError);
  EXPECT_EQ(record->runs[1].load(), 2);
  EXPECT_EQ(record->runs[4].load(), 1);
  EXPECT_FALSE(joblet::testing::has_children());
}

TEST(WorkerRetries, AThrowingTaskRunsAgainInItsWorkerAndItsErrorListsEveryAttempt) {
  joblet::testing::SharedMemory<AttemptRecord> record;
  auto tasks = std::views::iota(0, 8) | std::views::transform([&record](int i) {
                 return [&record, i] {
                   const int run = record->runs[i]++;
                   if (i == 3 && run == 0) throw std::runtime_error("flaky once");
                   if (i == 5) throw std::runtime_error("broken, run " + std::to_string(run + 1));
                   return i;
                 };
               });
  const auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = "processes", .retries = 1})(
      tasks, joblet::return_as::list.keep_going());
  EXPECT_EQ(outcomes[3].value(), 3);
  try {
    outcomes[5].value();
    FAIL() << "expected RetriesExhaustedError";
  } catch (const joblet::RetriesExhaustedError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("broken, run 1"), std::string::npos) << what;
    EXPECT_NE(what.find("broken, run 2"), std::string::npos) << what;
    EXPECT_EQ(e.site().task_index, 5u);
  }
  EXPECT_EQ(record->runs[3].load(), 2);
  EXPECT_EQ(record->runs[5].load(), 2);
}

TEST(WorkerRetries, MaxFailuresStopsAKeepGoingCallOnWorkerProcesses) {
  auto tasks = std::views::iota(0, 300) | std::views::transform([](int i) {
                 return [i] {
                   if (i % 40 == 0) std::raise(SIGKILL);
                   joblet::testing::sleep_ms(5);
                   return i;
                 };
               });
  const auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = "processes", .max_failures = 2})(
      tasks, joblet::return_as::list.keep_going());
  ASSERT_EQ(outcomes.size(), 300u);
  const auto [died, not_run] = joblet::testing::count_failed_and_not_run<joblet::WorkerDiedError>(outcomes);
  EXPECT_GE(died, 2u);
  EXPECT_GT(not_run, 0u);
  EXPECT_FALSE(joblet::testing::has_children());
}

}  // namespace
