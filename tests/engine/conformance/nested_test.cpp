// A parallel call inside a task gets a share of the CPUs, not all of them.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <cstdlib>
#include <ranges>
#include <string>

namespace {

TEST(Nested, ThreadTasksSeeTheirShareOfTheCpus) {
  const int cpus = joblet::cpu_count();
  auto shares = joblet::Parallel({.n_jobs = 2, .backend = "threads"})(
      std::views::iota(0, 4) | std::views::transform([](int) { return [] { return joblet::effective_n_jobs(-1); }; }));
  for (int share : shares) EXPECT_EQ(share, std::max(1, cpus / 2));
  // Outside any task, all CPUs again.
  EXPECT_EQ(joblet::effective_n_jobs(-1), cpus);
}

struct Seen {
  int share = 0;
  std::string omp;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(share, omp);
  }
};

TEST(Nested, ProcessWorkersGetTheirShareAndThreadLimits) {
  const int cpus = joblet::cpu_count();
  unsetenv("OMP_NUM_THREADS");
  auto seen = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
      std::views::iota(0, 4) | std::views::transform([](int) {
        return [] {
          const char* omp = std::getenv("OMP_NUM_THREADS");
          return Seen{joblet::effective_n_jobs(-1), omp ? omp : ""};
        };
      }));
  for (const Seen& s : seen) {
    EXPECT_EQ(s.share, std::max(1, cpus / 2));
    EXPECT_EQ(s.omp, std::to_string(std::max(1, cpus / 2)));
  }
  EXPECT_EQ(std::getenv("OMP_NUM_THREADS"), nullptr);  // the caller's environment is untouched
}

TEST(Nested, AUsersOwnThreadLimitIsKept) {
  setenv("OPENBLAS_NUM_THREADS", "7", 1);
  auto seen = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(std::views::iota(0, 2) | std::views::transform([](int) {
                                                                   return [] {
                                                                     return std::string(std::getenv("OPENBLAS_NUM_THREADS"));
                                                                   };
                                                                 }));
  for (const auto& value : seen) EXPECT_EQ(value, "7");
  unsetenv("OPENBLAS_NUM_THREADS");
}

int inner_sum(int outer, const std::string& backend) {
  auto values = joblet::Parallel({.n_jobs = 2, .backend = backend})(
      std::views::iota(0, 50) | std::views::transform([outer](int i) { return [outer, i] { return outer * 100 + i; }; }));
  int sum = 0;
  for (int v : values) sum += v;
  return sum;
}

int expected_sum(int outer) { return outer * 100 * 50 + 49 * 50 / 2; }

TEST(Nested, NestedCallsCompleteOnEveryCombination) {
  for (const std::string outer_backend : {"threads", "processes", "sequential"}) {
    for (const std::string inner_backend : {"threads", "processes", "sequential"}) {
      SCOPED_TRACE(outer_backend + " > " + inner_backend);
      auto sums = joblet::Parallel({.n_jobs = 2, .backend = outer_backend})(
          std::views::iota(0, 6) | std::views::transform([&inner_backend](int outer) {
            return [outer, inner_backend] { return inner_sum(outer, inner_backend); };
          }));
      for (int outer = 0; outer < 6; ++outer) EXPECT_EQ(sums[outer], expected_sum(outer));
    }
  }
}

TEST(Nested, DeepNestingOnThreadsDoesNotDeadlock) {
  // Every level asks for more threads than the machine has.
  auto level2 = [] {
    return joblet::Parallel({.n_jobs = 4, .backend = "threads"})(
               std::views::iota(0, 8) | std::views::transform([](int i) { return [i] { return i; }; }))
        .size();
  };
  auto level1 = [&] {
    std::size_t total = 0;
    for (std::size_t n : joblet::Parallel({.n_jobs = 4, .backend = "threads"})(
             std::views::iota(0, 8) | std::views::transform([&](int) { return level2; }))) {
      total += n;
    }
    return total;
  };
  auto totals = joblet::Parallel({.n_jobs = 4, .backend = "threads"})(
      std::views::iota(0, 8) | std::views::transform([&](int) { return level1; }));
  for (std::size_t total : totals) EXPECT_EQ(total, 64u);
}

}  // namespace
