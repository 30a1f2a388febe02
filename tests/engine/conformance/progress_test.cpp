// Progress: a callback for programs; joblib-style lines in logs; a live bar on terminals.
#include <gtest/gtest.h>
#include <pty.h>
#include <joblet/joblet.hpp>

#include <filesystem>
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

TEST(Progress, AVerboseCallEndsWithASummaryOfEveryWorker) {
  for (const char* backend : {"sequential", "threads", "processes"}) {
    SCOPED_TRACE(backend);
    joblet::testing::CapturedFd err(STDERR_FILENO);
    auto tasks = std::views::iota(0, 40) | std::views::transform([](int i) {
                   return [i] {
                     joblet::testing::sleep_ms(2);
                     if (i % 10 == 0) throw std::runtime_error("x");
                     return i;
                   };
                 });
    joblet::Parallel({.n_jobs = 2, .backend = backend, .verbose = 1})(tasks, joblet::return_as::list.keep_going());
    const std::string text = err.text();
    std::smatch match;
    ASSERT_TRUE(std::regex_search(
        text, match,
        std::regex(
            R"(\[joblet\] Summary: 36 done, 4 failed in [0-9.]+s \| efficiency ([0-9]+)% \(([0-9.]+)s busy of ([12]) workers?\))")))
        << text;
    // 40 tasks of 2 ms, every worker counted (those of processes are other processes).
    EXPECT_GE(std::stod(match[2]), 0.07) << text;
    EXPECT_LE(std::stoi(match[1]), 100);
    EXPECT_EQ(text.find("cached"), std::string::npos) << "no task made a cached call: " << text;
  }
}

TEST(Progress, AVerboseCallSummarisesTheCachedCallsOfItsWorkersAndTheTimeTheySaved) {
  char pattern[] = "/tmp/joblet-summary-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::filesystem::path dir = pattern;
  for (const char* backend : {"threads", "processes"}) {
    SCOPED_TRACE(backend);
    joblet::Memory memory(dir / backend);
    auto slow_square = memory.cache(
        "slow_square", +[](int x) {
          joblet::testing::sleep_ms(20);
          return x * x;
        });
    auto tasks =
        std::views::iota(0, 10) | std::views::transform([&](int i) { return joblet::delayed(slow_square, i); });
    {
      joblet::testing::CapturedFd err(STDERR_FILENO);
      joblet::Parallel({.n_jobs = 2, .backend = backend, .verbose = 1})(tasks);
      const std::string text = err.text();
      EXPECT_TRUE(std::regex_search(text, std::regex(R"(Summary: 10 done \(0 cached, 10 computed\), 0 failed in )")))
          << text;
    }
    // Every worker's hits, in the caller's statistics too.
    const auto before = memory.statistics();
    joblet::testing::CapturedFd err(STDERR_FILENO);
    joblet::Parallel({.n_jobs = 2, .backend = backend, .verbose = 1})(tasks);
    const std::string text = err.text();
    std::smatch match;
    ASSERT_TRUE(std::regex_search(
        text, match,
        std::regex(R"(Summary: 10 done \(10 cached, 0 computed\), 0 failed in [0-9.]+s \| time saved ([0-9.]+)s)")))
        << text;
    EXPECT_GE(std::stod(match[1]), 0.2) << "ten computations of 20 ms: " << text;
    EXPECT_EQ(memory.statistics().hits - before.hits, 10u);
    EXPECT_EQ(slow_square.statistics().misses, 10u);
  }
  std::filesystem::remove_all(dir);
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
