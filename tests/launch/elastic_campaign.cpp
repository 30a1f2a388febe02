// One process of an elastic campaign: TASKS cached tasks of MILLISECONDS each, on BACKEND, in the
// cache CACHE ("none": no cache). Several of these started at any moment on one cache share the
// campaign. Every computation appends "task pid" to COMPUTED_LOG (when given), so a test can count
// how often each task was computed over every process, killed ones included. Prints the pid and
// what this process (each rank of it) computed, and every result (rank 0); progress goes to stderr.
//   elastic_campaign CACHE TASKS MILLISECONDS BACKEND [COMPUTED_LOG]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ranges>
#include <string>
#include <thread>

#include <joblet/joblet.hpp>

int main(int argc, char** argv) {
  joblet::Session session(argc, argv);
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: %s CACHE TASKS MILLISECONDS BACKEND [COMPUTED_LOG]\n", argv[0]);
    return 2;
  }
  const std::string cache = argv[1];
  const int tasks = std::atoi(argv[2]);
  const int milliseconds = std::atoi(argv[3]);
  const std::string backend = argv[4];
  const std::string computed_log = argc == 6 ? argv[5] : "";
  try {
    const joblet::Memory memory = cache == "none" ? joblet::Memory() : joblet::Memory(cache);
    const auto square = memory.cache("elastic.square", [&](int x) {
      std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
      if (!computed_log.empty()) {
        const std::string line = std::to_string(x) + " " + std::to_string(::getpid()) + "\n";
        const int fd = ::open(computed_log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
        ::close(fd);
      }
      return static_cast<long>(x) * x;
    });
    // verbose 1: each call ends with a progress line on stderr ("[joblet] Done ...").
    const auto results = joblet::Parallel({.n_jobs = 2, .backend = backend, .verbose = 1})(
        std::views::iota(0, tasks) | std::views::transform([&](int x) { return joblet::delayed(square, x); }));
    // On the processes backend the computations happen in worker processes, whose statistics
    // stay there: count those from the log.
    std::printf("pid=%ld computed=%llu\n", static_cast<long>(::getpid()),
                static_cast<unsigned long long>(square.statistics().misses));
    if (!session.is_root()) return 0;
    std::printf("results:");
    for (long r : results) std::printf(" %ld", r);
    std::printf("\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "elastic_campaign: %s\n", e.what());
    return 1;
  }
  return 0;
}
