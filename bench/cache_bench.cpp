// The cache workloads on joblet and on their raw limits, for bench/compare:
//
//   cache-hit    µs per call of a cached function with a small argument, entry present
//   cache-miss   µs per call that misses and stores (a new argument each call)
//   hash-1GiB    GB/s hashing a 1 GiB std::vector<double> argument (the cache key's cost)
//   cache-entry  bytes on disk (allocated blocks) for one small entry
//
// Systems: joblet-memory (Memory with its defaults: fsync before publishing),
// joblet-memory-nofsync (StoreOptions::fsync = false), and the raw limits xxh3-raw (libxxhash's
// own XXH3-128 over the same buffer, with its runtime AVX2 dispatch), file-raw (open + read +
// close of a small file for hits; write a temporary file + rename for misses) and
// file-fsync-raw (the same write with fsync).
//
//   cache_bench --workload W --system S [--workers N] [--quick]    (one process: --workers unused)
//
// prints "<workload> <system> <value> <unit>" (the median of several batches); '#' lines are
// notes. joblib's side is
// bench/joblib_cache_bench.py. Caches are made in $CACHE_BENCH_DIR (default: the current
// directory).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxh_x86dispatch.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "joblet/memory.hpp"
#include "workloads.hpp"

namespace {

using joblet::bench::Clock;
using joblet::bench::Options;
using joblet::bench::ScratchDir;

constexpr std::string_view kUsage =
    "--workload cache-hit|cache-miss|hash-1GiB|cache-entry "
    "--system joblet-memory|joblet-memory-nofsync|xxh3-raw|file-raw|file-fsync-raw [--workers N] [--quick]";

// µs per operation: the median over `batches` batches of `per_batch` operations.
double microseconds_per_op(int batches, int per_batch, const std::function<void(int)>& operation) {
  int counter = 0;
  return joblet::bench::median_of(batches, [&] {
    const auto start = Clock::now();
    for (int i = 0; i < per_batch; ++i) operation(counter++);
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / per_batch;
  });
}

bool is_joblet(const std::string& system) { return system == "joblet-memory" || system == "joblet-memory-nofsync"; }

joblet::MemoryOptions memory_options(const std::string& system) {
  joblet::MemoryOptions options;
  options.store.fsync = system != "joblet-memory-nofsync";
  return options;
}

double compute(int x) { return x * 0.5; }

void cache_hit(const Options& options, const std::string& system) {
  const int per_batch = options.quick ? 2000 : 20000;
  const ScratchDir dir("CACHE_BENCH_DIR", "cache-bench");
  if (is_joblet(system)) {
    joblet::Memory memory(dir.path() / "cache", memory_options(system));
    auto cached = memory.cache("compute", compute, {.version = "1"});
    cached(1);  // the entry exists from here on
    const double us = microseconds_per_op(5, per_batch, [&](int) {
      joblet::bench::check(cached(1) == 0.5, "cached(1)");
    });
    joblet::bench::print_measurement("cache-hit", system, us, "us");
  } else if (system == "file-raw") {
    // What a hit cannot avoid: open, size, read and close a small file.
    const auto path = dir.path() / "entry";
    std::vector<char> bytes(256, 'x');
    {
      const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
      joblet::bench::check(::write(fd, bytes.data(), bytes.size()) == 256, "write of the entry file");
      ::close(fd);
    }
    const double us = microseconds_per_op(5, per_batch, [&](int) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      struct stat info {};
      fstat(fd, &info);
      joblet::bench::check(::read(fd, bytes.data(), static_cast<std::size_t>(info.st_size)) == 256, "read of the entry file");
      ::close(fd);
    });
    joblet::bench::print_measurement("cache-hit", system, us, "us");
  }
}

void cache_miss(const Options& options, const std::string& system) {
  const bool fsync = system == "joblet-memory" || system == "file-fsync-raw";
  const int per_batch = options.quick ? 50 : (fsync ? 200 : 1000);
  const ScratchDir dir("CACHE_BENCH_DIR", "cache-bench");
  if (is_joblet(system)) {
    joblet::Memory memory(dir.path() / "cache", memory_options(system));
    auto cached = memory.cache("compute", compute, {.version = "1"});
    cached(-1);  // directories created outside the timing, as for a warm cache
    const double us = microseconds_per_op(5, per_batch, [&](int i) { cached(i); });
    joblet::bench::print_measurement("cache-miss", system, us, "us");
  } else if (system == "file-raw" || system == "file-fsync-raw") {
    // What a miss cannot avoid: write a small file under a temporary name and rename it.
    std::vector<char> bytes(256, 'x');
    const std::string directory = dir.path().string();
    const double us = microseconds_per_op(5, per_batch, [&](int i) {
      const std::string temporary = directory + "/.tmp" + std::to_string(i);
      const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      joblet::bench::check(::write(fd, bytes.data(), bytes.size()) == 256, "write of the entry file");
      if (fsync) ::fsync(fd);
      ::close(fd);
      ::rename(temporary.c_str(), (directory + "/" + std::to_string(i)).c_str());
    });
    joblet::bench::print_measurement("cache-miss", system, us, "us");
  }
}

void hash_1gib(const Options& options, const std::string& system) {
  const std::size_t bytes = options.quick ? (std::size_t{128} << 20) : (std::size_t{1} << 30);
  std::vector<double> data(bytes / sizeof(double));
  // Touch every page first: memory the VM handed back to the host is slow to touch again.
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<double>(i);
  // The hashes go to a volatile so that the compiler keeps the work.
  volatile std::uint64_t sink = 0;
  const double seconds = joblet::bench::median_of(5, [&] {
    const auto start = Clock::now();
    if (system == "xxh3-raw") {
      sink = XXH3_128bits_dispatch(data.data(), bytes).low64;
    } else {
      // What a cached function pays for a large argument: its key is this hash.
      sink = joblet::hash_value(data).low;
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
  });
  if (options.quick) std::printf("# hash-1GiB: quick run hashes 128 MiB\n");
  joblet::bench::print_measurement("hash-1GiB", system, static_cast<double>(bytes) / 1e9 / seconds, "GB/s");
}

void cache_entry(const std::string& system) {
  if (!is_joblet(system)) return;
  const ScratchDir dir("CACHE_BENCH_DIR", "cache-bench");
  joblet::Memory memory(dir.path() / "cache", memory_options(system));
  memory.cache("compute", compute, {.version = "1"})(1);
  std::uint64_t allocated = 0;
  std::uint64_t apparent = 0;
  int files = 0;
  for (const auto& item : std::filesystem::recursive_directory_iterator(dir.path() / "cache")) {
    if (!item.is_regular_file()) continue;
    struct stat info {};
    stat(item.path().c_str(), &info);
    allocated += static_cast<std::uint64_t>(info.st_blocks) * 512;
    apparent += static_cast<std::uint64_t>(info.st_size);
    ++files;
  }
  std::printf("# cache-entry %s: %d file(s), %llu bytes of data, %llu bytes allocated\n", system.c_str(), files,
              static_cast<unsigned long long>(apparent), static_cast<unsigned long long>(allocated));
  joblet::bench::print_measurement("cache-entry", system, static_cast<double>(allocated), "B");
}

// False when the workload has no such system.
bool run(const Options& options) {
  const std::string& workload = options.workload;
  const std::string& system = options.system;
  const bool joblet = is_joblet(system);
  if (workload == "cache-hit" && (system == "joblet-memory" || system == "file-raw")) {
    cache_hit(options, system);
  } else if (workload == "cache-miss" && (joblet || system == "file-raw" || system == "file-fsync-raw")) {
    cache_miss(options, system);
  } else if (workload == "hash-1GiB" && (system == "joblet-memory" || system == "xxh3-raw")) {
    hash_1gib(options, system);
  } else if (workload == "cache-entry" && system == "joblet-memory") {
    cache_entry(system);
  } else {
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) { return joblet::bench::bench_main(argc, argv, kUsage, run); }
