// The first failing task cancels the rest and its error reaches the caller; keep_going
// returns every outcome instead.
#include <gtest/gtest.h>
#include <unistd.h>
#include <joblet/joblet.hpp>

#include <atomic>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

#include "../support.hpp"

namespace {

struct CustomError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

auto tasks_failing_at(int n, int bad) {
  return std::views::iota(0, n) | std::views::transform([bad](int i) {
           return [i, bad] {
             if (i == bad) throw CustomError("task " + std::to_string(i) + " is bad");
             return i;
           };
         });
}

TEST(Errors, InProcessBackendsRethrowTheOriginalExceptionType) {
  for (const std::string backend : {"sequential", "threads"}) {
    SCOPED_TRACE(backend);
    joblet::Parallel parallel({.n_jobs = 2, .backend = backend});
    EXPECT_THROW(parallel(tasks_failing_at(100, 37)), CustomError);
    try {
      parallel(tasks_failing_at(100, 37));
    } catch (const CustomError& e) {
      EXPECT_STREQ(e.what(), "task 37 is bad");
    }
  }
}

TEST(Errors, ProcessesReportTypeMessageIndexAndPid) {
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks_failing_at(100, 37));
    FAIL() << "expected a TaskError";
  } catch (const joblet::TaskError& e) {
    EXPECT_NE(e.original_type().find("CustomError"), std::string::npos) << e.original_type();
    EXPECT_EQ(e.original_message(), "task 37 is bad");
    ASSERT_TRUE(e.site().task_index.has_value());
    EXPECT_EQ(*e.site().task_index, 37u);
    EXPECT_GT(e.site().pid, 0);
    EXPECT_NE(e.site().pid, getpid());
    EXPECT_NE(std::string(e.what()).find("task 37"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(joblet::testing::has_children());
}

TEST(Errors, GeneratorsThrowWhenTheyReachTheFailure) {
  for (const auto& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    auto generator =
        joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks_failing_at(50, 20), joblet::return_as::generator);
    int yielded = 0;
    auto consume = [&] {
      for (int value : generator) {
        EXPECT_EQ(value, yielded);
        ++yielded;
      }
    };
    EXPECT_ANY_THROW(consume());
    EXPECT_EQ(yielded, 20);
  }
}

TEST(Errors, AnOrderedGeneratorYieldsEveryResultBeforeTheFailureFirst) {
  // The failing task finishes long before the ones ahead of it: the generator still yields all
  // of those, in order, and only then throws. Several rounds, as the timing varies.
  auto tasks = std::views::iota(0, 60) | std::views::transform([](int i) {
                 return [i] {
                   if (i == 30) throw CustomError("task 30 is bad");
                   if (i < 30 && i % 5 == 0) joblet::testing::sleep_ms(20);
                   return i;
                 };
               });
  for (int round = 0; round < 3; ++round) {
    for (const auto& backend : joblet::testing::kBackends) {
      SCOPED_TRACE(backend);
      auto generator =
          joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = 1})(tasks, joblet::return_as::generator);
      int yielded = 0;
      try {
        for (int value : generator) {
          EXPECT_EQ(value, yielded);
          ++yielded;
        }
        ADD_FAILURE() << "the failure was not rethrown";
      } catch (const joblet::TaskError& e) {
        EXPECT_EQ(backend, "processes");
        EXPECT_EQ(e.original_message(), "task 30 is bad");
      } catch (const CustomError& e) {
        EXPECT_STREQ(e.what(), "task 30 is bad");
      }
      EXPECT_EQ(yielded, 30);
    }
  }
}

TEST(Errors, AFailureAmongLongTasksReturnsPromptly) {
  // 40 tasks on 2 workers, the first of which fails: no task may start once the failure is
  // seen. Every other task blocks until the call has stopped on the failure, so each worker can
  // have started at most one of them (the counter would run up to 40 otherwise), and a call
  // that waited for the rest would never return.
  {
    SCOPED_TRACE("threads");
    // Threads cannot be killed: they are let go by the progress report that follows the call's
    // cancellation on the failure (a report with a failure in it).
    std::atomic<int> started{0};
    std::atomic<bool> failure_reported{false};
    joblet::testing::CallerThread caller;
    auto tasks = std::views::iota(0, 40) | std::views::transform([&](int i) {
                   return [i, &started, &failure_reported, &caller] {
                     started.fetch_add(1);
                     if (i == 0) throw std::runtime_error("first task fails");
                     // The caller, should it run a batch, is the one that reports: it goes on.
                     if (!caller.here()) {
                       EXPECT_TRUE(joblet::testing::wait_until([&] { return failure_reported.load(); }));
                     }
                     return i;
                   };
                 });
    const auto report = [&failure_reported](const joblet::Progress& progress) {
      if (progress.failed > 0) failure_reported.store(true);
    };
    EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "threads", .batch_size = 1, .progress = report})(tasks),
                 std::runtime_error);
    // The failing task, one blocked task per worker, and one the caller may have run.
    EXPECT_LE(started.load(), 4);
    EXPECT_TRUE(failure_reported.load());
  }
  {
    SCOPED_TRACE("processes");
    // Worker processes are killed when the call stops: the other tasks block until then.
    joblet::testing::SharedMemory<std::atomic<int>> started;
    auto tasks = std::views::iota(0, 40) | std::views::transform([started = started.get()](int i) {
                   return [i, started] {
                     started->fetch_add(1);
                     if (i == 0) throw std::runtime_error("first task fails");
                     joblet::testing::block_until_killed();
                     return i;
                   };
                 });
    EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "processes", .batch_size = 1})(tasks), joblet::TaskError);
    // The failing task and one blocked task per worker.
    EXPECT_LE(started->load(), 3);
    EXPECT_FALSE(joblet::testing::has_children());
  }
}

TEST(Errors, KeepGoingReturnsEveryOutcome) {
  for (const auto& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    auto tasks = std::views::iota(0, 60) | std::views::transform([](int i) {
                   return [i] {
                     if (i % 7 == 3) throw std::invalid_argument("bad input " + std::to_string(i));
                     return i * 2;
                   };
                 });
    auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks, joblet::return_as::list.keep_going());
    ASSERT_EQ(outcomes.size(), 60u);
    for (int i = 0; i < 60; ++i) {
      if (i % 7 == 3) {
        ASSERT_FALSE(outcomes[i].ok()) << i;
        EXPECT_NE(outcomes[i].error_message().find("bad input " + std::to_string(i)), std::string::npos);
        if (backend == "processes") {
          EXPECT_THROW(outcomes[i].value(), joblet::TaskError);
        } else {
          EXPECT_THROW(outcomes[i].value(), std::invalid_argument);
        }
      } else {
        ASSERT_TRUE(outcomes[i].ok()) << i;
        EXPECT_EQ(outcomes[i].value(), i * 2);
      }
    }
  }
}

TEST(Errors, KeepGoingGeneratorsYieldFailuresInPlace) {
  auto tasks = std::views::iota(0, 20) | std::views::transform([](int i) {
                 return [i] {
                   if (i == 5) throw std::runtime_error("five");
                   return i;
                 };
               });
  int index = 0;
  for (auto& outcome :
       joblet::Parallel({.n_jobs = 2, .backend = "threads"})(tasks, joblet::return_as::generator.keep_going())) {
    EXPECT_EQ(outcome.ok(), index != 5);
    ++index;
  }
  EXPECT_EQ(index, 20);
  int failures = 0;
  for (auto& [i, outcome] : joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
           tasks, joblet::return_as::generator_unordered.keep_going())) {
    if (!outcome.ok()) {
      EXPECT_EQ(i, 5u);
      ++failures;
    }
  }
  EXPECT_EQ(failures, 1);
}

struct NotSerializable {
  int value;
};

TEST(Errors, ResultsThatCannotCrossProcessesAreRejectedUpFront) {
  auto tasks = std::views::iota(0, 3) | std::views::transform([](int i) { return [i] { return NotSerializable{i}; }; });
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks);
    FAIL() << "expected a ConfigError";
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("NotSerializable"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("serialize"), std::string::npos) << e.what();
  }
  // The same tasks are fine where nothing is serialized.
  EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .backend = "threads"})(tasks).size(), 3u);
}

TEST(Errors, NonStandardExceptionsAreReportedToo) {
  auto tasks = std::views::iota(0, 4) | std::views::transform([](int i) {
                 return [i] {
                   if (i == 2) throw 42;
                   return i;
                 };
               });
  EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "threads"})(tasks), int);
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks);
    FAIL();
  } catch (const joblet::TaskError& e) {
    EXPECT_EQ(e.original_type(), "int");
  }
}

TEST(Errors, AnInputRangeThatThrowsFailsTheCall) {
  auto tasks = std::views::iota(0, 100) | std::views::transform([](int i) {
                 if (i == 42) throw std::out_of_range("no task 42");
                 return [i] { return i; };
               });
  for (const auto& backend : joblet::testing::kBackends) {
    EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks), std::out_of_range) << backend;
  }
  // Read lazily (pre_dispatch), the error surfaces from a worker's read.
  EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "threads", .pre_dispatch = 4})(tasks), std::out_of_range);
}

TEST(Errors, WorkerProcessesMakeTheirTasksAndTheCallerOnlyTheOneThatFailed) {
  // The caller's counts: a worker process makes its tasks in its own copy of the range.
  std::vector<int> made(100, 0);
  auto tasks = std::views::iota(0, 100) | std::views::transform([&made](int i) {
                 ++made[static_cast<std::size_t>(i)];
                 if (i == 42) throw std::out_of_range("no task 42");
                 return [i] { return i; };
               });
  EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks), std::out_of_range);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(made[static_cast<std::size_t>(i)], i == 42 ? 1 : 0) << i;
}

TEST(Errors, ARangeThatFailsOnlyInAWorkerProcessFailsTheCallWithItsDescription) {
  const pid_t caller = ::getpid();
  auto tasks = std::views::iota(0, 50) | std::views::transform([caller](int i) {
                 if (i == 7 && ::getpid() != caller) throw std::length_error("task 7 cannot be made here");
                 return [i] { return i; };
               });
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks);
    FAIL() << "expected the range's error";
  } catch (const joblet::TaskError& e) {
    EXPECT_EQ(e.original_type(), "std::length_error");
    EXPECT_NE(e.original_message().find("task 7 cannot be made here"), std::string::npos) << e.original_message();
  }
}

}  // namespace
