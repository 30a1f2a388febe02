#pragma once
// How Session (launch/) reaches MPI without depending on it, and without joblet::mpi depending
// on launch/: joblet::mpi fills these in (from a static initialiser in <joblet/mpi.hpp>), so a
// program that never links it never needs MPI.

namespace joblet::detail {

struct MpiHooks {
  // Initialises MPI with MPI_THREAD_MULTIPLE unless it already is; true when it did.
  bool (*initialize)(int* argc, char*** argv);
  void (*rank_and_size)(int* rank, int* size);
  // Collective: registers the "mpi" backend on MPI_COMM_WORLD.
  void (*register_backend)();
  void (*finalize)();
  void (*abort)(int code);  // does not return
};

void set_mpi_hooks(const MpiHooks* hooks) noexcept;
const MpiHooks* mpi_hooks() noexcept;

}  // namespace joblet::detail
