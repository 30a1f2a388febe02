// A program whose task `--task K` kills the rank running it (--how segv|kill|abort|mpi-abort|exit):
// the MPI job must end with a non-zero status and a message naming the rank and the task.
#include <mpi.h>
#include <joblet/joblet.hpp>
#include <joblet/mpi.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ranges>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  joblet::register_mpi_backend();
  std::string how = "segv";
  int victim = 5;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--how") == 0) how = argv[i + 1];
    if (std::strcmp(argv[i], "--task") == 0) victim = std::atoi(argv[i + 1]);
  }
  // Rank 0 coordinates: it must live to report a silent death. So the tasks from `victim` on
  // kill the other ranks that run them, and rank 0 holds on to the first one it gets until the
  // job ends (another rank died running one of the others: rank 0 cannot run them all). Loosely
  // bounded: should no rank die, the program ends with status 0, which the test reports.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto tasks = std::views::iota(0, 40) | std::views::transform([&](int i) {
                 return [i, victim, how, give_up] {
                   int rank = 0;
                   MPI_Comm_rank(MPI_COMM_WORLD, &rank);
                   if (i >= victim && rank != 0) {
                     if (how == "segv") std::raise(SIGSEGV);
                     if (how == "kill") std::raise(SIGKILL);
                     if (how == "abort") std::abort();
                     if (how == "mpi-abort") MPI_Abort(MPI_COMM_WORLD, 3);
                     if (how == "exit") std::exit(4);
                   }
                   if (i >= victim) {
                     while (std::chrono::steady_clock::now() < give_up) {
                       std::this_thread::sleep_for(std::chrono::milliseconds(10));
                     }
                   }
                   return i;
                 };
               });
  auto results = joblet::Parallel({.backend = "mpi", .batch_size = 1})(tasks);
  std::printf("finished with %zu results\n", results.size());
  MPI_Finalize();
  return 0;
}
