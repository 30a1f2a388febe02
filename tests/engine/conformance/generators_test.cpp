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

TEST(Generators, UnorderedYieldsFastResultsFirst) {
  // Task 0 takes 1.5 s, the others none: with two workers the first result is never task 0.
  auto tasks = std::views::iota(0, 30) | std::views::transform([](int i) {
                 return [i] {
                   if (i == 0) sleep_ms(1500);
                   return i;
                 };
               });
  for (const std::string backend : {"threads", "processes"}) {
    SCOPED_TRACE(backend);
    std::vector<std::size_t> order;
    for (auto& [index, value] : joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = 1})(
             tasks, joblet::return_as::generator_unordered)) {
      EXPECT_EQ(static_cast<std::size_t>(value), index);
      order.push_back(index);
    }
    ASSERT_EQ(order.size(), 30u);
    EXPECT_NE(order.front(), 0u);
    EXPECT_EQ(order.back(), 0u);
  }
}

TEST(Generators, OrderedYieldsEarlyResultsBeforeLateTasksFinish) {
  // The first result is yielded while the last task is still sleeping.
  std::atomic<bool> last_done{false};
  auto tasks = std::views::iota(0, 4) | std::views::transform([&last_done](int i) {
                 return [i, &last_done] {
                   if (i == 3) {
                     sleep_ms(1000);
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
  int count = 0;
  for (; it != generator.end(); ++it) ++count;
  EXPECT_EQ(count, 4);
}

TEST(Generators, DestroyingAThreadsGeneratorCancelsTheRest) {
  std::atomic<int> ran{0};
  auto tasks = std::views::iota(0, 400) | std::views::transform([&ran](int i) {
                 return [i, &ran] {
                   ran.fetch_add(1);
                   sleep_ms(5);
                   return i;
                 };
               });
  {
    auto generator =
        joblet::Parallel({.n_jobs = 2, .backend = "threads", .batch_size = 1})(tasks, joblet::return_as::generator);
    int taken = 0;
    for (int value : generator) {
      EXPECT_EQ(value, taken);
      if (++taken == 5) break;
    }
  }  // no task of the call runs after this point
  const int after_destruction = ran.load();
  EXPECT_LT(after_destruction, 400);
  sleep_ms(100);
  EXPECT_EQ(ran.load(), after_destruction);
}

TEST(Generators, DestroyingAProcessesGeneratorStopsItsWorkers) {
  auto tasks = std::views::iota(0, 200) | std::views::transform([](int i) {
                 return [i] {
                   sleep_ms(20);
                   return i;
                 };
               });
  const auto begin = std::chrono::steady_clock::now();
  {
    auto generator = joblet::Parallel({.n_jobs = 2, .backend = "processes", .batch_size = 1})(
        tasks, joblet::return_as::generator_unordered);
    auto it = generator.begin();
    EXPECT_NE(it, generator.end());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1500ms);  // not 200 x 20 ms / 2
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
