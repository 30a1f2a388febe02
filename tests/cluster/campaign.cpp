// One process of a campaign that several processes, on several nodes, run at once on one shared
// cache: every process asks for every task, compute-once lets one of them compute each. Prints
// what this process computed and a checksum of all results, so a test can add the computations
// up over every process and compare the results.
//   cluster_campaign CACHE TASKS MILLISECONDS
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ranges>
#include <string>
#include <thread>
#include <unistd.h>

#include <joblet/joblet.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s CACHE TASKS MILLISECONDS\n", argv[0]);
    return 2;
  }
  const std::string cache = argv[1];
  const int tasks = std::atoi(argv[2]);
  const int milliseconds = std::atoi(argv[3]);
  try {
    const joblet::Memory memory(cache, {.compute_once = true});
    const auto square = memory.cache("cluster.square", [milliseconds](int x) {
      std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
      return static_cast<long>(x) * x;
    });
    // Threads in every process: the processes cooperate only through the cache.
    const auto results = joblet::Parallel({.n_jobs = 2, .backend = "threads"})(
        std::views::iota(0, tasks) | std::views::transform([&](int x) { return joblet::delayed(square, x); }));
    long sum = 0;
    for (long r : results) sum += r;
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    const auto stats = square.statistics();
    std::printf("host=%s pid=%ld computed=%llu hits=%llu waits=%llu sum=%ld\n", host, static_cast<long>(getpid()),
                static_cast<unsigned long long>(stats.misses), static_cast<unsigned long long>(stats.hits),
                static_cast<unsigned long long>(stats.waits), sum);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cluster_campaign: %s\n", e.what());
    return 1;
  }
  return 0;
}
