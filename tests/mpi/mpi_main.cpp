// GoogleTest main for suites that run on every rank of an MPI job: a joblet::Session starts MPI
// and the mpi backend; rank 0 prints the usual report, other ranks print only their failures
// (prefixed with the rank), and the job fails if any rank failed.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>
#include <mpi.h>

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

}  // namespace

int main(int argc, char** argv) {
  joblet::Session session(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (!session.is_root()) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailuresOnly(session.rank()));
  }
  int failed = RUN_ALL_TESTS();
  int any_failed = failed;
  if (session.uses_mpi()) MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any_failed;
}
