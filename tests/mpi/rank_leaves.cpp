// A program in which rank 1 leaves the job before a Parallel call that the other ranks make
// (--leave return: it returns from main, so its Session finalises MPI; --leave finalize: it
// calls MPI_Finalize itself; --leave none: it stays, and the program is correct). The job must
// end on every rank, never hang: the others' call fails with an error naming rank 1.
#include <mpi.h>
#include <joblet/joblet.hpp>

#include <cstdio>
#include <cstring>
#include <ranges>
#include <string>

int main(int argc, char** argv) {
  joblet::Session session(argc, argv);
  std::string leave = "none";
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--leave") == 0) leave = argv[i + 1];
  }
  auto tasks = std::views::iota(0, 20) | std::views::transform([](int i) { return [i] { return i * i; }; });
  try {
    auto first = joblet::Parallel()(tasks);
    if (session.rank() == 1 && leave == "return") return 0;
    if (session.rank() == 1 && leave == "finalize") {
      MPI_Finalize();
      return 0;
    }
    auto second = joblet::Parallel()(tasks);
    std::printf("rank %d: both calls returned %zu results\n", session.rank(), first.size() + second.size());
  } catch (const joblet::Error& e) {
    std::fprintf(stderr, "rank %d: %s\n", session.rank(), e.what());
    return 3;
  }
  return 0;
}
