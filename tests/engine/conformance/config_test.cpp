// n_jobs, effective_n_jobs, ParallelConfig scopes, prefer/require and JOBLET_* variables.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <cstdlib>
#include <thread>

namespace {

using namespace std::chrono_literals;

struct EnvVar {
  EnvVar(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~EnvVar() { unsetenv(name_); }
  const char* name_;
};

TEST(Config, NJobsFollowsJoblib) {
  const int cpus = joblet::cpu_count();
  EXPECT_GE(cpus, 1);
  EXPECT_EQ(joblet::effective_n_jobs(1), 1);
  EXPECT_EQ(joblet::effective_n_jobs(5), 5);
  EXPECT_EQ(joblet::effective_n_jobs(-1), cpus);
  EXPECT_EQ(joblet::effective_n_jobs(-2), std::max(cpus - 1, 1));
  EXPECT_EQ(joblet::effective_n_jobs(-1000), 1);
  EXPECT_THROW(joblet::effective_n_jobs(0), joblet::ConfigError);
}

TEST(Config, NJobsZeroIsAClearError) {
  try {
    joblet::Parallel({.n_jobs = 0});
    FAIL();
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("-1 for all CPUs"), std::string::npos) << e.what();
  }
}

TEST(Config, InvalidParametersAreClearErrors) {
  EXPECT_THROW(joblet::Parallel({.verbose = -1}), joblet::ConfigError);
  EXPECT_THROW(joblet::Parallel({.timeout = 0s}), joblet::ConfigError);
  EXPECT_THROW(joblet::Parallel({.timeout = -1s}), joblet::ConfigError);
  EXPECT_THROW(joblet::Parallel({.pre_dispatch = 0}), joblet::ConfigError);
}

TEST(Config, OneJobIsAPlainLoopInTheCaller) {
  EXPECT_EQ(joblet::Parallel({.n_jobs = 1, .backend = "threads"}).backend_name(), "sequential");
  EXPECT_EQ(joblet::Parallel({.n_jobs = 1, .backend = "processes"}).backend_name(), "sequential");
  EXPECT_EQ(joblet::Parallel().backend_name(), "sequential");  // joblib's default: n_jobs = 1
  // A timeout needs a worker to watch: one worker thread, not the caller.
  EXPECT_EQ(joblet::Parallel({.n_jobs = 1, .backend = "threads", .timeout = 1s}).backend_name(), "threads");
  const auto caller = std::this_thread::get_id();
  auto ids = joblet::Parallel({.n_jobs = 1})(
      std::views::iota(0, 3) | std::views::transform([](int) { return [] { return std::this_thread::get_id(); }; }));
  for (auto id : ids) EXPECT_EQ(id, caller);
}

TEST(Config, UnknownBackendListsTheRegisteredOnes) {
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "dask"});
    FAIL();
  } catch (const joblet::ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'dask'"), std::string::npos) << what;
    EXPECT_NE(what.find("processes, sequential, threads"), std::string::npos) << what;
  }
}

TEST(Config, ScopesNestAndMerge) {
  joblet::ParallelConfig outer({.n_jobs = 2, .backend = "processes", .verbose = 0});
  EXPECT_EQ(joblet::Parallel().backend_name(), "processes");
  EXPECT_EQ(joblet::Parallel().n_workers(), 2);
  {
    joblet::ParallelConfig inner({.backend = "threads"});  // n_jobs still comes from outer
    joblet::Parallel parallel;
    EXPECT_EQ(parallel.backend_name(), "threads");
    EXPECT_EQ(parallel.n_workers(), 2);
    // The call's own arguments win over every scope.
    EXPECT_EQ(joblet::Parallel({.n_jobs = 3}).n_workers(), 3);
  }
  EXPECT_EQ(joblet::Parallel().backend_name(), "processes");
}

TEST(Config, ScopesAreThreadLocal) {
  joblet::ParallelConfig scope({.n_jobs = 2, .backend = "processes"});
  std::string seen;
  std::thread([&] { seen = joblet::Parallel().backend_name(); }).join();
  EXPECT_EQ(seen, "sequential");
}

TEST(Config, PreferPicksAKindOfWorkerWhenNoBackendIsNamed) {
  EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .prefer = joblet::Prefer::processes}).backend_name(), "processes");
  EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .prefer = joblet::Prefer::threads}).backend_name(), "threads");
  // A named backend wins over a preference.
  EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .backend = "threads", .prefer = joblet::Prefer::processes}).backend_name(),
            "threads");
}

TEST(Config, RequireSharedMemForcesThreads) {
  joblet::ParallelConfig scope({.backend = "processes"});
  EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .require = joblet::Require::sharedmem}).backend_name(), "threads");
  // Asking for processes and shared memory on the same call is a contradiction.
  EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "processes", .require = joblet::Require::sharedmem}),
               joblet::ConfigError);
  // With shared memory, tasks can write the caller's data.
  std::vector<int> marks(20, 0);
  joblet::Parallel({.n_jobs = 2, .require = joblet::Require::sharedmem})(
      std::views::iota(0, 20) | std::views::transform([&marks](int i) { return [&marks, i] { marks[i] = 1; }; }));
  EXPECT_EQ(std::count(marks.begin(), marks.end(), 1), 20);
}

TEST(Config, EnvironmentVariablesFillWhatCodeLeavesUnset) {
  EnvVar backend("JOBLET_BACKEND", "processes");
  EnvVar n_jobs("JOBLET_N_JOBS", "2");
  EXPECT_EQ(joblet::Parallel().backend_name(), "processes");
  EXPECT_EQ(joblet::Parallel().n_workers(), 2);
  EXPECT_EQ(joblet::Parallel({.n_jobs = 3, .backend = "threads"}).backend_name(), "threads");
  joblet::ParallelConfig scope({.backend = "threads"});
  EXPECT_EQ(joblet::Parallel().backend_name(), "threads");
}

TEST(Config, MalformedEnvironmentVariablesAreNamedInTheError) {
  {
    EnvVar n_jobs("JOBLET_N_JOBS", "lots");
    try {
      joblet::Parallel();
      FAIL();
    } catch (const joblet::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("JOBLET_N_JOBS"), std::string::npos) << e.what();
    }
  }
  {
    EnvVar n_jobs("JOBLET_N_JOBS", "0");
    EXPECT_THROW(joblet::Parallel(), joblet::ConfigError);
  }
  {
    EnvVar backend("JOBLET_BACKEND", "nope");
    try {
      joblet::Parallel();
      FAIL();
    } catch (const joblet::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("JOBLET_BACKEND='nope'"), std::string::npos) << e.what();
    }
  }
}

TEST(Config, JoblibBackendNamesPointToTheirJobletNames) {
  const auto message = [](const char* name) {
    try {
      joblet::Parallel({.n_jobs = 2, .backend = name});
    } catch (const joblet::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("loky").find("\"processes\""), std::string::npos) << message("loky");
  EXPECT_NE(message("multiprocessing").find("\"processes\""), std::string::npos) << message("multiprocessing");
  EXPECT_NE(message("threading").find("\"threads\""), std::string::npos) << message("threading");
  // Written in the code: the environment is not blamed.
  EXPECT_EQ(message("loky").find("JOBLET_BACKEND"), std::string::npos) << message("loky");
}

TEST(Config, ProgressCallbacksMergeLikeOtherFields) {
  int calls = 0;
  joblet::ParallelConfig scope({.progress = [&calls](const joblet::Progress&) { ++calls; }});
  joblet::Parallel({.n_jobs = 2, .backend = "threads"})(std::views::iota(0, 10) |
                                                        std::views::transform([](int i) { return [i] { return i; }; }));
  EXPECT_GE(calls, 1);
}

}  // namespace
