// GoogleTest main for suites that run on every rank of an MPI job: a joblet::Session starts MPI
// and the mpi backend; rank 0 prints the usual report, other ranks print only their failures
// (prefixed with the rank), and the job fails if any rank failed.
//
// A failure on one rank must not hang the others: an ASSERT (or an exception) on one rank may
// skip a Parallel call that the other ranks then wait in. So every test ends at a checkpoint of
// the mpi backend, which releases ranks waiting in a call that another rank skipped (that call
// fails there) and brings every rank back in step; there each rank learns which ranks failed
// the test, and a test that failed anywhere fails on every rank.
#include <gtest/gtest.h>
#include <mpi.h>
#include <joblet/detail/mpi_checkpoint.hpp>
#include <joblet/joblet.hpp>

#include <cstdio>
#include <string>

namespace {

class FailuresOnly : public ::testing::EmptyTestEventListener {
 public:
  explicit FailuresOnly(int rank) : rank_(rank) {}
  // Remembered here: asking GoogleTest for the current test while it reports a result deadlocks.
  void OnTestStart(const ::testing::TestInfo& test) override {
    test_ = std::string(test.test_suite_name()) + "." + test.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s failed at %s:%d\n%s\n", rank_, test_.c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(), result.summary());
  }

 private:
  int rank_;
  std::string test_;
};

// The verdict of each test, shared by every rank at the test's end. Appended after the printers,
// so that it runs before them at a test's end (GoogleTest notifies OnTestEnd in reverse order)
// and its failure is reported with the test's own.
class VerdictOfEveryRank : public ::testing::EmptyTestEventListener {
 public:
  explicit VerdictOfEveryRank(int rank) : rank_(rank) {}
  void OnTestEnd(const ::testing::TestInfo& test) override {
    std::vector<long long> failed;
    try {
      failed = joblet::detail::mpi_checkpoint(test.result()->Failed() ? 1 : 0);
    } catch (const std::exception& e) {
      // A rank left the job: nothing more can be run together.
      ADD_FAILURE() << "rank " << rank_ << " cannot meet the other ranks after this test: " << e.what();
      GTEST_FLAG_SET(fail_fast, true);
      return;
    }
    std::string others;
    for (std::size_t rank = 0; rank < failed.size(); ++rank) {
      if (failed[rank] != 0 && static_cast<int>(rank) != rank_)
        others += (others.empty() ? "" : ", ") + std::to_string(rank);
    }
    if (!others.empty()) ADD_FAILURE() << "this test failed on rank(s) " << others << " (their failures are above)";
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  joblet::Session session(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (!session.is_root()) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailuresOnly(session.rank()));
  }
  if (session.size() > 1) listeners.Append(new VerdictOfEveryRank(session.rank()));
  int failed = RUN_ALL_TESTS();
  int any_failed = failed;
  if (session.uses_mpi()) {
    // This rank makes no more calls: a rank still waiting in one (with a test that skipped the
    // checkpoints) fails there instead of waiting for this one forever.
    joblet::detail::leave_mpi_calls();
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  }
  return any_failed;
}
