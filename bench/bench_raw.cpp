// bench_raw: the limits bench/compare holds joblet against, in plain C++ with no joblet code.
//
//   tbb   oneTBB task_group in a task_arena of N threads spawning one task per work item
//         (tiny, tiny-batch1, sleep10ms, cpu, busy50us, skewed)
//   parallel-for  oneTBB parallel_for (auto partitioner) in a task_arena of N threads filling the
//         result vector, the vector's allocation included (tiny, tiny-1M): the limit of a batched map
//   loop  a plain loop filling the result vector, its allocation included (tiny-1M)
//   pipe  8-byte round trips over two pipes between two processes (tiny, tiny-batch1): µs each
//   spin  8-byte round trips through shared memory, spinning (tiny, tiny-batch1): µs each
//   cpu   N forked processes running the CPU kernel (cpu): the speedup ceiling
//
//   bench_raw --workload cpu --system cpu [--workers 2] [--quick]  ->  cpu cpu-raw 1.97 speedup
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "workloads.hpp"

namespace {

using namespace joblet::bench;

constexpr const char* kUsage =
    "--workload tiny|tiny-1M|tiny-batch1|sleep10ms|cpu|busy50us|skewed --system tbb|parallel-for|loop|pipe|spin|cpu "
    "[--workers N] [--quick]";

[[noreturn]] void fail_errno(const char* what) {
  throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

void write_exact(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_errno("write");
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

// False at end of file.
bool read_exact(int fd, void* data, std::size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno("read");
    if (n == 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// ---- tbb --------------------------------------------------------------------------------------

// Seconds to run body(0..n-1) as n task_group tasks in a fresh arena of `workers` threads (the
// arena's start-up included, as joblet's numbers include worker start-up; so is oneTBB's own
// start, which the first global_control of a process pays: about 1 ms here).
template <class Body>
double tbb_seconds(int workers, std::size_t n, Body body) {
  const auto start = Clock::now();
  tbb::global_control parallelism(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(workers));
  tbb::task_arena arena(workers);
  arena.execute([&] {
    tbb::task_group group;
    for (std::size_t i = 0; i < n; ++i) group.run([&body, i] { body(i); });
    group.wait();
  });
  return seconds_since(start);
}

// µs per item to allocate a vector of n results and fill it (out[i] = i), as `fill` does it;
// the values are checked after the clock stops.
template <class Fill>
double fill_us(std::size_t n, Fill fill) {
  const auto start = Clock::now();
  std::vector<std::int64_t> out(n);
  fill(out);
  const double elapsed = seconds_since(start);
  for (std::size_t i = 0; i < n; ++i) check(out[i] == static_cast<std::int64_t>(i), "result value");
  return elapsed / static_cast<double>(n) * 1e6;
}

// parallel_for over the vector in a fresh arena of `workers` threads (its start-up and oneTBB's
// included, as in tbb_seconds).
double parallel_for_us(int workers, std::size_t n) {
  return fill_us(n, [workers](std::vector<std::int64_t>& out) {
    tbb::global_control parallelism(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(workers));
    tbb::task_arena arena(workers);
    arena.execute([&out] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, out.size()), [&out](const auto& range) {
        for (std::size_t i = range.begin(); i != range.end(); ++i) out[i] = static_cast<std::int64_t>(i);
      });
    });
  });
}

double loop_us(std::size_t n) {
  return fill_us(n, [](std::vector<std::int64_t>& out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::int64_t>(i);
  });
}

template <class Duration, class Task>
double tbb_efficiency(int workers, const std::vector<Duration>& durations, Task task) {
  const double elapsed = tbb_seconds(workers, durations.size(), [&](std::size_t i) { task(durations[i]); });
  return total_seconds(durations) / workers / elapsed;
}

// ---- round trips between two processes -------------------------------------------------------

constexpr std::size_t kWarmupRoundTrips = 200;

// µs per 8-byte round trip over a pair of pipes.
double pipe_round_trip_us(std::size_t n) {
  int to_child[2], to_parent[2];
  if (pipe(to_child) != 0 || pipe(to_parent) != 0) fail_errno("pipe");
  const pid_t child = fork();
  if (child < 0) fail_errno("fork");
  if (child == 0) {
    close(to_child[1]);
    close(to_parent[0]);
    std::uint64_t value = 0;
    try {
      while (read_exact(to_child[0], &value, sizeof value)) write_exact(to_parent[1], &value, sizeof value);
    } catch (...) {
      _exit(1);
    }
    _exit(0);
  }
  close(to_child[0]);
  close(to_parent[1]);
  auto round_trips = [&](std::uint64_t first, std::size_t count) {
    for (std::uint64_t k = first; k < first + count; ++k) {
      std::uint64_t back = 0;
      write_exact(to_child[1], &k, sizeof k);
      if (!read_exact(to_parent[0], &back, sizeof back)) throw std::runtime_error("pipe: the child exited");
      check(back == k, "pipe: echoed value");
    }
  };
  round_trips(0, kWarmupRoundTrips);
  const auto start = Clock::now();
  round_trips(kWarmupRoundTrips, n);
  const double elapsed = seconds_since(start);
  close(to_child[1]);
  close(to_parent[0]);
  int status = 0;
  waitpid(child, &status, 0);
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "pipe: child exit status");
  return elapsed / static_cast<double>(n) * 1e6;
}

struct alignas(64) SpinCell {
  std::atomic<std::uint64_t> value{0};
};

// Waits for `cell` to reach `expected`; yields after a while so that a descheduled partner on
// a busy machine costs a time slice, not a stall.
void spin_until(const SpinCell& cell, std::uint64_t expected) {
  for (int spins = 0; cell.value.load(std::memory_order_acquire) != expected; ++spins) {
    if (spins > 4096) sched_yield();
  }
}

// µs per round trip through two cache lines of shared memory (the parent sets ping = k, the
// child answers pong = k).
double spin_round_trip_us(std::size_t n) {
  void* memory = mmap(nullptr, 2 * sizeof(SpinCell), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) fail_errno("mmap");
  auto* ping = new (memory) SpinCell();
  auto* pong = new (static_cast<char*>(memory) + sizeof(SpinCell)) SpinCell();
  const std::uint64_t total = kWarmupRoundTrips + n;
  const pid_t child = fork();
  if (child < 0) fail_errno("fork");
  if (child == 0) {
    for (std::uint64_t k = 1; k <= total; ++k) {
      spin_until(*ping, k);
      pong->value.store(k, std::memory_order_release);
    }
    _exit(0);
  }
  auto round_trips = [&](std::uint64_t first, std::uint64_t last) {
    for (std::uint64_t k = first; k <= last; ++k) {
      ping->value.store(k, std::memory_order_release);
      spin_until(*pong, k);
    }
  };
  round_trips(1, kWarmupRoundTrips);
  const auto start = Clock::now();
  round_trips(kWarmupRoundTrips + 1, total);
  const double elapsed = seconds_since(start);
  int status = 0;
  waitpid(child, &status, 0);
  munmap(memory, 2 * sizeof(SpinCell));
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "spin: child exit status");
  return elapsed / static_cast<double>(n) * 1e6;
}

// ---- cpu --------------------------------------------------------------------------------------

// Results of `workers` forked processes running one kernel each (fork and reaping included).
std::vector<std::uint64_t> forked_cpu_kernels(std::uint64_t iterations, int workers) {
  std::vector<pid_t> children;
  std::vector<int> reads;
  for (int k = 0; k < workers; ++k) {
    int fds[2];
    if (pipe(fds) != 0) fail_errno("pipe");
    const pid_t child = fork();
    if (child < 0) fail_errno("fork");
    if (child == 0) {
      const std::uint64_t result = cpu_kernel(iterations, static_cast<std::uint64_t>(k + 1));
      _exit(::write(fds[1], &result, sizeof result) == sizeof result ? 0 : 1);
    }
    close(fds[1]);
    children.push_back(child);
    reads.push_back(fds[0]);
  }
  std::vector<std::uint64_t> results;
  for (int fd : reads) {
    std::uint64_t result = 0;
    check(read_exact(fd, &result, sizeof result), "cpu: a child sent no result");
    results.push_back(result);
    close(fd);
  }
  for (pid_t child : children) waitpid(child, nullptr, 0);
  return results;
}

void print_cpu(const std::string& name, const CpuSpeedup& m) {
  note("cpu %s: %llu iterations, sequential %.3f s, parallel %.3f s", name.c_str(),
       static_cast<unsigned long long>(m.iterations), m.sequential, m.parallel);
  print_measurement("cpu", name, m.speedup(), "speedup");
}

bool run(const Options& options) {
  const Sizes s = sizes(options.quick);
  const std::string& w = options.workload;
  const std::string& system = options.system;
  const int workers = options.workers;
  const std::string name = system + "-raw";
  const bool tiny = w == "tiny" || w == "tiny-batch1";

  if (system == "tbb" && tiny) {
    std::vector<std::int64_t> out(s.tiny_tasks, -1);
    const double elapsed =
        tbb_seconds(workers, s.tiny_tasks, [&out](std::size_t i) { out[i] = static_cast<std::int64_t>(i); });
    for (std::size_t i = 0; i < out.size(); ++i) check(out[i] == static_cast<std::int64_t>(i), "tbb: result value");
    print_measurement(w, name, elapsed / static_cast<double>(s.tiny_tasks) * 1e6, "us");
  } else if (system == "parallel-for" && (w == "tiny" || w == "tiny-1M")) {
    print_measurement(w, name, parallel_for_us(workers, tiny_tasks_of(s, w)), "us");
  } else if (system == "loop" && w == "tiny-1M") {
    print_measurement(w, name, loop_us(tiny_tasks_of(s, w)), "us");
  } else if (system == "tbb" && w == "sleep10ms") {
    const std::vector<std::chrono::milliseconds> durations(s.sleep_tasks, s.sleep_each);
    print_measurement(w, name, tbb_efficiency(workers, durations, [](auto d) { std::this_thread::sleep_for(d); }),
                      "efficiency");
  } else if (system == "tbb" && (w == "busy50us" || w == "skewed")) {
    const auto durations =
        w == "skewed" ? skewed_durations(s) : std::vector<std::chrono::microseconds>(s.busy_tasks, s.busy_each);
    print_measurement(w, name, tbb_efficiency(workers, durations, [](auto d) { spin_for(d); }), "efficiency");
  } else if (system == "tbb" && w == "cpu") {
    print_cpu(name, measure_cpu_speedup(workers, s.cpu_seconds, [workers](std::uint64_t iterations) {
                std::vector<std::uint64_t> results(static_cast<std::size_t>(workers));
                tbb_seconds(workers, results.size(),
                            [&](std::size_t k) { results[k] = cpu_kernel(iterations, k + 1); });
                return results;
              }));
  } else if (system == "pipe" && tiny) {
    print_measurement(w, name, pipe_round_trip_us(s.tiny_tasks), "us");
  } else if (system == "spin" && tiny) {
    print_measurement(w, name, spin_round_trip_us(s.tiny_tasks), "us");
  } else if (system == "cpu" && w == "cpu") {
    print_cpu(name, measure_cpu_speedup(workers, s.cpu_seconds, [workers](std::uint64_t iterations) {
                return forked_cpu_kernels(iterations, workers);
              }));
  } else {
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) { return bench_main(argc, argv, kUsage, run); }
