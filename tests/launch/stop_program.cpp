// A cached campaign of slow tasks, for the graceful-stop tests: `stop_program CACHE BACKEND N MS`.
// Prints "done N" when the call completes.
#include <joblet/joblet.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ranges>
#include <string>
#include <thread>

int slow_square(int i, int milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return i * i;
}

int main(int argc, char** argv) {
  joblet::Session session(argc, argv);
  if (argc != 5) {
    std::fprintf(stderr, "usage: stop_program CACHE BACKEND TASKS MILLISECONDS\n");
    return 2;
  }
  const std::string backend = argv[2];
  const int tasks = std::atoi(argv[3]);
  const int milliseconds = std::atoi(argv[4]);
  joblet::Memory memory(argv[1]);
  auto cached = memory.cache("slow_square", slow_square);
  // Two workers whatever the machine: on many cores 60 tasks would end before the signal comes.
  joblet::Config config{.n_jobs = 2, .batch_size = 1};
  if (backend != "default") config.backend = backend;
  auto squares = joblet::Parallel(config)(std::views::iota(0, tasks) | std::views::transform([&](int i) {
                                            return joblet::delayed(cached, i, milliseconds);
                                          }));
  for (int i = 0; i < tasks; ++i) {
    if (squares[i] != i * i) return 3;
  }
  if (session.is_root()) std::printf("done %d\n", tasks);
  return 0;
}
