// The ranks of a job across nodes between two parallel calls: after the first call rank 0 writes
// MARKER, and the last node's two ranks stay in the program's own code (they sleep until killed)
// while the others wait for them at the start of the second call. Nothing joblet does runs a
// call there; only the liveness watch can tell that the last node died.
// Usage: between_calls MARKER
#include <mpi.h>
#include <joblet/joblet.hpp>
#include <joblet/mpi.hpp>

#include <chrono>
#include <cstdio>
#include <ranges>
#include <thread>

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  joblet::register_mpi_backend();
  if (argc != 2) {
    std::fprintf(stderr, "usage: between_calls MARKER\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  auto squares = [](int count) {
    return std::views::iota(0, count) | std::views::transform([](int i) { return [i] { return i * i; }; });
  };
  const auto first = joblet::Parallel({.backend = "mpi"})(squares(size));
  if (rank == 0) {
    if (std::FILE* marker = std::fopen(argv[1], "w")) std::fclose(marker);
  }
  // Bounded, so that a broken watch ends the program (with status 0, which the test reports).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(100);
  while (rank >= size - 2 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const auto second = joblet::Parallel({.backend = "mpi"})(squares(size));
  std::printf("rank %d: %zu and %zu results\n", rank, first.size(), second.size());
  MPI_Finalize();
  return 0;
}
