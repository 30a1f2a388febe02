// A program in which rank 1 leaves the job before a Parallel call that the other ranks make
// (--leave return: it returns from main, so its Session finalises MPI; --leave finalize: it
// calls MPI_Finalize itself; --leave none: it stays, and the program is correct). The job must
// end on every rank, never hang: the others' call fails with an error naming rank 1.
//
// With --mark FILE and 3 ranks or more, the last rank makes its second call only once rank 0
// has failed in it and announced its own departure (then made FILE): the last rank hears of
// rank 0 leaving too, and must still name rank 1, the rank that left first.
#include <mpi.h>
#include <joblet/joblet.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ranges>
#include <string>
#include <thread>

#include <joblet/detail/mpi_checkpoint.hpp>

int main(int argc, char** argv) {
  joblet::Session session(argc, argv);
  std::string leave = "none";
  std::filesystem::path mark;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--leave") == 0) leave = argv[i + 1];
    if (std::strcmp(argv[i], "--mark") == 0) mark = argv[i + 1];
  }
  const int last = session.size() - 1;
  auto tasks = std::views::iota(0, 20) | std::views::transform([](int i) { return [i] { return i * i; }; });
  try {
    auto first = joblet::Parallel()(tasks);
    if (session.rank() == 1 && leave == "return") return 0;
    if (session.rank() == 1 && leave == "finalize") {
      MPI_Finalize();
      return 0;
    }
    if (!mark.empty() && session.rank() == last && last >= 2 && leave != "none") {
      while (!std::filesystem::exists(mark)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    auto second = joblet::Parallel()(tasks);
    std::printf("rank %d: both calls returned %zu results\n", session.rank(), first.size() + second.size());
  } catch (const joblet::Error& e) {
    std::fprintf(stderr, "rank %d: %s\n", session.rank(), e.what());
    if (!mark.empty() && session.rank() == 0) {
      joblet::detail::leave_mpi_calls();
      std::ofstream(mark) << "rank 0 left\n";
    }
    return 3;
  }
  return 0;
}
