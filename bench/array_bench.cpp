// The array workloads on joblet and on the raw limits, for bench/compare:
//
//   dump-1GiB             GB/s writing a 1 GiB float64 array to a file (then fsync)
//   dump-1GiB-compressed  GB/s (of array bytes) writing it compressed (deflate level 3, the
//                         level joblib's compress=True means; shuffled; then fsync)
//   load-1GiB             GB/s reading it back into memory (file in the page cache)
//   load-mmap-1GiB        ms to load it memory-mapped (read-only): nothing is read
//   dump-1GiB-peak        MiB of peak resident memory a dump adds to the array's own
//   load-1GiB-peak        MiB of peak resident memory a load adds beyond the loaded array
//   write-1GiB            GB/s of write() + fsync of the same bytes to the same filesystem (raw)
//   read-1GiB             GB/s of read() of that file into fresh memory (raw; page cache)
//   results-8x100MB       ms for 8 tasks on 2 worker processes, each returning a 100 MB
//                         array, until the caller has summed them all
//
// Systems: joblet-arrays (dump/load; results through per-call files), joblet-arrays-szip
// (dump-compressed with Compressor::szip), joblet-arrays-pipe (results-8x100MB with max_nbytes =
// disable_memmapping: through the pipes) and raw (write-1GiB and read-1GiB, also run under the
// names dump-1GiB and load-1GiB so that bench/compare holds joblet against them in one row).
// joblib-arrays, numpy and h5py are in joblib_array_bench.py.
//
//   array_bench --workload W --system S [--workers N] [--quick]
//
// --quick uses 64 MiB arrays and 8 x 8 MB results (the workload names stay). Files are made in
// $ARRAY_BENCH_DIR (default: the current directory); every system of a run uses the same one.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <ranges>
#include <string>

#include "joblet/dump.hpp"
#include "joblet/parallel.hpp"
#include "workloads.hpp"

namespace {

using joblet::bench::Clock;
using joblet::bench::note;
using joblet::bench::Options;
using joblet::bench::print_measurement;
using joblet::bench::median_of;
using joblet::bench::ScratchDir;
using joblet::bench::seconds_since;

constexpr std::string_view kUsage =
    "--workload dump-1GiB|dump-1GiB-compressed|load-1GiB|load-mmap-1GiB|dump-1GiB-peak|load-1GiB-peak|"
    "write-1GiB|read-1GiB|results-8x100MB --system joblet-arrays|joblet-arrays-szip|joblet-arrays-pipe|raw [--workers "
    "N] [--quick]";

std::size_t array_bytes(const Options& options) { return options.quick ? std::size_t{64} << 20 : std::size_t{1} << 30; }

// A smooth field, like simulation output: sin(i * 1e-4), by rotation (no sin call per element).
joblet::NDArray<double> make_field(std::size_t bytes) {
  auto field = joblet::NDArray<double>::uninitialized({bytes / sizeof(double)});
  std::span<double> x = field.mutable_span();
  const double step = 1e-4, c = std::cos(step), s = std::sin(step);
  double sine = 0, cosine = 1;
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = sine;
    const double next = sine * c + cosine * s;
    cosine = cosine * c - sine * s;
    sine = next;
    if ((i & 0xffff) == 0xffff) {  // renormalise now and then: rounding drifts the amplitude
      const double r = std::sqrt(sine * sine + cosine * cosine);
      sine /= r, cosine /= r;
    }
  }
  return field;
}

void warm_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(std::size_t{4} << 20);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()))) {
  }
}

// ---- dump / load -----------------------------------------------------------------------------

joblet::DumpOptions dump_options(const std::string& workload, const std::string& system) {
  joblet::DumpOptions options;
  options.fsync = true;
  if (workload == "dump-1GiB-compressed") {
    options.compress = 3;
    if (system == "joblet-arrays-szip") options.compressor = joblet::Compressor::szip;
  }
  return options;
}

void raw_write(const std::filesystem::path& path, const void* data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + path.string());
  const auto* bytes = static_cast<const char*>(data);
  for (std::size_t done = 0; done < size;) {
    const ssize_t written = ::write(fd, bytes + done, std::min<std::size_t>(size - done, std::size_t{4} << 20));
    if (written <= 0) throw std::runtime_error("write failed");
    done += static_cast<std::size_t>(written);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw std::runtime_error("fsync failed");
}

double raw_read(const std::filesystem::path& path, std::size_t size) {
  // Into fresh memory, as a load must: its page faults are part of the limit.
  void* buffer = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buffer == MAP_FAILED) throw std::runtime_error("mmap failed");
  madvise(buffer, size, MADV_HUGEPAGE);  // as numpy and joblet do for large arrays
  const auto start = Clock::now();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  auto* bytes = static_cast<char*>(buffer);
  for (std::size_t done = 0; done < size;) {
    const ssize_t got = ::read(fd, bytes + done, std::min<std::size_t>(size - done, std::size_t{4} << 20));
    if (got <= 0) throw std::runtime_error("read failed");
    done += static_cast<std::size_t>(got);
  }
  ::close(fd);
  const double seconds = seconds_since(start);
  munmap(buffer, size);
  return seconds;
}

long status_kib(const char* field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(field, 0) == 0) return std::strtol(line.c_str() + std::strlen(field), nullptr, 10);
  }
  return -1;
}

// Runs `body` in a forked child with a fresh peak-RSS counter; returns the child's peak RSS
// minus its RSS when `body` started, in MiB (the child prints it through a pipe).
double peak_extra_mib(const std::function<void()>& prepare, const std::function<void()>& body) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = fork();
  if (pid == 0) {
    prepare();
    std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current RSS
    const long before = status_kib("VmRSS:");
    body();
    const double extra = static_cast<double>(status_kib("VmHWM:") - before) / 1024.0;
    (void)!write(fds[1], &extra, sizeof extra);
    _exit(0);
  }
  close(fds[1]);
  double extra = -1;
  (void)!read(fds[0], &extra, sizeof extra);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || extra < 0) throw std::runtime_error("the child failed");
  return extra;
}

bool run_files(const Options& options) {
  const std::string& workload = options.workload;
  const std::string& system = options.system;
  const std::size_t bytes = array_bytes(options);
  const double gigabytes = static_cast<double>(bytes) / 1e9;
  const int runs = 3;
  const ScratchDir dir("ARRAY_BENCH_DIR", "array-bench");
  const auto path = dir / "array.h5";
  const bool raw = system == "raw";

  if ((workload == "dump-1GiB" && system == "joblet-arrays") ||
      (workload == "dump-1GiB-compressed" && (system == "joblet-arrays" || system == "joblet-arrays-szip"))) {
    const auto field = make_field(bytes);
    const auto dump_options_used = dump_options(workload, system);
    joblet::bench::touch_pages(const_cast<double*>(field.data()), bytes);
    // Compressing 1 GiB takes seconds: one run (bench/compare's rounds give the median).
    const bool slow = workload == "dump-1GiB-compressed" && !options.quick;
    const double seconds = median_of(slow ? 1 : runs, [&] {
      std::filesystem::remove(path);
      const auto start = Clock::now();
      joblet::dump(field, path, dump_options_used);
      return seconds_since(start);
    });
    note("%s: file of %.1f MB for %.1f MB of array", workload.c_str(),
         static_cast<double>(std::filesystem::file_size(path)) / 1e6, gigabytes * 1e3);
    if (workload == "dump-1GiB") {
      auto no_sync = dump_options_used;
      no_sync.fsync = false;
      const double cached = median_of(runs, [&] {
        std::filesystem::remove(path);
        const auto start = Clock::now();
        joblet::dump(field, path, no_sync);
        return seconds_since(start);
      });
      note("dump-1GiB without fsync (page cache only): %.3g GB/s", gigabytes / cached);
    }
    print_measurement(workload, system, gigabytes / seconds, "GB/s");
    return true;
  }
  if ((workload == "write-1GiB" || workload == "dump-1GiB") && raw) {
    const auto field = make_field(bytes);
    joblet::bench::touch_pages(const_cast<double*>(field.data()), bytes);
    const double seconds = median_of(runs, [&] {
      std::filesystem::remove(path);
      const auto start = Clock::now();
      raw_write(path, field.data(), bytes);
      return seconds_since(start);
    });
    print_measurement(workload, system, gigabytes / seconds, "GB/s");
    return true;
  }
  if ((workload == "load-1GiB" || workload == "load-mmap-1GiB") && system == "joblet-arrays") {
    // Synced, so that no writeback of the file's pages runs during the timed loads.
    joblet::dump(make_field(bytes), path, {.fsync = true});
    warm_file(path);
    const bool mapped = workload == "load-mmap-1GiB";
    const joblet::LoadOptions load_options{.mmap_mode = mapped ? joblet::MmapMode::read_only : joblet::MmapMode::none};
    double check = 0;
    const double seconds = median_of(mapped ? 9 : runs, [&] {
      const auto start = Clock::now();
      auto loaded = joblet::load<joblet::NDArray<double>>(path, load_options);
      const double elapsed = seconds_since(start);
      check += loaded(loaded.size() / 2);
      return elapsed;
    });
    joblet::bench::check(std::isfinite(check), "loaded values");
    if (mapped) {
      print_measurement(workload, system, seconds * 1e3, "ms");
    } else {
      print_measurement(workload, system, gigabytes / seconds, "GB/s");
    }
    return true;
  }
  if ((workload == "read-1GiB" || workload == "load-1GiB") && raw) {
    {
      const auto field = make_field(bytes);
      raw_write(path, field.data(), bytes);
    }
    warm_file(path);
    const double seconds = median_of(runs, [&] { return raw_read(path, bytes); });
    print_measurement(workload, system, gigabytes / seconds, "GB/s");
    return true;
  }
  if (workload == "dump-1GiB-peak" && system == "joblet-arrays") {
    joblet::NDArray<double> field;
    const double extra = peak_extra_mib(
        [&] {
          field = make_field(bytes);
          joblet::bench::touch_pages(field.mutable_data(), bytes);
        },
        [&] { joblet::dump(field, path); });
    print_measurement(workload, system, extra, "MiB");
    return true;
  }
  if (workload == "load-1GiB-peak" && system == "joblet-arrays") {
    joblet::dump(make_field(bytes), path, {.fsync = true});
    warm_file(path);
    const double extra = peak_extra_mib([] {},
                                        [&] {
                                          auto loaded = joblet::load<joblet::NDArray<double>>(path);
                                          joblet::bench::check(loaded.size() == bytes / sizeof(double), "loaded size");
                                        });
    print_measurement(workload, system, extra - static_cast<double>(bytes) / (1 << 20), "MiB");
    return true;
  }
  return false;
}

// ---- results through the processes backend ---------------------------------------------------

bool run_results(const Options& options) {
  if (options.workload != "results-8x100MB" ||
      (options.system != "joblet-arrays" && options.system != "joblet-arrays-pipe")) {
    return false;
  }
  const std::size_t elements = (options.quick ? 8'000'000 : 100'000'000) / sizeof(double);
  const joblet::Config config{
      .n_jobs = options.workers,
      .backend = "processes",
      .max_nbytes = options.system == "joblet-arrays" ? std::optional<std::size_t>{} : joblet::disable_memmapping};
  auto task = [elements](int i) {
    auto a = joblet::NDArray<double>::uninitialized({elements});
    std::fill_n(a.mutable_data(), elements, static_cast<double>(i));
    return a;
  };
  auto tasks = std::views::iota(0, 8) | std::views::transform([&](int i) { return joblet::delayed(task, i); });
  joblet::Parallel parallel(config);
  // Warm up: the first fork of a process costs more.
  parallel(std::views::iota(0, 2) |
           std::views::transform([](int i) { return joblet::delayed([](int x) { return x; }, i); }));
  const double seconds = median_of(3, [&] {
    const auto start = Clock::now();
    std::vector<joblet::NDArray<double>> results = parallel(tasks);
    double total = 0;
    for (const auto& r : results) total += std::accumulate(r.begin(), r.end(), 0.0);
    const double elapsed = seconds_since(start);
    joblet::bench::check(total == static_cast<double>(elements) * 28.0, "sum of the results");
    return elapsed;
  });
  print_measurement(options.workload, options.system, seconds * 1e3, "ms");
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  return joblet::bench::bench_main(argc, argv, kUsage,
                                   [](const Options& options) { return run_files(options) || run_results(options); });
}
