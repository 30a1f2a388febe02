// GoogleTest main for suites that run on every rank of an MPI job: a joblet::Session starts MPI
// and the mpi backend; only rank 0 prints, and the job fails if any rank failed.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>
#include <mpi.h>

int main(int argc, char** argv) {
  joblet::Session session(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (!session.is_root()) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  int any_failed = failed;
  if (session.uses_mpi()) MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any_failed;
}
