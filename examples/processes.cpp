// processes: workers are forked when the call starts. They inherit every task and everything
// the tasks point to (copy-on-write: nothing is serialized on the way in); only task indices
// go to them, and only results come back, encoded, so a result type must be serializable
// with cereal. Use processes for code that is not thread-safe, holds a global lock, may crash
// or hang, or leaks memory: each worker is a separate process.
#include <unistd.h>

#include <joblet/joblet.hpp>

#include <cstdio>
#include <functional>
#include <numeric>
#include <ranges>
#include <set>
#include <vector>

// A result type: give it serialize() so the codec can move it between processes.
struct ChunkSum {
  double sum = 0;
  long worker_pid = 0;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(sum, worker_pid);
  }
};

ChunkSum sum_chunk(const std::vector<double>& data, std::size_t first, std::size_t count) {
  const auto begin = data.begin() + static_cast<std::ptrdiff_t>(first);
  return {std::accumulate(begin, begin + static_cast<std::ptrdiff_t>(count), 0.0), static_cast<long>(getpid())};
}

struct Opaque {  // no serialize(): fine for threads, refused by processes
  const double* pointer = nullptr;
};

int main() {
  // 80 MB of input. delayed stores arguments by value, so pass it by std::cref: each worker
  // then reads the parent's copy, inherited at fork, instead of one copy per task.
  std::vector<double> data(10'000'000);
  std::iota(data.begin(), data.end(), 0.0);
  const std::size_t chunk = data.size() / 8;
  auto tasks = std::views::iota(std::size_t{0}, std::size_t{8}) | std::views::transform([&](std::size_t c) {
                 return joblet::delayed(sum_chunk, std::cref(data), c * chunk, chunk);
               });
  std::vector<ChunkSum> sums = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks);

  double total = 0;
  std::set<long> pids;
  for (const ChunkSum& s : sums) total += s.sum, pids.insert(s.worker_pid);
  std::printf("sum %.0f, computed by %zu worker processes; this one is %ld\n", total, pids.size(),
              static_cast<long>(getpid()));

  // A result that cannot cross a process boundary is refused before any worker starts.
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
        std::views::iota(0, 2) | std::views::transform([&](int) { return [&] { return Opaque{data.data()}; }; }));
    return 1;
  } catch (const joblet::ConfigError& e) {
    std::printf("ConfigError: %s\n", e.message().c_str());
  }
  return total == 49999995000000.0 && !pids.count(getpid()) ? 0 : 1;
}
