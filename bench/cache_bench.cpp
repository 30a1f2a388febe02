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
//   cache_bench [--system S] [--workload W] [--workers N] [--quick]
//
// prints "<workload> <system> <value> <unit>" (the median of several batches); '#' lines are
// notes. With no --system/--workload it runs everything. joblib's side is
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

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string system;
  std::string workload;
  bool quick = false;
};

// A fresh directory in $CACHE_BENCH_DIR, else next to where the benchmark runs (the same
// filesystem a user's ./joblet-cache would be on), removed at the end. File creation costs very
// different amounts on different filesystems (about 1 ms on some VM disks, 5 µs on tmpfs):
// compare systems on the same one.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("CACHE_BENCH_DIR");
    const std::filesystem::path parent =
        (base != nullptr && *base != '\0') ? std::filesystem::path(base) : std::filesystem::current_path();
    std::string pattern = (parent / ".cache-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      pattern = (std::filesystem::temp_directory_path() / "cache-bench-XXXXXX").string();
      if (mkdtemp(pattern.data()) == nullptr) std::abort();
    }
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// µs per operation: the median over `batches` batches of `per_batch` operations.
double microseconds_per_op(int batches, int per_batch, const std::function<void(int)>& operation) {
  std::vector<double> samples;
  int counter = 0;
  for (int batch = 0; batch < batches; ++batch) {
    const auto start = Clock::now();
    for (int i = 0; i < per_batch; ++i) operation(counter++);
    samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count() / per_batch);
  }
  return median(samples);
}

void report(const std::string& workload, const std::string& system, double value, const char* unit) {
  std::printf("%s %s %.4g %s\n", workload.c_str(), system.c_str(), value, unit);
  std::fflush(stdout);
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
  ScratchDir dir;
  if (is_joblet(system)) {
    joblet::Memory memory(dir.path() / "cache", memory_options(system));
    auto cached = memory.cache("compute", compute, {.version = "1"});
    cached(1);  // the entry exists from here on
    const double us = microseconds_per_op(5, per_batch, [&](int) {
      if (cached(1) != 0.5) std::abort();
    });
    report("cache-hit", system, us, "us");
  } else if (system == "file-raw") {
    // What a hit cannot avoid: open, size, read and close a small file.
    const auto path = dir.path() / "entry";
    std::vector<char> bytes(256, 'x');
    {
      const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
      if (::write(fd, bytes.data(), bytes.size()) != 256) std::abort();
      ::close(fd);
    }
    const double us = microseconds_per_op(5, per_batch, [&](int) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      struct stat info {};
      fstat(fd, &info);
      if (::read(fd, bytes.data(), static_cast<std::size_t>(info.st_size)) != 256) std::abort();
      ::close(fd);
    });
    report("cache-hit", system, us, "us");
  }
}

void cache_miss(const Options& options, const std::string& system) {
  const bool fsync = system == "joblet-memory" || system == "file-fsync-raw";
  const int per_batch = options.quick ? 50 : (fsync ? 200 : 1000);
  ScratchDir dir;
  if (is_joblet(system)) {
    joblet::Memory memory(dir.path() / "cache", memory_options(system));
    auto cached = memory.cache("compute", compute, {.version = "1"});
    cached(-1);  // directories created outside the timing, as for a warm cache
    const double us = microseconds_per_op(5, per_batch, [&](int i) { cached(i); });
    report("cache-miss", system, us, "us");
  } else if (system == "file-raw" || system == "file-fsync-raw") {
    // What a miss cannot avoid: write a small file under a temporary name and rename it.
    std::vector<char> bytes(256, 'x');
    const std::string directory = dir.path().string();
    const double us = microseconds_per_op(5, per_batch, [&](int i) {
      const std::string temporary = directory + "/.tmp" + std::to_string(i);
      const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (::write(fd, bytes.data(), bytes.size()) != 256) std::abort();
      if (fsync) ::fsync(fd);
      ::close(fd);
      ::rename(temporary.c_str(), (directory + "/" + std::to_string(i)).c_str());
    });
    report("cache-miss", system, us, "us");
  }
}

void hash_1gib(const Options& options, const std::string& system) {
  const std::size_t bytes = options.quick ? (std::size_t{128} << 20) : (std::size_t{1} << 30);
  std::vector<double> data(bytes / sizeof(double));
  // Touch every page first: memory the VM handed back to the host is slow to touch again.
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<double>(i);
  std::vector<double> samples;
  std::uint64_t sink = 0;
  for (int round = 0; round < 5; ++round) {
    const auto start = Clock::now();
    if (system == "xxh3-raw") {
      sink += XXH3_128bits_dispatch(data.data(), bytes).low64;
    } else {
      // What a cached function pays for a large argument: its key is this hash.
      sink += joblet::hash_value(data).low;
    }
    samples.push_back(static_cast<double>(bytes) / 1e9 / std::chrono::duration<double>(Clock::now() - start).count());
  }
  if (sink == 42) std::printf("#\n");
  if (options.quick) std::printf("# hash-1GiB: quick run hashes 128 MiB\n");
  report("hash-1GiB", system, median(samples), "GB/s");
}

void cache_entry(const std::string& system) {
  if (!is_joblet(system)) return;
  ScratchDir dir;
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
  report("cache-entry", system, static_cast<double>(allocated), "B");
}

const std::vector<std::string> kWorkloads{"cache-hit", "cache-miss", "hash-1GiB", "cache-entry"};
const std::vector<std::string> kSystems{"joblet-memory", "joblet-memory-nofsync", "xxh3-raw", "file-raw",
                                        "file-fsync-raw"};

void run(const Options& options, const std::string& workload, const std::string& system) {
  if (workload == "cache-hit") {
    if (system != "joblet-memory-nofsync" && system != "file-fsync-raw") cache_hit(options, system);
  } else if (workload == "cache-miss") {
    cache_miss(options, system);
  } else if (workload == "hash-1GiB") {
    if (system == "joblet-memory" || system == "xxh3-raw") hash_1gib(options, system);
  } else if (workload == "cache-entry") {
    if (system == "joblet-memory") cache_entry(system);
  } else {
    std::fprintf(stderr, "cache_bench: unknown workload '%s'\n", workload.c_str());
    std::exit(2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    if (argument == "--quick") {
      options.quick = true;
    } else if (argument == "--system" && i + 1 < argc) {
      options.system = argv[++i];
    } else if (argument == "--workload" && i + 1 < argc) {
      options.workload = argv[++i];
    } else if (argument == "--workers" && i + 1 < argc) {
      ++i;  // the cache workloads run in one process
    } else {
      std::fprintf(stderr, "usage: cache_bench [--system S] [--workload W] [--workers N] [--quick]\n");
      return 2;
    }
  }
  if (!options.system.empty() && std::find(kSystems.begin(), kSystems.end(), options.system) == kSystems.end()) {
    std::fprintf(stderr, "cache_bench: unknown system '%s'\n", options.system.c_str());
    return 2;
  }
  for (const auto& workload : kWorkloads) {
    if (!options.workload.empty() && workload != options.workload) continue;
    for (const auto& system : kSystems) {
      if (!options.system.empty() && system != options.system) continue;
      run(options, workload, system);
    }
  }
  return 0;
}
