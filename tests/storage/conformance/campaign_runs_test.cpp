// CampaignRuns: the chain of run claims that the processes of an elastic campaign share.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "joblet/campaign.hpp"
#include "joblet/error.hpp"
#include "joblet/store.hpp"
#include "support.hpp"

namespace {

using joblet::CampaignRuns;
using joblet::TaskRun;
using joblet::testing::fork_child;
using joblet::testing::TempDir;
using joblet::testing::wait_child;
using namespace std::chrono_literals;

joblet::LockOptions quick_locks() {
  joblet::LockOptions options;
  options.stale_after = 0.4s;
  options.heartbeat = 0.05s;
  options.poll = 0.005s;
  options.poll_max = 0.05s;
  return options;
}

std::filesystem::path runs_directory(const TempDir& dir, const std::string& campaign) {
  return dir.path() / ".campaigns" / (campaign + ".runs");
}

// Processes that pick different lengths still claim runs that never overlap and leave no task
// out: each run starts where the one before it ends.
TEST(CampaignRuns, RunsOfAnyLengthsTileTheCampaignWithoutOverlap) {
  TempDir dir;
  constexpr std::size_t kTasks = 100;
  CampaignRuns first(dir.path(), "f-00000001", kTasks);
  CampaignRuns second(dir.path(), "f-00000001", kTasks);
  std::vector<int> owner(kTasks, 0);
  std::vector<TaskRun> firsts;
  std::vector<TaskRun> seconds;
  const std::size_t lengths[] = {1, 7, 3, 20, 2};
  for (std::size_t round = 0;; ++round) {
    const auto a = first.claim(lengths[round % 5]);
    const auto b = second.claim(lengths[(round + 2) % 5]);
    if (!a && !b) break;
    for (const auto& [run, who, runs] : {std::tuple(a, 1, &firsts), std::tuple(b, 2, &seconds)}) {
      if (!run) continue;
      ASSERT_LT(run->begin, run->end);
      ASSERT_LE(run->end, kTasks);
      runs->push_back(*run);
      for (std::size_t task = run->begin; task < run->end; ++task) {
        ASSERT_EQ(owner[task], 0) << "task " << task << " claimed twice";
        owner[task] = who;
      }
    }
  }
  for (std::size_t task = 0; task < kTasks; ++task) EXPECT_NE(owner[task], 0) << "task " << task << " unclaimed";
  // Each process saw the other's runs, and only those, as others().
  EXPECT_EQ(first.others(), seconds);
  EXPECT_EQ(second.others(), firsts);
  // A process that joins when every task is claimed claims nothing and sees every run.
  CampaignRuns late(dir.path(), "f-00000001", kTasks);
  EXPECT_FALSE(late.claim(5));
  EXPECT_EQ(late.others().size(), firsts.size() + seconds.size());
  // Another campaign has a chain of its own.
  CampaignRuns other(dir.path(), "f-00000002", kTasks);
  EXPECT_EQ(other.claim(4), (TaskRun{0, 4}));
  // Runs never reach past the campaign's last task.
  CampaignRuns small(dir.path(), "f-00000003", 3);
  EXPECT_EQ(small.claim(10), (TaskRun{0, 3}));
  EXPECT_FALSE(small.claim(10));
}

// Who holds a run: alive while its heartbeat moves; gone once its process died (on this host:
// at once) or its heartbeat stopped for stale_after.
TEST(CampaignRuns, AHolderIsGoneWhenItsProcessDiesOrItsHeartbeatStops) {
  TempDir dir;
  // 40 heartbeats per stale_after: only a holder starved for 2 s could look gone while alive.
  auto options = quick_locks();
  options.stale_after = 2s;
  // Both children fork before this process starts a heartbeat thread: ThreadSanitizer cannot
  // start threads in the child of a multi-threaded process.
  // One claims [0, 3) of campaign g2 and exits: its process is dead.
  const pid_t dead = fork_child([&] {
    CampaignRuns runs(dir.path(), "g-00000002", 20, options);
    return runs.claim(3) == TaskRun{0, 3} ? 0 : 1;
  });
  ASSERT_EQ(wait_child(dead), 0);
  // The other claims [0, 5) of campaign g1 and keeps it (heartbeat running) until killed.
  const auto claimed = dir.path() / "claimed";
  const pid_t holder = fork_child([&] {
    CampaignRuns runs(dir.path(), "g-00000001", 20, options);
    if (runs.claim(5) != TaskRun{0, 5}) return 1;
    joblet::testing::write_text(claimed, "yes");
    joblet::testing::block_until_killed();
  });
  const auto end_holder = [&] {
    ::kill(holder, SIGKILL);
    wait_child(holder);
  };
  if (!joblet::testing::wait_for_file(claimed)) {
    end_holder();
    FAIL() << "the holder never claimed its run";
  }

  // A holder of this host whose process is dead is gone at once.
  CampaignRuns next(dir.path(), "g-00000002", 20, options);
  EXPECT_EQ(next.claim(3), (TaskRun{3, 6}));
  EXPECT_TRUE(next.holder_gone({0, 3}));

  CampaignRuns waiter(dir.path(), "g-00000001", 20, options);
  EXPECT_EQ(waiter.claim(5), (TaskRun{5, 10}));
  EXPECT_EQ(waiter.others(), (std::vector<TaskRun>{{0, 5}}));
  // Watched for longer than stale_after, a live holder never looks gone.
  const auto watch_until = std::chrono::steady_clock::now() + options.stale_after + 0.5s;
  bool looked_gone = false;
  while (!looked_gone && std::chrono::steady_clock::now() < watch_until) {
    looked_gone = waiter.holder_gone({0, 5});
    std::this_thread::sleep_for(options.poll);
  }
  EXPECT_FALSE(looked_gone) << "a live holder looked gone";
  // Stopped, its heartbeat stops: gone after stale_after, though its process still exists.
  EXPECT_EQ(::kill(holder, SIGSTOP), 0);
  EXPECT_TRUE(joblet::testing::wait_until([&] { return waiter.holder_gone({0, 5}); }));
  end_holder();
}

// `joblet status` reads the chain: every run, its holder, and whether its heartbeat is live.
TEST(CampaignRuns, ClaimedListsEveryRunWithItsHolder) {
  TempDir dir;
  const joblet::Store store(dir.path());
  EXPECT_TRUE(CampaignRuns::claimed(store, "h-00000001", 10).empty());
  CampaignRuns runs(dir.path(), "h-00000001", 10);
  ASSERT_EQ(runs.claim(4), (TaskRun{0, 4}));
  // Another host's claim of [4, 6) whose heartbeat stopped a minute ago.
  joblet::testing::write_text(runs_directory(dir, "h-00000001") / "4",
                              "joblet campaign run\nend 6\nhost elsewhere\npid 41\njob 77_3\ntoken 5\n");
  joblet::testing::age_file(runs_directory(dir, "h-00000001") / "4", 60);
  const auto listed = CampaignRuns::claimed(store, "h-00000001", 10);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].first, (TaskRun{0, 4}));
  EXPECT_EQ(listed[0].second.pid, ::getpid());
  EXPECT_TRUE(listed[0].second.live);
  EXPECT_EQ(listed[1].first, (TaskRun{4, 6}));
  EXPECT_EQ(listed[1].second.host, "elsewhere");
  EXPECT_EQ(listed[1].second.job, "77_3");
  EXPECT_FALSE(listed[1].second.live);
}

// What a claim file must not make a process do: follow a link, wait on a FIFO, skip tasks for a
// claim that lies about its end, or write outside the cache.
TEST(CampaignRuns, HostileClaimFilesCoverOneTaskAndTheirHolderIsGone) {
  TempDir dir;
  const auto directory = runs_directory(dir, "k-00000001");
  std::filesystem::create_directories(directory);
  const auto outside = dir.path() / "outside";
  joblet::testing::write_text(outside, "joblet campaign run\nend 9\nhost h\npid 1\njob \ntoken 1\n");
  std::filesystem::create_symlink(outside, directory / "0");                         // a link
  ASSERT_EQ(::mkfifo((directory / "1").c_str(), 0600), 0);                           // a FIFO
  joblet::testing::write_text(directory / "2", "joblet campaign run\nend 99999\n");  // past the end
  joblet::testing::write_text(directory / "3", "not a claim at all\n");              // garbage
  joblet::testing::write_text(directory / "4", "joblet campaign run\nend 4\n");      // ends where it starts
  CampaignRuns runs(dir.path(), "k-00000001", 10, quick_locks());
  EXPECT_EQ(runs.claim(3), (TaskRun{5, 8}));
  const std::vector<TaskRun> hostile{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}};
  EXPECT_EQ(runs.others(), hostile);
  for (const TaskRun& run : hostile) EXPECT_TRUE(runs.holder_gone(run)) << run.begin;
  EXPECT_EQ(joblet::testing::read_text(outside), "joblet campaign run\nend 9\nhost h\npid 1\njob \ntoken 1\n");
  EXPECT_TRUE(std::filesystem::is_symlink(directory / "0"));
}

// The runs' directory behind a symbolic link, or a file where it belongs: a clear error (the
// campaign then claims task by task), and nothing created through the link.
TEST(CampaignRuns, ALinkWhereTheDirectoryBelongsIsRefused) {
  TempDir dir;
  const auto elsewhere = dir.path() / "elsewhere";
  std::filesystem::create_directories(elsewhere);
  std::filesystem::create_directories(dir.path() / ".campaigns");
  std::filesystem::create_directory_symlink(elsewhere, runs_directory(dir, "m-00000001"));
  try {
    CampaignRuns runs(dir.path(), "m-00000001", 10);
    FAIL() << "a linked runs directory was accepted";
  } catch (const joblet::StorageError& e) {
    EXPECT_NE(std::string(e.what()).find("symbolic link"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::is_empty(elsewhere));
}

}  // namespace
