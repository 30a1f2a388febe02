// The first failing task cancels the rest and its error reaches the caller; keep_going
// returns every outcome instead.
#include <gtest/gtest.h>
#include <unistd.h>
#include <joblet/joblet.hpp>

#include <atomic>
#include <new>
#include <ranges>
#include <stdexcept>
#include <string>
#include <system_error>
#include <typeinfo>
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
    EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "processes", .batch_size = 1})(tasks), std::runtime_error);
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
        EXPECT_THROW(outcomes[i].value(), std::invalid_argument);
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
  } catch (const std::length_error& e) {
    EXPECT_STREQ(e.what(), "task 7 cannot be made here");
    const auto site = joblet::error_site(e);
    ASSERT_TRUE(site.has_value());
    EXPECT_NE(site->pid, caller);
  }
}

// --- exception types across processes (joblet/exceptions.hpp) ---------------------------------

template <class Throw>
auto tasks_throwing_at(int bad, Throw throw_it) {
  return std::views::iota(0, 40) | std::views::transform([bad, throw_it](int i) {
           return [i, bad, throw_it] {
             if (i == bad) throw_it(i);
             return i;
           };
         });
}

// Runs `tasks` on `backend` and hands the exception the call threw, as E, to `check`.
template <class E, class Tasks, class Check>
void expect_thrown_as(const std::string& backend, const Tasks& tasks, Check check) {
  try {
    joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks);
    ADD_FAILURE() << backend << ": nothing was thrown";
  } catch (const E& e) {
    EXPECT_EQ(dynamic_cast<const joblet::TaskError*>(&e), nullptr) << backend << ": " << e.what();
    check(e);
  } catch (const std::exception& e) {
    ADD_FAILURE() << backend << ": caught " << joblet::detail::demangle(typeid(e).name()) << ": " << e.what();
  }
}

TEST(Errors, StandardExceptionsKeepTheirTypeOnEveryBackend) {
  const pid_t caller = ::getpid();
  for (const auto& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    expect_thrown_as<std::domain_error>(
        backend,
        tasks_throwing_at(17,
                          [](int i) -> void { throw std::domain_error("x out of domain at " + std::to_string(i)); }),
        [&](const std::domain_error& e) {
          EXPECT_STREQ(e.what(), "x out of domain at 17");
          const auto site = joblet::error_site(e);
          if (backend == "processes") {
            ASSERT_TRUE(site.has_value());
            EXPECT_EQ(site->task_index, 17u);
            EXPECT_NE(site->pid, caller);
          } else {
            EXPECT_FALSE(site.has_value());  // thrown in this process: the object itself
          }
        });
    expect_thrown_as<std::system_error>(
        backend,
        tasks_throwing_at(3,
                          [](int) -> void {
                            throw std::system_error(std::make_error_code(std::errc::no_such_file_or_directory),
                                                    "open input.dat");
                          }),
        [](const std::system_error& e) {
          EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
          EXPECT_EQ(e.code().category(), std::generic_category());
          EXPECT_EQ(std::string(e.what()), "open input.dat: " + e.code().message());
        });
    expect_thrown_as<std::bad_alloc>(backend, tasks_throwing_at(5, [](int) -> void { throw std::bad_alloc(); }),
                                     [](const std::bad_alloc&) {});
    expect_thrown_as<std::overflow_error>(
        backend, tasks_throwing_at(0, [](int) -> void { throw std::overflow_error("too many"); }),
        [](const std::overflow_error& e) { EXPECT_STREQ(e.what(), "too many"); });
    expect_thrown_as<joblet::ConfigError>(
        backend, tasks_throwing_at(9, [](int) -> void { throw joblet::ConfigError("bad setting inside a task"); }),
        [&](const joblet::ConfigError& e) {
          EXPECT_EQ(e.message(), "bad setting inside a task");
          if (backend == "processes") EXPECT_EQ(e.site().task_index, 9u);
        });
  }
}

// A user's exceptions: one made again from its message, one from its fields.
struct SolverDiverged : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ResidualTooLarge : std::exception {
  ResidualTooLarge() = default;
  ResidualTooLarge(int step, double residual)
      : step(step), residual(residual), text("residual " + std::to_string(residual)) {}
  const char* what() const noexcept override { return text.c_str(); }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(step, residual, text);
  }
  int step = 0;
  double residual = 0;
  std::string text;
};

struct NotRegistered : std::runtime_error {
  using std::runtime_error::runtime_error;
};

TEST(Errors, RegisteredExceptionsKeepTheirTypeAcrossProcesses) {
  EXPECT_TRUE(joblet::register_exception<SolverDiverged>());
  EXPECT_FALSE(joblet::register_exception<SolverDiverged>());  // once is enough
  joblet::register_exception<ResidualTooLarge>();
  for (const auto& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    expect_thrown_as<SolverDiverged>(
        backend, tasks_throwing_at(11, [](int i) -> void { throw SolverDiverged("diverged at " + std::to_string(i)); }),
        [](const SolverDiverged& e) { EXPECT_STREQ(e.what(), "diverged at 11"); });
    expect_thrown_as<ResidualTooLarge>(backend,
                                       tasks_throwing_at(2, [](int i) -> void { throw ResidualTooLarge(i * 10, 0.5); }),
                                       [&](const ResidualTooLarge& e) {
                                         EXPECT_EQ(e.step, 20);
                                         EXPECT_EQ(e.residual, 0.5);
                                         EXPECT_STREQ(e.what(), "residual 0.500000");
                                         if (backend == "processes") EXPECT_EQ(joblet::error_site(e)->task_index, 2u);
                                       });
  }
  // A type nobody registered still names itself in a TaskError.
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
        tasks_throwing_at(4, [](int) -> void { throw NotRegistered("no luck"); }));
    FAIL() << "expected a TaskError";
  } catch (const joblet::TaskError& e) {
    EXPECT_NE(e.original_type().find("NotRegistered"), std::string::npos) << e.original_type();
    EXPECT_EQ(e.original_message(), "no luck");
    EXPECT_EQ(e.site().task_index, 4u);
  }
}

}  // namespace

// Another file's (anonymous namespace)::SameName, a different type with the same name.
bool register_same_name_from_another_file();

namespace {

struct SameName : std::runtime_error {
  using std::runtime_error::runtime_error;
};

TEST(Errors, TwoExceptionTypesOfOneNameCannotBothBeRegistered) {
  EXPECT_TRUE(joblet::register_exception<SameName>());
  try {
    register_same_name_from_another_file();
    FAIL() << "expected a ConfigError";
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(e.message().find("(anonymous namespace)::SameName"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("rename one"), std::string::npos) << e.message();
  }
}

}  // namespace
