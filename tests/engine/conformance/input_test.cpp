// How the input range is read: one thread at a time, in order, lazily with pre_dispatch.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <atomic>
#include <list>
#include <numeric>
#include <ranges>
#include <sstream>
#include <string>
#include <vector>

#include "../support.hpp"

namespace {

// An input range that is not thread-safe: it detects any concurrent use, and yields tasks in
// the order it is read.
class FragileSource {
 public:
  struct Task {
    int value;
    int operator()() const { return value * 3; }
  };
  class iterator {
   public:
    using value_type = Task;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(FragileSource* source) : source_(source) {}
    Task operator*() const { return Task{source_->current_}; }
    iterator& operator++() {
      if (source_->busy_.exchange(true)) source_->overlaps_.fetch_add(1);
      joblet::testing::sleep_ms(0);
      ++source_->current_;  // deliberately unsynchronised
      source_->read_.store(source_->current_);
      source_->busy_.store(false);
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return source_->current_ >= source_->end_; }

   private:
    FragileSource* source_ = nullptr;
  };
  explicit FragileSource(int end) : end_(end) {}
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }
  int overlaps() const { return overlaps_.load(); }
  // How far it was read, safe to ask while workers read on (current_ is theirs alone).
  int read() const { return read_.load(); }

 private:
  int current_ = 0;
  int end_;
  std::atomic<int> read_{0};
  std::atomic<bool> busy_{false};
  std::atomic<int> overlaps_{0};
};

TEST(Input, ANonThreadSafeRangeIsReadByOneThreadAtATime) {
  for (std::optional<std::size_t> pre_dispatch : {std::optional<std::size_t>{}, std::optional<std::size_t>{3}}) {
    for (const auto& backend : joblet::testing::kBackends) {
      SCOPED_TRACE(backend + (pre_dispatch ? " lazy" : " eager"));
      FragileSource source(500);
      auto out =
          joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = 1, .pre_dispatch = pre_dispatch})(source);
      ASSERT_EQ(out.size(), 500u);
      for (int i = 0; i < 500; ++i) EXPECT_EQ(out[i], 3 * i);
      EXPECT_EQ(source.overlaps(), 0);
    }
  }
}

TEST(Input, PreDispatchReadsTheInputLazily) {
  // With pre_dispatch the input is read as workers need tasks, not all up front.
  FragileSource source(100000);
  auto generator =
      joblet::Parallel({.n_jobs = 2, .backend = "threads", .pre_dispatch = 8})(source, joblet::return_as::generator);
  auto it = generator.begin();
  EXPECT_EQ(*it, 0);
  EXPECT_LT(source.read(), 100000);
}

TEST(Input, PreDispatchBoundsHowFarAGeneratorReadsAheadOfItsConsumer) {
  // After the consumer took k results, at most k + pre_dispatch tasks were read (and so run),
  // however fast the workers are and whatever batch sizes they chose.
  for (const std::string backend : {"sequential", "threads"}) {
    for (const std::size_t pre_dispatch : {1u, 8u}) {
      SCOPED_TRACE(backend + " pre_dispatch " + std::to_string(pre_dispatch));
      FragileSource ordered_source(100000);
      {
        auto generator = joblet::Parallel({.n_jobs = 2, .backend = backend, .pre_dispatch = pre_dispatch})(
            ordered_source, joblet::return_as::generator);
        int taken = 0;
        for (int value : generator) {
          EXPECT_EQ(value, 3 * taken);
          ++taken;
          EXPECT_LE(ordered_source.read(), taken + static_cast<int>(pre_dispatch));
          if (taken == 10) break;
        }
        // Workers that ran ahead stop at the window's end, not at the input's.
        EXPECT_LE(ordered_source.read(), 10 + static_cast<int>(pre_dispatch));
      }
      FragileSource unordered_source(100000);
      auto unordered = joblet::Parallel({.n_jobs = 2, .backend = backend, .pre_dispatch = pre_dispatch})(
          unordered_source, joblet::return_as::generator_unordered);
      int taken = 0;
      for (const auto& item : unordered) {
        EXPECT_EQ(item.value, 3 * static_cast<int>(item.index));
        ++taken;
        EXPECT_LE(unordered_source.read(), taken + static_cast<int>(pre_dispatch));
        if (taken == 10) break;
      }
    }
  }
}

TEST(Input, AGeneratorWithPreDispatchYieldsAllOfALongInput) {
  // The window moves with the consumer to the end, on every thread, with tasks of any length.
  FragileSource source(20000);
  long long sum = 0;
  int count = 0;
  for (const auto& item : joblet::Parallel({.n_jobs = 2, .backend = "threads", .pre_dispatch = 3})(
           source, joblet::return_as::generator_unordered)) {
    sum += item.value;
    ++count;
  }
  EXPECT_EQ(count, 20000);
  EXPECT_EQ(sum, 3LL * 20000 * 19999 / 2);
  EXPECT_EQ(source.overlaps(), 0);
  std::vector<int> indices(3000);
  std::iota(indices.begin(), indices.end(), 0);
  std::list<int> lazy(indices.begin(), indices.end());  // not sized: read as the window moves
  auto tasks = lazy | std::views::transform([](int i) {
                 return [i] {
                   if (i % 97 == 0) joblet::testing::sleep_ms(1);
                   return i;
                 };
               });
  int expected = 0;
  for (int value : joblet::Parallel({.n_jobs = 2, .backend = "threads", .batch_size = 4, .pre_dispatch = 16})(
           tasks, joblet::return_as::generator)) {
    ASSERT_EQ(value, expected++);
  }
  EXPECT_EQ(expected, 3000);
}

TEST(Input, AViewWhoseFunctionChangesItselfIsReadInOrderByOneThread) {
  // A mutable function cannot be called through a const view: its tasks are made one at a time,
  // in input order, never where they run.
  auto tasks = std::views::iota(0, 2000) | std::views::transform([made = 0](int i) mutable {
                 ++made;
                 return [i, made] { return made - i; };
               });
  for (const auto& backend : joblet::testing::kBackends) {
    const auto out = joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = 1})(tasks);
    ASSERT_EQ(out.size(), 2000u) << backend;
    for (int value : out) ASSERT_EQ(value, 1) << backend;
  }
}

TEST(Input, AnIndexedRangeMakesEachTaskOnceOnEverySharedMemoryBackend) {
  // std::views::transform over indices makes its tasks where they run, each exactly once.
  std::vector<std::atomic<int>> made(5000);
  auto tasks = std::views::iota(0, 5000) | std::views::transform([&made](int i) {
                 made[static_cast<std::size_t>(i)].fetch_add(1);
                 return [i] { return i; };
               });
  for (const std::string backend : {"sequential", "threads"}) {
    for (auto& count : made) count.store(0);
    const auto out = joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = 3})(tasks);
    for (int i = 0; i < 5000; ++i) {
      ASSERT_EQ(out[static_cast<std::size_t>(i)], i) << backend;
      ASSERT_EQ(made[static_cast<std::size_t>(i)].load(), 1) << backend << " task " << i;
    }
  }
}

TEST(Input, AnInputRangeWithoutSizeWorks) {
  std::istringstream text("3 1 4 1 5 9 2 6");
  auto numbers = std::views::istream<int>(text);
  auto out = joblet::map([](int x) { return x + 1; }, numbers, {.n_jobs = 2, .backend = "threads"});
  EXPECT_EQ(out, (std::vector<int>{4, 2, 5, 2, 6, 10, 3, 7}));
}

TEST(Input, AListOfTasksWorks) {
  std::list<std::function<int()>> tasks;
  for (int i = 0; i < 10; ++i) tasks.emplace_back([i] { return i; });
  for (const auto& backend : joblet::testing::kBackends) {
    auto out = joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(out[i], i) << backend;
  }
}

}  // namespace
