#include "joblet/detail/task_trace.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>

#include <fmt/compile.h>
#include <fmt/format.h>

#include "joblet/backend.hpp"
#include "joblet/detail/env.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/error.hpp"
#include "joblet/exceptions.hpp"

namespace joblet::detail {

// A process's trace file in one directory. Each thread appends its lines to a chunk of the file
// of its own, mapped shared (MAP_SHARED): a line is in the page cache once it is copied there, so
// that a process killed with SIGKILL loses only the tasks it was running, while a task costs no
// system call. Chunks are allocated on disk before they are mapped (fallocate), so that a full
// filesystem makes the trace stop with a warning rather than the process die of SIGBUS. The parts
// of chunks never written read as NUL bytes, which `joblet trace` skips.
struct TraceFile {
  int fd = -1;
  std::mutex growing;
  off_t reserved = 0;  // the end of the last chunk handed out
  bool failed = false;
};

namespace {

constexpr std::size_t kChunkBytes = 256 * 1024;

// The files of this process, one per trace directory. A fork() child opens its own: the lines
// of a process go to the file named after it.
struct TraceFiles {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<TraceFile>, std::less<>> files;
  int pid = 0;
};

TraceFiles& trace_files() {
  static TraceFiles files;
  static const bool fork_safe = [] {
    pthread_atfork([] { files.mutex.lock(); }, [] { files.mutex.unlock(); }, [] { files.mutex.unlock(); });
    return true;
  }();
  (void)fork_safe;
  return files;
}

const std::string& this_host() {
  static const std::string host = ErrorSite::here().host;
  return host;
}

// This process's file in `directory`, opened once; null with errno when it cannot be.
TraceFile* trace_file(const std::string& directory) {
  TraceFiles& registry = trace_files();
  std::lock_guard lock(registry.mutex);
  if (registry.pid != process_id()) {
    // The parent's, inherited by fork(): its chunks stay the parent's.
    for (auto& [name, file] : registry.files) ::close(file->fd);
    registry.files.clear();
    registry.pid = process_id();
  }
  if (const auto found = registry.files.find(directory); found != registry.files.end()) return found->second.get();
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) {
    errno = error.value();
    return nullptr;
  }
  const std::string path = directory + "/" + this_host() + "-" + std::to_string(process_id()) + ".jsonl";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return nullptr;
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    errno = EINVAL;
    return nullptr;
  }
  auto file = std::make_unique<TraceFile>();
  file->fd = fd;
  file->reserved = info.st_size;  // a file of an earlier process of this pid: after it
  return registry.files.emplace(directory, std::move(file)).first->second.get();
}

// The chunk the calling thread writes its lines in.
struct ThreadChunk {
  TraceFile* file = nullptr;
  int pid = 0;
  char* base = nullptr;
  std::size_t used = 0;
  ~ThreadChunk() { release(); }
  void release() noexcept {
    if (base != nullptr && pid == process_id()) ::munmap(base, kChunkBytes);
    base = nullptr;
    file = nullptr;
  }
};
thread_local ThreadChunk t_chunk;

// A fresh chunk of `file` for this thread; false (and the file marked failed) when there is none.
bool map_chunk(TraceFile& file) noexcept {
  t_chunk.release();
  off_t offset = 0;
  {
    std::lock_guard lock(file.growing);
    if (file.failed) return false;
    offset = file.reserved;
    int error = ::fallocate(file.fd, 0, offset, static_cast<off_t>(kChunkBytes)) == 0 ? 0 : errno;
    if (error == EOPNOTSUPP) error = ::posix_fallocate(file.fd, offset, static_cast<off_t>(kChunkBytes));
    if (error != 0) {
      file.failed = true;
      log().warn("the task trace stops: its file cannot grow ({}); the tasks run on untraced", std::strerror(error));
      return false;
    }
    file.reserved = offset + static_cast<off_t>(kChunkBytes);
  }
  void* mapped = ::mmap(nullptr, kChunkBytes, PROT_READ | PROT_WRITE, MAP_SHARED, file.fd, offset);
  if (mapped == MAP_FAILED) {
    std::lock_guard lock(file.growing);
    if (!std::exchange(file.failed, true)) {
      log().warn("the task trace stops: its file cannot be mapped ({}); the tasks run on untraced",
                 std::strerror(errno));
    }
    return false;
  }
  // The chunk's pages made writable in one system call, not in a page fault each (a fault costs
  // microseconds on a VM). Older kernels have no MADV_POPULATE_WRITE: the pages fault in then.
#ifdef MADV_POPULATE_WRITE
  ::madvise(mapped, kChunkBytes, MADV_POPULATE_WRITE);
#endif
  t_chunk.file = &file;
  t_chunk.pid = process_id();
  t_chunk.base = static_cast<char*>(mapped);
  t_chunk.used = 0;
  return true;
}

// Copies one line into this thread's chunk of `file`.
void append_line(TraceFile& file, std::string_view line) noexcept {
  if (line.size() > kChunkBytes) return;  // cannot happen: messages and summaries are bounded
  const bool fits = t_chunk.base != nullptr && t_chunk.file == &file && t_chunk.pid == process_id() &&
                    t_chunk.used + line.size() <= kChunkBytes;
  if (!fits && !map_chunk(file)) return;
  std::memcpy(t_chunk.base + t_chunk.used, line.data(), line.size());
  t_chunk.used += line.size();
}

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Wall-clock time of a steady-clock reading (ns since the epoch): one clock read per event, not two.
std::int64_t wall_ns(std::int64_t steady) noexcept {
  static const std::int64_t offset = [] {
    const auto wall =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    return wall - steady_ns();
  }();
  return steady + offset;
}

// An error message longer than this is cut in the trace (the exception itself keeps it whole).
constexpr std::size_t kMaxMessage = 4096;

// The process's peak resident memory so far, asked of the kernel at most every 50 ms per thread.
long peak_rss_kb(std::int64_t now_ns) noexcept {
  thread_local std::int64_t asked_ns = 0;
  thread_local long peak = 0;
  thread_local int asked_by = 0;
  if (peak == 0 || now_ns - asked_ns > 50'000'000 || asked_by != process_id()) {
    struct rusage usage {};
    peak = ::getrusage(RUSAGE_SELF, &usage) == 0 ? usage.ru_maxrss : 0;
    asked_ns = now_ns;
    asked_by = process_id();
  }
  return peak;
}

// A small number per thread of this process, so that a timeline can draw one row per worker.
int worker_number() noexcept {
  static std::atomic<int> next{0};
  thread_local const int number = next.fetch_add(1, std::memory_order_relaxed);
  return number;
}

std::string line_prefix(const std::string& call) {
  std::string prefix = "{\"call\":";
  append_json_string(prefix, call);
  prefix += ",\"host\":";
  append_json_string(prefix, this_host());
  fmt::format_to(std::back_inserter(prefix), ",\"pid\":{},\"rank\":{},\"worker\":{}", process_id(), process_rank(),
                 worker_number());
  return prefix;
}

// How a failure looks in a trace: the outcome, the error's type and its message.
struct FailureText {
  std::string_view outcome = "failed";
  std::string type;
  std::string message;
};

FailureText describe_failure(const std::exception_ptr& error) noexcept {
  FailureText text;
  try {
    try {
      std::rethrow_exception(error);
    } catch (const TimeoutError&) {
      text.outcome = "timed_out";
    } catch (const WorkerDiedError&) {
      text.outcome = "worker_died";
    } catch (...) {
    }
    EncodedException encoded = encode_exception(error);
    text.type = std::move(encoded.type);
    text.message = std::move(encoded.message);
  } catch (...) {  // out of memory while describing it
    text.type = "unknown";
  }
  return text;
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void open_trace(const std::string& directory) {
  if (trace_file(directory) == nullptr) {
    const int error = errno;
    throw ConfigError("cannot write the task trace in '" + directory + "': " + std::strerror(error) +
                      "; point Config::trace (or JOBLET_TRACE) at a directory this process can write");
  }
}

std::string new_trace_call_name(bool collective) {
  static std::atomic<std::uint64_t> calls{0};
  static std::atomic<std::uint64_t> collective_calls{0};
  if (collective) {
    // What every rank of one launch shares: PMIx's namespace (mpirun, srun --mpi=pmix), else the
    // Slurm step.
    std::string launch = env_string("PMIX_NAMESPACE").value_or("");
    if (launch.empty()) {
      const auto job = env_string("SLURM_JOB_ID");
      if (job) launch = *job + "." + env_string("SLURM_STEP_ID").value_or("0");
    }
    if (launch.empty()) launch = this_host() + "-" + std::to_string(::getppid());
    return "mpi-" + launch + "-" + std::to_string(collective_calls.fetch_add(1) + 1);
  }
  return this_host() + "-" + std::to_string(process_id()) + "-" + std::to_string(calls.fetch_add(1) + 1);
}

namespace {
// The trace of the tasks this thread is running, for trace_failed_attempt().
thread_local TaskTrace* t_running_trace = nullptr;
}  // namespace

TaskTrace::TaskTrace(const Job& job) noexcept : job_(&job) {
  if (job.settings().trace.empty() || job.trace_call().empty()) return;
  try {
    file_ = trace_file(job.settings().trace);
    if (file_ == nullptr) {
      if (first_time("joblet.trace.open")) {
        log().warn("cannot open the task trace in {}: {}; this process's tasks run untraced", job.settings().trace,
                   std::strerror(errno));
      }
      return;
    }
    prefix_ = line_prefix(job.trace_call());
  } catch (...) {  // out of memory: no trace
    file_ = nullptr;
    return;
  }
  // For this trace's life, whatever it ends like (a task whose outcome a timeout recorded first
  // is never finished): cached calls made on this thread tell it what they did.
  outer_call_ = std::exchange(thread_context().traced_call, &cached_call_);
  outer_trace_ = std::exchange(t_running_trace, this);
}

TaskTrace::~TaskTrace() {
  if (!on()) return;
  thread_context().traced_call = outer_call_;
  t_running_trace = outer_trace_;
}

void TaskTrace::start() noexcept {
  if (!on()) return;
  cached_call_.function = nullptr;
  started_ns_ = steady_ns();
}

void TaskTrace::finish(std::size_t index, const std::exception_ptr& error) noexcept {
  if (!on()) return;
  const std::int64_t ended = steady_ns();
  if (!error) {
    add_line(index, started_ns_, ended, "ok", {}, {});
    return;
  }
  const FailureText text = describe_failure(error);
  add_line(index, started_ns_, ended, text.outcome, text.type, text.message);
}

void TaskTrace::finish_encoded(std::size_t index, std::span<const std::byte> outcome) noexcept {
  if (!on()) return;
  const std::int64_t ended = steady_ns();
  std::string type;
  std::string message;
  if (!describe_encoded_failure(outcome, type, message)) {
    add_line(index, started_ns_, ended, "ok", {}, {});
  } else {
    add_line(index, started_ns_, ended, "failed", type, message);
  }
}

void TaskTrace::add_line(std::size_t index, std::int64_t started_ns, std::int64_t ended_ns, std::string_view outcome,
                         std::string_view error_type, std::string_view message) noexcept {
  thread_local std::string line;
  try {
    line.clear();
    auto out = std::back_inserter(line);
    line += prefix_;
    const std::int64_t wall_start = wall_ns(started_ns);
    const std::int64_t wall_end = wall_ns(ended_ns);
    // Into a buffer on the stack: numbers and an outcome name fit in it whatever their values.
    char numbers[320];
    const char* numbers_end = fmt::format_to(
        numbers,
        FMT_COMPILE(",\"task\":{},\"attempt\":{},\"outcome\":\"{}\",\"start\":{}.{:06},\"end\":{}.{:06}"
                    ",\"mono_start_ns\":{},\"mono_end_ns\":{},\"peak_rss_kb\":{}"),
        index, job_->attempt(index), outcome, wall_start / 1'000'000'000, wall_start % 1'000'000'000 / 1000,
        wall_end / 1'000'000'000, wall_end % 1'000'000'000 / 1000, started_ns, ended_ns, peak_rss_kb(ended_ns));
    line.append(numbers, static_cast<std::size_t>(numbers_end - numbers));
    if (const TracedCachedCall& call = cached_call_; call.function != nullptr) {
      line += ",\"function\":";
      append_json_string(line, *call.function);
      static constexpr std::string_view kCache[] = {"computed", "hit", "reloaded"};
      const auto cache = call.cache == TracedCachedCall::hit && job_->loads_campaign_result(index)
                             ? TracedCachedCall::reloaded
                             : call.cache;
      fmt::format_to(out, FMT_COMPILE(",\"key\":\"{:016x}{:016x}\",\"cache\":\"{}\""), call.key_high, call.key_low,
                     kCache[cache]);
      if (call.cache != TracedCachedCall::computed) {
        fmt::format_to(out, FMT_COMPILE(",\"computed_s\":{:.6f}"), call.computed_seconds);
      } else if (!call.arguments.empty()) {
        line += ",\"arguments\":";
        append_json_string(line, call.arguments);
      }
    }
    if (!error_type.empty()) {
      line += ",\"error_type\":";
      append_json_string(line, error_type);
      line += ",\"error\":";
      append_json_string(line, message.substr(0, kMaxMessage));
    }
    line += "}\n";
  } catch (...) {  // out of memory: this line is lost
    return;
  }
  append_line(*file_, line);
}

void trace_failed_attempt(const Job& job, std::size_t index, const std::exception_ptr& error) noexcept {
  TaskTrace* running = t_running_trace;
  if (running == nullptr || running->job_ != &job) {
    trace_lost_task(job, index, error);
    return;
  }
  running->finish(index, error);
  running->start();
}

void trace_lost_task(const Job& job, std::size_t index, const std::exception_ptr& error) noexcept {
  TaskTrace trace(job);
  if (!trace.on()) return;
  trace.start();
  trace.finish(index, error);
}

}  // namespace joblet::detail
