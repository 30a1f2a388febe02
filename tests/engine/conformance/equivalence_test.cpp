// Every backend, every n_jobs and every return_as gives what a plain sequential loop gives.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <algorithm>
#include <complex>
#include <map>
#include <optional>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include "../support.hpp"

namespace {

struct Sample {
  int index = 0;
  std::string label;
  std::vector<double> values;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(index, label, values);
  }
  bool operator==(const Sample&) const = default;
};

Sample make_sample(int i) {
  Sample sample{i, "sample-" + std::to_string(i), {}};
  for (int k = 0; k < i % 7; ++k) sample.values.push_back(i * 0.5 + k);
  return sample;
}

auto sample_tasks(int n) {
  return std::views::iota(0, n) | std::views::transform([](int i) { return joblet::delayed(make_sample, i); });
}

std::vector<Sample> expected(int n) {
  std::vector<Sample> out;
  for (int i = 0; i < n; ++i) out.push_back(make_sample(i));
  return out;
}

constexpr int kTasks = 257;  // not a multiple of any batch size

TEST(Equivalence, ListEqualsSequentialLoopForEveryBackendAndNJobs) {
  for (const auto& backend : joblet::testing::kBackends) {
    for (int n_jobs : joblet::testing::kNJobs) {
      SCOPED_TRACE(backend + " n_jobs=" + std::to_string(n_jobs));
      joblet::Parallel parallel({.n_jobs = n_jobs, .backend = backend});
      EXPECT_EQ(parallel(sample_tasks(kTasks)), expected(kTasks));
    }
  }
}

TEST(Equivalence, OrderedGeneratorYieldsInInputOrder) {
  for (const auto& backend : joblet::testing::kBackends) {
    for (int n_jobs : joblet::testing::kNJobs) {
      SCOPED_TRACE(backend + " n_jobs=" + std::to_string(n_jobs));
      std::vector<Sample> got;
      for (Sample& sample : joblet::Parallel({.n_jobs = n_jobs, .backend = backend})(sample_tasks(kTasks),
                                                                                     joblet::return_as::generator)) {
        got.push_back(std::move(sample));
      }
      EXPECT_EQ(got, expected(kTasks));
    }
  }
}

TEST(Equivalence, UnorderedGeneratorYieldsEachIndexOnceWithItsResult) {
  for (const auto& backend : joblet::testing::kBackends) {
    for (int n_jobs : joblet::testing::kNJobs) {
      SCOPED_TRACE(backend + " n_jobs=" + std::to_string(n_jobs));
      std::vector<Sample> got(kTasks);
      std::vector<int> seen(kTasks, 0);
      for (auto& [index, sample] : joblet::Parallel({.n_jobs = n_jobs, .backend = backend})(
               sample_tasks(kTasks), joblet::return_as::generator_unordered)) {
        ASSERT_LT(index, static_cast<std::size_t>(kTasks));
        ++seen[index];
        got[index] = std::move(sample);
      }
      EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
      EXPECT_EQ(got, expected(kTasks));
    }
  }
}

TEST(Equivalence, KeepGoingOutcomesHoldEveryValue) {
  for (const auto& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    auto outcomes =
        joblet::Parallel({.n_jobs = 2, .backend = backend})(sample_tasks(kTasks), joblet::return_as::list.keep_going());
    ASSERT_EQ(outcomes.size(), static_cast<std::size_t>(kTasks));
    for (int i = 0; i < kTasks; ++i) {
      ASSERT_TRUE(outcomes[i].ok());
      EXPECT_EQ(outcomes[i].value(), make_sample(i));
    }
  }
}

TEST(Equivalence, ExplicitBatchSizesGiveTheSameResults) {
  for (const auto& backend : joblet::testing::kBackends) {
    for (std::size_t batch : {1u, 3u, 64u, 10000u}) {
      SCOPED_TRACE(backend + " batch_size=" + std::to_string(batch));
      EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = batch})(sample_tasks(kTasks)),
                expected(kTasks));
    }
  }
}

TEST(Equivalence, MapAppliesAFunctionToEveryInput) {
  const std::vector<int> inputs = {5, 3, 9, 1};
  for (const auto& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    auto squares = joblet::map([](int x) { return x * x; }, inputs, {.n_jobs = 2, .backend = backend});
    EXPECT_EQ(squares, (std::vector<int>{25, 9, 81, 1}));
    auto labels =
        joblet::map([](int i) { return std::to_string(i); }, std::views::iota(0, 3), {.n_jobs = 2, .backend = backend});
    EXPECT_EQ(labels, (std::vector<std::string>{"0", "1", "2"}));
  }
}

TEST(Equivalence, TasksReturningVoidAllRun) {
  for (const auto& backend : {std::string("sequential"), std::string("threads")}) {
    std::vector<int> hits(50, 0);
    joblet::Parallel({.n_jobs = 2, .backend = backend})(
        std::views::iota(0, 50) | std::views::transform([&hits](int i) { return [&hits, i] { hits[i] = 1; }; }));
    EXPECT_EQ(std::count(hits.begin(), hits.end(), 1), 50) << backend;
  }
  // Across processes a void task still reports that it ran.
  auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
      std::views::iota(0, 10) | std::views::transform([](int) { return [] {}; }), joblet::return_as::list.keep_going());
  EXPECT_EQ(outcomes.size(), 10u);
  for (auto& outcome : outcomes) EXPECT_TRUE(outcome.ok());
}

TEST(Equivalence, EmptyInputGivesEmptyResultsWithoutStartingWorkers) {
  for (const auto& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    joblet::Parallel parallel({.n_jobs = 2, .backend = backend});
    EXPECT_TRUE(parallel(sample_tasks(0)).empty());
    int yielded = 0;
    for (auto& sample : parallel(sample_tasks(0), joblet::return_as::generator)) {
      (void)sample;
      ++yielded;
    }
    EXPECT_EQ(yielded, 0);
  }
}

TEST(Equivalence, AParallelObjectServesSeveralCalls) {
  for (const auto& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    joblet::Parallel parallel({.n_jobs = 2, .backend = backend});
    for (int round = 0; round < 3; ++round) EXPECT_EQ(parallel(sample_tasks(40 + round)), expected(40 + round));
  }
}

TEST(Equivalence, TasksInAContainerAreUsedInPlace) {
  // Delayed objects held by a vector run without being copied (their results still match).
  std::vector<joblet::Delayed<Sample (*)(int), int>> tasks;
  for (int i = 0; i < 30; ++i) tasks.push_back(joblet::delayed(&make_sample, i));
  for (const auto& backend : joblet::testing::kBackends) {
    EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks), expected(30)) << backend;
  }
  const auto& constant = tasks;
  EXPECT_EQ(joblet::Parallel({.n_jobs = 2, .backend = "threads"})(constant), expected(30));
}

TEST(Equivalence, MoveOnlyResultsComeBackOnThreads) {
  auto out = joblet::Parallel({.n_jobs = 2, .backend = "threads"})(
      std::views::iota(0, 20) | std::views::transform([](int i) { return [i] { return std::make_unique<int>(i); }; }));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(*out[i], i);
}

// A result with no empty state to be assigned later (threads need no encoding of it).
struct Labelled {
  explicit Labelled(int v) : value(v) {}
  int value;
};

TEST(Equivalence, ResultsWithoutADefaultConstructorComeBackInOrder) {
  auto tasks = std::views::iota(0, 3000) | std::views::transform([](int i) { return [i] { return Labelled(i); }; });
  for (const std::string backend : {"sequential", "threads"}) {
    const auto out = joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = 7})(tasks);
    ASSERT_EQ(out.size(), 3000u) << backend;
    for (int i = 0; i < 3000; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)].value, i) << backend;
  }
}

TEST(Equivalence, ComplexResultsComeBackOnEveryBackend) {
  auto tasks =
      std::views::iota(0, 50) | std::views::transform([](int i) {
        return [i] { return std::vector<std::complex<double>>{{i * 0.5, -1.0 * i}, std::polar(1.0, i * 0.1)}; };
      });
  for (const auto& backend : joblet::testing::kBackends) {
    const auto out = joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks);
    ASSERT_EQ(out.size(), 50u) << backend;
    for (int i = 0; i < 50; ++i) {
      EXPECT_EQ(out[static_cast<std::size_t>(i)], tasks[i]()) << backend << " " << i;
    }
  }
}

// A plain struct with no serialize(), and standard containers of it: threads return them as
// they are; a backend that must encode them says so before running anything.
struct Particle {
  double x = 0;
};

TEST(Equivalence, ContainersOfTypesWithoutSerializeComeBackOnThreads) {
  auto tasks =
      std::views::iota(0, 40) | std::views::transform([](int i) {
        return [i] { return std::map<int, std::vector<Particle>>{{i, {Particle{i * 1.0}, Particle{-i * 1.0}}}}; };
      });
  static_assert(!joblet::Encodable<std::map<int, std::vector<Particle>>>);
  static_assert(!joblet::Encodable<std::optional<std::pair<int, Particle>>>);
  static_assert(joblet::Encodable<std::map<int, std::vector<std::complex<float>>>>);
  for (const std::string backend : {"sequential", "threads"}) {
    const auto out = joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks);
    ASSERT_EQ(out.size(), 40u) << backend;
    for (int i = 0; i < 40; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)].at(i).at(1).x, -i * 1.0) << backend;
  }
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks);
    FAIL() << "expected a ConfigError";
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("Particle"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("serialize()"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("threads"), std::string::npos) << e.what();
  }
}

TEST(Equivalence, BoolResultsFromManyThreadsAreExact) {
  // std::vector<bool> packs results into shared bytes: workers must not write it concurrently.
  auto tasks = std::views::iota(0, 20000) | std::views::transform([](int i) { return [i] { return i % 3 == 0; }; });
  for (const auto& backend : joblet::testing::kBackends) {
    const std::vector<bool> out = joblet::Parallel({.n_jobs = 2, .backend = backend, .batch_size = 1})(tasks);
    ASSERT_EQ(out.size(), 20000u) << backend;
    for (int i = 0; i < 20000; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], i % 3 == 0) << backend << " " << i;
  }
}

}  // namespace
