// Environment::detect() and Session on real processes: plain, under a fake Slurm step (the
// silent-singleton trap, with a real MPI singleton), and without MPI support linked.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <joblet/joblet.hpp>

#include <cstdlib>
#include <map>
#include <string>
#include <tuple>

namespace {

// Runs `body` in a forked child with exactly these launcher variables set; returns its exit status.
template <class Body>
int in_child_with(const std::map<std::string, std::string>& variables, Body body) {
  const pid_t pid = fork();
  if (pid == 0) {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK", "PMIX_RANK",
                             "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_PROCID",
                             "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"}) {
      unsetenv(name);
    }
    for (const auto& [name, value] : variables) setenv(name.c_str(), value.c_str(), 1);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

TEST(Environment, PlainStart) {
  EXPECT_EQ(in_child_with({},
                          [] {
                            auto env = joblet::Environment::detect();
                            return env.launcher == joblet::Launcher::none && env.ranks == 1 && env.rank == 0 ? 0 : 1;
                          }),
            0);
}

TEST(Environment, OpenMpiMpirun) {
  EXPECT_EQ(in_child_with({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "3"}, {"PMIX_RANK", "3"}},
                          [] {
                            auto env = joblet::Environment::detect();
                            return env.launcher == joblet::Launcher::mpirun && env.ranks == 4 && env.rank == 3 ? 0 : 1;
                          }),
            0);
}

TEST(Environment, SrunStepAndArrayElement) {
  EXPECT_EQ(in_child_with({{"SLURM_JOB_ID", "77"},
                           {"SLURM_STEP_ID", "0"},
                           {"SLURM_STEP_NUM_TASKS", "8"},
                           {"SLURM_NTASKS", "8"},
                           {"SLURM_PROCID", "5"},
                           {"SLURM_ARRAY_JOB_ID", "70"},
                           {"SLURM_ARRAY_TASK_ID", "2"},
                           {"SLURM_ARRAY_TASK_COUNT", "4"},
                           {"PMIX_RANK", "5"}},
                          [] {
                            auto env = joblet::Environment::detect();
                            const bool ok =
                                env.launcher == joblet::Launcher::srun && env.ranks == 8 && env.rank == 5 &&
                                env.slurm_job_id == "77" && env.slurm_array_task_id == 2 &&
                                env.slurm_array_task_count == 4 &&
                                env.describe() == "srun, rank 5 of 8, Slurm job 77 step 0, array element 2 of 4";
                            return ok ? 0 : 1;
                          }),
            0);
}

TEST(Environment, BatchScriptOutsideAStep) {
  EXPECT_EQ(in_child_with({{"SLURM_JOB_ID", "12"}, {"SLURM_NTASKS", "4"}, {"SLURM_PROCID", "0"}},
                          [] {
                            auto env = joblet::Environment::detect();
                            return env.launcher == joblet::Launcher::slurm_batch && env.ranks == 1 &&
                                           env.slurm_tasks == 4
                                       ? 0
                                       : 1;
                          }),
            0);
}

TEST(Environment, MpichHydra) {
  EXPECT_EQ(in_child_with({{"PMI_SIZE", "3"}, {"PMI_RANK", "1"}},
                          [] {
                            auto env = joblet::Environment::detect();
                            return env.launcher == joblet::Launcher::mpirun && env.ranks == 3 && env.rank == 1 ? 0 : 1;
                          }),
            0);
}

TEST(Environment, LaunchedManyMeansALauncherStartedSeveralRanks) {
  auto launched_many = [](const std::map<std::string, std::string>& variables) {
    return in_child_with(variables, [] { return joblet::Environment::detect().launched_many() ? 1 : 0; });
  };
  EXPECT_EQ(launched_many({}), 0);
  EXPECT_EQ(launched_many({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "0"}}), 1);
  EXPECT_EQ(launched_many({{"OMPI_COMM_WORLD_SIZE", "1"}, {"OMPI_COMM_WORLD_RANK", "0"}}), 0);
  EXPECT_EQ(launched_many({{"SLURM_JOB_ID", "1"}, {"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}}), 1);
  EXPECT_EQ(launched_many({{"SLURM_JOB_ID", "12"}, {"SLURM_NTASKS", "4"}}), 0);  // a batch script: one process
  EXPECT_EQ(launched_many({{"PMIX_RANK", "0"}}), 1);                             // the size is unknown until MPI says
  // A launcher variable that is not wholly a number is ignored, not half read.
  EXPECT_EQ(launched_many({{"OMPI_COMM_WORLD_SIZE", "4x"}}), 0);
}

TEST(Environment, CacheDirectory) {
  EXPECT_EQ(in_child_with({},
                          [] {
                            unsetenv("JOBLET_CACHE_DIR");
                            if (joblet::default_cache_dir() != "joblet-cache") return 1;
                            setenv("JOBLET_CACHE_DIR", "/scratch/x", 1);
                            return joblet::default_cache_dir() == "/scratch/x" ? 0 : 2;
                          }),
            0);
}

TEST(Session, WithoutALauncherRunsOnThreads) {
  EXPECT_EQ(in_child_with({},
                          [] {
                            int argc = 1;
                            char name[] = "test";
                            char* args[] = {name, nullptr};
                            char** argv = args;
                            joblet::Session session(argc, argv);
                            const bool ok = !session.uses_mpi() && session.size() == 1 && session.is_root() &&
                                            session.default_backend() == "threads" &&
                                            joblet::Parallel({.n_jobs = 2}).backend_name() == "threads";
                            return ok ? 0 : 1;
                          }),
            0);
}

TEST(Session, TheSilentSingletonTrapStopsWithAClearError) {
  // Slurm says 4 tasks, but MPI starts as a singleton of 1 (no Slurm PMI here): the program
  // must stop instead of computing everything 4 times.
  const int status = in_child_with(
      {{"SLURM_JOB_ID", "5"},
       {"SLURM_STEP_ID", "0"},
       {"SLURM_STEP_NUM_TASKS", "4"},
       {"SLURM_NTASKS", "4"},
       {"SLURM_PROCID", "2"}},
      [] {
        int argc = 1;
        char name[] = "test";
        char* args[] = {name, nullptr};
        char** argv = args;
        try {
          joblet::Session session(argc, argv);
          return 1;
        } catch (const joblet::ConfigError& e) {
          const std::string what = e.what();
          return what.find("srun --mpi=pmix") != std::string::npos && what.find("4 tasks") != std::string::npos ? 0 : 2;
        }
      });
  EXPECT_EQ(status, 0);
}

}  // namespace

namespace {

TEST(Logging, IdentityCanBeSetBeforeAnythingLogs) {
  // Session sets the rank prefix before joblet logs anything: that first use must not deadlock.
  EXPECT_EQ(in_child_with({},
                          [] {
                            alarm(10);  // a deadlock ends the child with SIGALRM instead of hanging the suite
                            joblet::set_log_identity("rank 3 node07");
                            return 0;
                          }),
            0);
}

}  // namespace

namespace {

TEST(Settings, TheCatalogueIsSortedUniqueAndDescribed) {
  const auto catalogue = joblet::settings_catalogue();
  ASSERT_FALSE(catalogue.empty());
  for (std::size_t i = 0; i < catalogue.size(); ++i) {
    EXPECT_TRUE(catalogue[i].name.starts_with("JOBLET_")) << catalogue[i].name;
    EXPECT_FALSE(catalogue[i].type.empty() || catalogue[i].default_value.empty() || catalogue[i].meaning.empty())
        << catalogue[i].name;
    if (i > 0) EXPECT_LT(catalogue[i - 1].name, catalogue[i].name) << "sorted, no duplicates";
  }
}

TEST(Settings, AMalformedValueIsRejectedByNameWhenChecked) {
  for (const auto& [name, value, expected] :
       {std::tuple{"JOBLET_N_JOBS", "lots", "use -1 for all CPUs"}, std::tuple{"JOBLET_LOG_LEVEL", "loud", "use trace"},
        std::tuple{"JOBLET_SHARD", "3/3", "write k/K"},
        std::tuple{"JOBLET_MPI_STREAM_RANKS", "0", "number of ranks"}}) {
    SCOPED_TRACE(name);
    const int status = in_child_with({{name, value}}, [&] {
      try {
        joblet::check_settings();
      } catch (const joblet::ConfigError& e) {
        const std::string text = e.what();
        return text.find(std::string(name) + "='" + value + "' is not valid: ") != std::string::npos &&
                       text.find(expected) != std::string::npos
                   ? 0
                   : 2;
      }
      return 1;
    });
    EXPECT_EQ(status, 0) << "1: accepted, 2: the message does not name the variable and the fix";
  }
  EXPECT_EQ(in_child_with({{"JOBLET_N_JOBS", "-1"}, {"JOBLET_SHARD", "off"}, {"JOBLET_LOG_LEVEL", "info"}},
                          [] {
                            joblet::check_settings();
                            return 0;
                          }),
            0);
}

}  // namespace
