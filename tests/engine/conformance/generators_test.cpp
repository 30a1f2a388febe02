// Generators yield results as they arrive; unconsumed ones cancel outstanding work.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <atomic>
#include <chrono>
#include <ranges>

#include "../support.hpp"

namespace {

using namespace std::chrono_literals;
using joblet::testing::sleep_ms;
using joblet::testing::wait_until;

TEST(Generators, UnorderedYieldsFastResultsFirst) {
  // Task 1 returns only once the consumer has received the 29 others: the generator must yield
  // results as they finish (a generator that waited for every task would wait forever). The
  // counter is in shared memory, where a worker process sees the consumer's writes.
  struct Shared {
    std::atomic<std::size_t> yielded{0};
    std::atomic<bool> gave_up{false};
  };
  for (const std::string backend : {"threads", "processes"}) {
    SCOPED_TRACE(backend);
    joblet::testing::SharedMemory<Shared> shared;
    joblet::testing::CallerThread caller;
    auto tasks = std::views::iota(0, 30) | std::views::transform([shared = shared.get(), &caller](int i) {
                   return [i, shared, &caller] {
                     caller.task_started();
                     if (i == 1 && !wait_until([&] { return shared->yielded.load() >= 29; })) {
                       shared->gave_up.store(true);
                     }
                     return i;
                   };
                 });
    std::vector<std::size_t> order;
    for (auto& [index, value] : joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = 1})(
             tasks, joblet::return_as::generator_unordered)) {
      EXPECT_EQ(static_cast<std::size_t>(value), index);
      order.push_back(index);
      shared->yielded.fetch_add(1);
    }
    ASSERT_EQ(order.size(), 30u);
    EXPECT_FALSE(shared->gave_up.load()) << "the fast results were not yielded while task 1 ran";
    EXPECT_NE(order.front(), 1u);
    EXPECT_EQ(order.back(), 1u);
  }
}

TEST(Generators, OrderedYieldsEarlyResultsBeforeLateTasksFinish) {
  // The first result is yielded while the last task is still running: that task returns only
  // once the test has seen the first result.
  std::atomic<bool> release{false};
  std::atomic<bool> last_done{false};
  auto tasks = std::views::iota(0, 4) | std::views::transform([&release, &last_done](int i) {
                 return [i, &release, &last_done] {
                   if (i == 3) {
                     wait_until([&] { return release.load(); });
                     last_done = true;
                   }
                   return i;
                 };
               });
  auto generator =
      joblet::Parallel({.n_jobs = 2, .backend = "threads", .batch_size = 1})(tasks, joblet::return_as::generator);
  auto it = generator.begin();
  EXPECT_EQ(*it, 0);
  EXPECT_FALSE(last_done.load());
  release = true;
  int count = 0;
  for (; it != generator.end(); ++it) ++count;
  EXPECT_EQ(count, 4);
  EXPECT_TRUE(last_done.load());
}

TEST(Generators, DestroyingAThreadsGeneratorCancelsTheRest) {
  std::atomic<int> ran{0};
  std::atomic<int> running{0};
  std::atomic<bool> took_five{false};
  joblet::testing::CallerThread caller;
  auto tasks = std::views::iota(0, 400) | std::views::transform([&](int i) {
                 return [i, &ran, &running, &took_five, &caller] {
                   running.fetch_add(1);
                   ran.fetch_add(1);
                   // The rest waits for the consumer, so that the call is far from its end when
                   // the generator goes (the caller, should it run a batch, cannot wait for
                   // itself).
                   if (i >= 5 && !caller.here()) wait_until([&] { return took_five.load(); });
                   sleep_ms(5);
                   running.fetch_sub(1);
                   return i;
                 };
               });
  {
    auto generator =
        joblet::Parallel({.n_jobs = 2, .backend = "threads", .batch_size = 1})(tasks, joblet::return_as::generator);
    int taken = 0;
    for (int value : generator) {
      EXPECT_EQ(value, taken);
      if (++taken == 5) {
        took_five = true;
        break;
      }
    }
  }  // no task of the call runs after this point
  EXPECT_EQ(running.load(), 0);
  const int after_destruction = ran.load();
  EXPECT_LT(after_destruction, 400);
  sleep_ms(100);  // a window for a task that should not start (none may: this cannot wait for a state)
  EXPECT_EQ(ran.load(), after_destruction);
}

TEST(Generators, DestroyingAProcessesGeneratorStopsItsWorkers) {
  // Every task but the first blocks until its worker is killed: leaving the scope at all proves
  // the generator's destruction stopped them.
  auto tasks = std::views::iota(0, 200) | std::views::transform([](int i) {
                 return [i] {
                   if (i > 0) joblet::testing::block_until_killed();
                   return i;
                 };
               });
  {
    auto generator = joblet::Parallel({.n_jobs = 2, .backend = "processes", .batch_size = 1})(
        tasks, joblet::return_as::generator_unordered);
    auto it = generator.begin();
    ASSERT_NE(it, generator.end());
    EXPECT_EQ(it->index, 0u);
  }
  EXPECT_FALSE(joblet::testing::has_children());
  EXPECT_EQ(joblet::testing::zombie_children(), 0);
}

// After cancel(), iterating on yields what had already arrived and then ends: it never waits
// for tasks that will not run. Tasks from index 3 on block until the test ends, so a generator
// that waited for them would hang (the CTest timeout reports it).
template <class Shape>
void cancel_then_iterate(const std::string& backend, Shape shape) {
  SCOPED_TRACE(backend);
  std::atomic<bool> release{false};
  auto tasks = std::views::iota(0, 50) | std::views::transform([&release](int i) {
                 return [i, &release] {
                   while (i >= 3 && !release.load()) sleep_ms(1);
                   return i;
                 };
               });
  auto generator = joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = 1})(tasks, shape);
  std::vector<int> seen;
  const auto number = [](const auto& item) -> int {
    if constexpr (requires { item.ok(); }) {
      return item.value();  // an Outcome (keep_going)
    } else {
      return item;
    }
  };
  const auto value_of = [&](const auto& item) -> int {
    if constexpr (requires { item.index; }) {
      return number(item.value);
    } else {
      return number(item);
    }
  };
  auto it = generator.begin();
  ASSERT_NE(it, generator.end());
  seen.push_back(value_of(*it));
  generator.cancel();
  for (++it; it != generator.end(); ++it) seen.push_back(value_of(*it));
  release = true;
  for (int value : seen) EXPECT_LT(value, 3);
  // Iterating a finished generator again stays finished.
  EXPECT_EQ(it, generator.end());
}

TEST(Generators, IteratingAfterCancelEndsWithoutWaiting) {
  for (const std::string backend : {"threads", "processes"}) {
    cancel_then_iterate(backend, joblet::return_as::generator);
    cancel_then_iterate(backend, joblet::return_as::generator_unordered);
    cancel_then_iterate(backend, joblet::return_as::generator.keep_going());
    cancel_then_iterate(backend, joblet::return_as::generator_unordered.keep_going());
  }
  EXPECT_FALSE(joblet::testing::has_children());
}

TEST(Generators, SequentialGeneratorsRunTasksAsTheyAreConsumed) {
  int ran = 0;
  auto tasks = std::views::iota(0, 1000) | std::views::transform([&ran](int i) {
                 return [i, &ran] {
                   ++ran;
                   sleep_ms(1);
                   return i;
                 };
               });
  auto generator = joblet::Parallel({.n_jobs = 1})(tasks, joblet::return_as::generator);
  auto it = generator.begin();
  EXPECT_EQ(*it, 0);
  EXPECT_LT(ran, 1000);  // lazily: a batch at a time, not the whole input
}

TEST(Generators, ResultsAreReleasedAsTheyAreConsumed) {
  // Each result is moved out to the consumer: the generator keeps no copy.
  auto tasks =
      std::views::iota(0, 10) | std::views::transform([](int i) { return [i] { return std::vector<int>(1000, i); }; });
  for (auto& values : joblet::Parallel({.n_jobs = 2, .backend = "threads"})(tasks, joblet::return_as::generator)) {
    std::vector<int> taken = std::move(values);
    EXPECT_EQ(taken.size(), 1000u);
  }
}

}  // namespace
