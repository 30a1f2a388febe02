// Progress: a callback for programs; joblib-style lines in logs; a live bar on terminals.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>
#include <pty.h>

#include <ranges>
#include <regex>

#include "../support.hpp"

namespace {

auto tiny_tasks(int n) {
  return std::views::iota(0, n) | std::views::transform([](int i) {
           return [i] {
             joblet::testing::sleep_ms(1);
             return i;
           };
         });
}

TEST(Progress, CallbackSeesMonotoneCountsAndAFinalReport) {
  for (const auto& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    std::vector<joblet::Progress> reports;
    joblet::Parallel({.n_jobs = 2, .backend = backend, .progress = [&reports](const joblet::Progress& p) {
                        reports.push_back(p);
                      }})(tiny_tasks(200));
    ASSERT_FALSE(reports.empty());
    for (std::size_t i = 1; i < reports.size(); ++i) EXPECT_GE(reports[i].done, reports[i - 1].done);
    const auto& last = reports.back();
    EXPECT_TRUE(last.finished);
    EXPECT_EQ(last.done, 200u);
    EXPECT_EQ(last.total, 200u);
    EXPECT_EQ(last.failed, 0u);
    EXPECT_EQ(std::count_if(reports.begin(), reports.end(), [](const auto& p) { return p.finished; }), 1);
  }
}

TEST(Progress, VerboseWritesLinesToStderrAndNothingToStdout) {
  joblet::testing::CapturedFd out(STDOUT_FILENO);
  joblet::testing::CapturedFd err(STDERR_FILENO);
  joblet::Parallel({.n_jobs = 2, .backend = "threads", .verbose = 100})(tiny_tasks(300));
  const std::string stdout_text = out.text();
  const std::string stderr_text = err.text();
  EXPECT_EQ(stdout_text, "");
  EXPECT_NE(stderr_text.find("[joblet] Using backend threads with 2 concurrent workers."), std::string::npos)
      << stderr_text;
  EXPECT_TRUE(std::regex_search(stderr_text, std::regex(R"(\[joblet\] Done 300 tasks in [0-9.]+s)"))) << stderr_text;
  EXPECT_EQ(stderr_text.find('\r'), std::string::npos);  // no bar in a log file
}

TEST(Progress, SilentByDefault) {
  joblet::testing::CapturedFd err(STDERR_FILENO);
  joblet::Parallel({.n_jobs = 2, .backend = "threads"})(tiny_tasks(50));
  EXPECT_EQ(err.text(), "");
}

TEST(Progress, FailedTasksAreCounted) {
  joblet::testing::CapturedFd err(STDERR_FILENO);
  auto tasks = std::views::iota(0, 20) | std::views::transform([](int i) {
                 return [i] {
                   if (i % 5 == 0) throw std::runtime_error("x");
                   return i;
                 };
               });
  joblet::Parallel({.n_jobs = 2, .backend = "threads", .verbose = 1})(tasks, joblet::return_as::list.keep_going());
  EXPECT_NE(err.text().find("Done 20 tasks (4 failed)"), std::string::npos);
}

TEST(Progress, ATerminalGetsALiveBar) {
  // Run the call in a child whose stderr is a pseudo-terminal, and read what it drew.
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    joblet::Parallel({.n_jobs = 2, .backend = "threads", .verbose = 1})(tiny_tasks(400));
    _exit(0);
  }
  std::string drawn;
  char buffer[4096];
  for (;;) {
    const ssize_t got = read(master, buffer, sizeof buffer);
    if (got <= 0) break;
    drawn.append(buffer, static_cast<std::size_t>(got));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  close(master);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(drawn.find('\r'), std::string::npos) << drawn;
  EXPECT_NE(drawn.find("400/400 100%"), std::string::npos) << drawn;
  EXPECT_NE(drawn.find("tasks/s"), std::string::npos) << drawn;
}

}  // namespace
