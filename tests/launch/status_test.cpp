// `joblet status`: a campaign's failed tasks, recorded in the cache by whoever saw them fail, and
// `--watch`, which views the campaigns until they are complete. The real program, on real caches.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <joblet/joblet.hpp>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <ranges>
#include <stdexcept>
#include <string>

#include "support.hpp"

namespace {

namespace fs = std::filesystem;
using joblet::testing::TempDir;

std::string status_of(const fs::path& cache, const std::string& options = "") {
  return std::string(JOBLET_CLI) + " --dir " + cache.string() + " status" + options;
}

// A cached function that fails for some inputs until `fixed` exists: task 7 throws, task 3's
// worker process dies.
int flaky(int x, const std::string& fixed) {
  if (!fs::exists(fixed)) {
    if (x == 7) throw std::runtime_error("diverged at 7\nafter 12 steps");
    if (x == 3) std::raise(SIGKILL);
  }
  return x * x;
}

TEST(JobletStatus, ListsTheFailedTasksOfACampaignWithTheirErrorsUntilARerunComputesThem) {
  TempDir dir;
  const fs::path cache = dir.path() / "cache";
  const std::string fixed = (dir.path() / "fixed").string();
  joblet::Memory memory(cache);
  auto cached = memory.cache("flaky", flaky, joblet::ignore_args<1>, {.version = "1"});
  auto tasks =
      std::views::iota(0, 10) | std::views::transform([&](int i) { return joblet::delayed(cached, i, fixed); });
  joblet::Parallel parallel({.n_jobs = 2, .backend = "processes"});
  const auto outcomes = parallel(tasks, joblet::return_as::list.keep_going());
  ASSERT_FALSE(outcomes[3].ok());
  ASSERT_FALSE(outcomes[7].ok());

  const joblet::testing::CommandRun run = joblet::testing::run_command(status_of(cache));
  EXPECT_EQ(run.status, 3) << run.output;
  for (const char* expected : {"failed: 2 of the missing tasks", "task 3 (", "joblet::WorkerDiedError", "SIGKILL",
                               "task 7 (", "std::runtime_error: diverged at 7 after 12 steps"}) {
    EXPECT_NE(run.output.find(expected), std::string::npos) << expected << " in:\n" << run.output;
  }
  EXPECT_NE(run.output.find("pid "), std::string::npos) << run.output;

  // The same command again, once the cause is fixed, computes exactly those two.
  joblet::testing::write_text(fixed, "");
  const auto before = cached.statistics().misses;
  const auto results = parallel(tasks);
  EXPECT_EQ(results[7], 49);
  EXPECT_EQ(cached.statistics().misses - before, 2u);
  const joblet::testing::CommandRun after = joblet::testing::run_command(status_of(cache));
  EXPECT_EQ(after.status, 0) << after.output;
  EXPECT_EQ(after.output.find("failed"), std::string::npos) << after.output;
}

TEST(JobletStatus, AHostileFailureRecordIsNoFailure) {
  TempDir dir;
  const fs::path cache = dir.path() / "cache";
  const std::string fixed = (dir.path() / "fixed").string();
  joblet::Memory memory(cache);
  auto cached = memory.cache("flaky", flaky, joblet::ignore_args<1>, {.version = "1"});
  auto tasks = std::views::iota(5, 9) | std::views::transform([&](int i) { return joblet::delayed(cached, i, fixed); });
  joblet::Parallel({.n_jobs = 1})(tasks, joblet::return_as::list.keep_going());
  const fs::path records = cache / ".campaigns" / "failures" / "flaky";
  const fs::path record = records / cached.key(7, fixed).hex();
  ASSERT_TRUE(fs::exists(record));
  // A FIFO, a link out of the cache and a lying record read as no failure: never a hang.
  fs::remove(record);
  ASSERT_EQ(mkfifo(record.c_str(), 0600), 0);
  EXPECT_EQ(joblet::testing::run_command(status_of(cache)).output.find("failed:"), std::string::npos);
  fs::remove(record);
  joblet::testing::write_text(dir.path() / "outside", "not a record");
  fs::create_symlink(dir.path() / "outside", record);
  EXPECT_EQ(joblet::testing::run_command(status_of(cache)).output.find("failed:"), std::string::npos);
  fs::remove(record);
  joblet::testing::write_text(record, std::string(100, '\xff'));
  const joblet::testing::CommandRun run = joblet::testing::run_command(status_of(cache));
  EXPECT_EQ(run.status, 3) << run.output;
  EXPECT_EQ(run.output.find("failed:"), std::string::npos) << run.output;
}

TEST(JobletStatus, AFailureThatCannotBeRecordedIsStillTheCallsOwnError) {
  TempDir dir;
  const fs::path cache = dir.path() / "cache";
  joblet::Memory memory(cache);
  auto cached = memory.cache("flaky", flaky, joblet::ignore_args<1>, {.version = "1"});
  // Something in the way of the records: recording the failure may fail, the call's own error stands.
  fs::remove_all(cache / ".campaigns");
  joblet::testing::write_text(cache / ".campaigns", "not a directory");
  try {
    cached(7, (dir.path() / "fixed").string());
    FAIL() << "expected the function's own exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "diverged at 7\nafter 12 steps");
  }
}

TEST(JobletStatus, WatchViewsTheCampaignsUntilTheyAreComplete) {
  TempDir dir;
  const fs::path cache = dir.path() / "cache";
  const std::string fixed = (dir.path() / "fixed").string();
  joblet::Memory memory(cache);
  auto cached = memory.cache("flaky", flaky, joblet::ignore_args<1>, {.version = "1"});
  auto tasks = std::views::iota(4, 9) | std::views::transform([&](int i) { return joblet::delayed(cached, i, fixed); });
  joblet::Parallel parallel({.n_jobs = 1});
  parallel(tasks, joblet::return_as::list.keep_going());  // task 7 fails

  // Watching an incomplete campaign: it goes on until the rerun completes it, then ends by itself.
  const fs::path output = dir.path() / "watch.txt";
  const pid_t watcher = fork();
  ASSERT_GE(watcher, 0);
  if (watcher == 0) {
    FILE* file = std::freopen(output.c_str(), "w", stdout);
    if (file == nullptr) _exit(98);
    execl(JOBLET_CLI, JOBLET_CLI, "--dir", cache.c_str(), "status", "--watch", "--interval", "0.1",
          static_cast<char*>(nullptr));
    _exit(99);
  }
  // Its first view is on disk before the campaign changes.
  ASSERT_TRUE(joblet::testing::wait_until([&] {
    return joblet::testing::read_text(output).find("4/5 80.0%, 1 failed") != std::string::npos;
  })) << joblet::testing::read_text(output);
  joblet::testing::write_text(fixed, "");
  parallel(tasks);
  int status = 0;
  ASSERT_EQ(waitpid(watcher, &status, 0), watcher);  // ends by itself once complete
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const std::string text = joblet::testing::read_text(output);
  EXPECT_NE(text.find("joblet status --watch"), std::string::npos) << text;
  EXPECT_NE(text.find("std::runtime_error: diverged at 7"), std::string::npos) << text;
  EXPECT_NE(text.find("5/5 100.0% | complete"), std::string::npos) << text;
  EXPECT_EQ(text.find("\x1b["), std::string::npos) << "no terminal codes in a file: " << text;

  const joblet::testing::CommandRun bad = joblet::testing::run_command(status_of(cache, " --watch --interval 0"));
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("--interval 0 is not valid"), std::string::npos) << bad.output;
}

}  // namespace
