// Session's way into MPI (see launch/include/joblet/detail/mpi_hooks.hpp).
#include <mpi.h>

#include "joblet/detail/mpi_hooks.hpp"
#include "joblet/mpi.hpp"

namespace joblet::detail {
namespace {

bool initialize(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return false;
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  return true;
}

void rank_and_size(int* rank, int* size) {
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  MPI_Comm_size(MPI_COMM_WORLD, size);
}

void register_backend() { register_mpi_backend(MPI_COMM_WORLD); }

void finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

constexpr MpiHooks kHooks{initialize, rank_and_size, register_backend, finalize, abort};

}  // namespace

bool install_mpi_session_hooks() noexcept {
  set_mpi_hooks(&kHooks);
  return true;
}

}  // namespace joblet::detail
