// A suite that fails on purpose (run by failing_rank.sh, not as a test of its own): rank 1
// fails an ASSERT before a Parallel call that the other ranks make. The job must end with a
// non-zero status, every rank must report the failure, and the next test must run in step on
// every rank: a failed assertion never hangs the others.
#include <gtest/gtest.h>
#include <mpi.h>
#include <joblet/joblet.hpp>

#include <ranges>

namespace {

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

auto squares(int n) {
  return std::views::iota(0, n) | std::views::transform([](int i) { return [i] { return i * i; }; });
}

TEST(FailingRank, Rank1FailsAnAssertBeforeACallTheOthersMake) {
  ASSERT_NE(world_rank(), 1) << "rank 1 fails on purpose";
  auto squares_of = joblet::Parallel({.backend = "mpi"})(squares(10));
  EXPECT_EQ(squares_of.size(), 10u);
}

TEST(FailingRank, TheNextTestRunsOnEveryRank) {
  auto squares_of = joblet::Parallel({.backend = "mpi"})(squares(30));
  ASSERT_EQ(squares_of.size(), 30u);
  EXPECT_EQ(squares_of[29], 841);
}

}  // namespace
