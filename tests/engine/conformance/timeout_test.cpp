// A task past its timeout fails the call with a TimeoutError naming it.
//
// Healthy tasks are instant and the timeout is generous, so that a task preempted on a loaded
// machine never passes it; the slow task does not merely outlast the timeout, it blocks: in a
// worker process until the process is killed, on a thread (which cannot be killed) until it is
// let go.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <ranges>
#include <thread>

#include "../support.hpp"

namespace {

using namespace std::chrono_literals;
using joblet::testing::wait_until;

constexpr auto kTimeout = 2s;

// What the tasks of a threads call and the test share. Held by the tasks too: a thread abandoned
// at its timeout runs on after the call returned.
// No task runs on the calling thread when a timeout is set: it must stay free to stop waiting.
struct Gate {
  std::atomic<bool> release{false};  // lets the blocked task go
  std::atomic<bool> left{false};     // it has
};

// For threads: n instant tasks but `slow`, which blocks until gate->release.
auto thread_tasks(int n, int slow, std::shared_ptr<Gate> gate) {
  return std::views::iota(0, n) | std::views::transform([slow, gate](int i) {
           return [i, slow, gate] {
             if (i == slow) {
               wait_until([&] { return gate->release.load(); });
               gate->left.store(true);
             }
             return i;
           };
         });
}

// For worker processes: n instant tasks but `slow`, which blocks until its worker is killed.
auto process_tasks(int n, int slow) {
  return std::views::iota(0, n) | std::views::transform([slow](int i) {
           return [i, slow] {
             if (i == slow) joblet::testing::block_until_killed();
             return i;
           };
         });
}

// Tasks that block until let go, counted: how many started, how many returned. Shared with the
// threads that run them, which may outlive the call.
struct Blocked {
  std::atomic<bool> release{false};
  std::atomic<int> started{0};
  std::atomic<int> left{0};
  void block() {
    started.fetch_add(1);
    wait_until([&] { return release.load(); });
    left.fetch_add(1);
  }
  // Lets every blocked task go; whether all of them returned.
  bool let_go() {
    release.store(true);
    return wait_until([&] { return left.load() == started.load(); });
  }
};

TEST(Timeout, ThreadsStopWaitingAndNameTheTask) {
  auto gate = std::make_shared<Gate>();
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "threads", .timeout = kTimeout})(thread_tasks(20, 7, gate));
    FAIL() << "expected TimeoutError";
  } catch (const joblet::TimeoutError& e) {
    EXPECT_EQ(e.site().task_index, 7u);
    EXPECT_NE(std::string(e.what()).find("task 7"), std::string::npos) << e.what();
  }
  // The call returned while the task was still blocked: it did not wait for it.
  EXPECT_FALSE(gate->left.load());
  gate->release.store(true);
  EXPECT_TRUE(wait_until([&] { return gate->left.load(); }));  // the abandoned thread ends
}

TEST(Timeout, AFailedCallStopsWaitingForEveryTaskPastTheTimeout) {
  // Task 0 blocks; task 1 keeps the other thread busy for a while, so that task 2, which blocks
  // too, starts later and passes the timeout only after the call failed on task 0. The call
  // must not wait for task 2 either. (The pause only shapes the scenario, it is not waited for:
  // on a machine so loaded that task 2 starts after the failure, it never starts and the
  // assertions still hold.)
  auto blocked = std::make_shared<Blocked>();
  auto tasks = std::views::iota(0, 3) | std::views::transform([blocked](int i) {
                 return [i, blocked] {
                   if (i == 1) {
                     std::this_thread::sleep_for(kTimeout / 2);
                     return i;
                   }
                   blocked->block();
                   return i;
                 };
               });
  EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "threads", .timeout = kTimeout, .batch_size = 1})(tasks),
               joblet::TimeoutError);
  EXPECT_EQ(blocked->left.load(), 0) << "the call waited for a blocked task";
  EXPECT_TRUE(blocked->let_go());
}

TEST(Timeout, ANestedThreadsCallStillEnforcesItsTimeout) {
  // Every inner task blocks until let go: a nested caller that ran one itself (as it does
  // without a timeout) could never stop waiting for it.
  auto blocked = std::make_shared<Blocked>();
  auto inner_tasks = std::views::iota(0, 4) | std::views::transform([blocked](int i) {
                       return [i, blocked] {
                         blocked->block();
                         return i;
                       };
                     });
  auto outer_tasks = std::views::iota(0, 2) | std::views::transform([&](int) {
                       return [&] {
                         try {
                           joblet::Parallel({.n_jobs = 2, .backend = "threads", .timeout = 1s})(inner_tasks);
                           return std::string("returned");
                         } catch (const joblet::TimeoutError&) {
                           // While every task still blocks: the call did not wait for any.
                           return std::string(blocked->left.load() == 0 ? "timed out" : "timed out late");
                         }
                       };
                     });
  const auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = "threads"})(outer_tasks);
  EXPECT_EQ(outcomes, (std::vector<std::string>{"timed out", "timed out"}));
  EXPECT_TRUE(blocked->let_go());
}

TEST(Timeout, ProcessesKillTheWorker) {
  // The task blocks until its worker is killed: returning at all proves it was.
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes", .timeout = kTimeout})(process_tasks(20, 11));
    FAIL() << "expected TimeoutError";
  } catch (const joblet::TimeoutError& e) {
    EXPECT_EQ(e.site().task_index, 11u);
    EXPECT_NE(std::string(e.what()).find("killed"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(joblet::testing::has_children());
}

TEST(Timeout, OneWorkerStillEnforcesTheTimeout) {
  {
    SCOPED_TRACE("threads");
    auto gate = std::make_shared<Gate>();
    EXPECT_THROW(joblet::Parallel({.n_jobs = 1, .backend = "threads", .timeout = kTimeout})(thread_tasks(3, 1, gate)),
                 joblet::TimeoutError);
    EXPECT_FALSE(gate->left.load());
    gate->release.store(true);
    EXPECT_TRUE(wait_until([&] { return gate->left.load(); }));
  }
  {
    SCOPED_TRACE("processes");
    EXPECT_THROW(joblet::Parallel({.n_jobs = 1, .backend = "processes", .timeout = kTimeout})(process_tasks(3, 1)),
                 joblet::TimeoutError);
    EXPECT_FALSE(joblet::testing::has_children());
  }
}

TEST(Timeout, KeepGoingRecordsTimeoutsAndFinishesTheRest) {
  {
    SCOPED_TRACE("threads");
    // The thread that runs task 13 also holds 14 and 15 (batches of 4): the call cannot finish
    // before task 13 returns, which it does once the call has recorded its timeout (a progress
    // report with a failure in it).
    auto gate = std::make_shared<Gate>();
    const auto report = [gate](const joblet::Progress& progress) {
      if (progress.failed > 0) gate->release.store(true);
    };
    auto outcomes =
        joblet::Parallel({.n_jobs = 2, .backend = "threads", .timeout = kTimeout, .batch_size = 4, .progress = report})(
            thread_tasks(40, 13, gate), joblet::return_as::list.keep_going());
    EXPECT_TRUE(gate->left.load());
    joblet::testing::expect_only_failed<joblet::TimeoutError>(outcomes, 40, 13);
  }
  {
    SCOPED_TRACE("processes");
    // Task 13's worker is killed; the tasks of its batch it had not run go to a new worker.
    auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = "processes", .timeout = kTimeout, .batch_size = 4})(
        process_tasks(40, 13), joblet::return_as::list.keep_going());
    joblet::testing::expect_only_failed<joblet::TimeoutError>(outcomes, 40, 13);
    EXPECT_FALSE(joblet::testing::has_children());
  }
}

TEST(Timeout, FastTasksAreUnaffected) {
  auto gate = std::make_shared<Gate>();
  EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .backend = "threads", .timeout = 5s})(thread_tasks(500, -1, gate)).size(),
            500u);
  EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .backend = "processes", .timeout = 5s})(process_tasks(500, -1)).size(),
            500u);
}

}  // namespace
