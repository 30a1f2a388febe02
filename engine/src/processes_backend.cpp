// processes: workers forked when the call starts. They inherit every task (closures and
// inputs, copy-on-write), claim indices from a counter in shared memory, and send back only
// encoded outcomes, in frames over one pipe each.
//
// A dead worker is seen through its pidfd (or waitpid polling where pidfds are missing) and
// reported with the task it was running; a worker past the timeout is killed. No worker
// outlives the call: every one is reaped, and they die with the parent (PR_SET_PDEATHSIG).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>
#include <set>

#include "backends.hpp"
#include "joblet/detail/frames.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/result_folder.hpp"
#include "worker_context.hpp"

namespace joblet::detail {
namespace {

using Clock = Job::Clock;

// A worker process should spend about this long per claim: a frame write in the worker and
// a wake-up of the parent cost tens of microseconds, so this keeps them near 1 % for tiny tasks.
constexpr auto kBatchTarget = std::chrono::milliseconds(1);
// Frames are written when a batch ends or when this much is buffered.
constexpr std::size_t kFlushBytes = 1 << 20;
// The control frame a worker sends when it ran out of tasks and exits normally.
constexpr std::uint64_t kGoodbye = kControlFrame;
// Exit code of a worker whose parent died before it started.
constexpr int kOrphanExit = 121;

struct alignas(64) SharedSlot : RunningTask {
  std::atomic<std::uint64_t> chunk_begin{0};
  std::atomic<std::uint64_t> chunk_end{0};
};

// Lives in memory shared by the parent and every worker (MAP_SHARED, created before fork).
struct SharedControl {
  alignas(64) std::atomic<std::uint64_t> next{0};
  alignas(64) std::atomic<std::uint32_t> cancelled{0};
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::int64_t>::is_always_lock_free,
              "cross-process atomics must be lock-free");

class SharedMemory {
 public:
  explicit SharedMemory(int slots)
      : bytes_(sizeof(SharedControl) + sizeof(SharedSlot) * static_cast<std::size_t>(slots)) {
    memory_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory_ == MAP_FAILED) {
      throw Error(
          fmt::format("processes backend: mmap of {} bytes of shared memory failed: {}", bytes_, std::strerror(errno)));
    }
    control_ = new (memory_) SharedControl();
    for (int i = 0; i < slots; ++i) new (&slot(i)) SharedSlot();
  }
  ~SharedMemory() { munmap(memory_, bytes_); }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  SharedControl& control() noexcept { return *control_; }
  SharedSlot& slot(int i) noexcept {
    return reinterpret_cast<SharedSlot*>(static_cast<char*>(memory_) + sizeof(SharedControl))[i];
  }

 private:
  std::size_t bytes_;
  void* memory_;
  SharedControl* control_;
};

std::string signal_name(int signal) {
  const char* abbreviation = sigabbrev_np(signal);
  return abbreviation ? fmt::format("SIG{}", abbreviation) : fmt::format("signal {}", signal);
}

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t written = ::write(fd, data, size);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return false;
    data += written;
    size -= static_cast<std::size_t>(written);
  }
  return true;
}

// ---- the worker's side ----------------------------------------------------------------------

// Variables that size the thread pools of OpenMP, BLAS and friends, set in each worker to its
// share of the CPUs unless the user set them (as joblib does), so that N workers do not each
// start one thread per CPU.
constexpr const char* kThreadLimitVariables[] = {
    "OMP_NUM_THREADS",        "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",     "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS",    "NUMEXPR_NUM_THREADS",
};

// exit() inside a task must not run the parent's atexit handlers and static destructors in
// the worker (they may wait for threads that do not exist here): end the process at once.
void exit_without_parent_cleanup(int status, void*) {
  std::fflush(nullptr);
  _exit(status);
}

struct WorkerArgs {
  Job* job;
  SharedControl* control;
  SharedSlot* slot;
  int fd;
  pid_t parent;
  std::vector<std::size_t> first;  // indices to run before claiming (left over by a dead worker)
  int n_workers;
  int budget;
  const ResultFolder* results;  // large result arrays go to files there instead of the pipe
};

[[noreturn]] void worker_main(const WorkerArgs& args) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != args.parent) _exit(kOrphanExit);
  on_exit(exit_without_parent_cleanup, nullptr);
  // A graceful stop is the parent's decision: Slurm signals every process of the job, and a
  // worker must finish its task rather than die on the signal. Caught, not ignored: an ignored
  // signal stays ignored across exec, so a program a task starts could not be stopped by it,
  // while a caught one reverts to its default there.
  struct sigaction outlive {};
  outlive.sa_handler = [](int) {};
  outlive.sa_flags = SA_RESTART;
  sigemptyset(&outlive.sa_mask);
  sigaction(SIGTERM, &outlive, nullptr);
  sigaction(SIGUSR1, &outlive, nullptr);
  reinitialize_after_fork();
  enter_forked_worker(args.budget);
  const std::string share = std::to_string(args.budget);
  for (const char* name : kThreadLimitVariables) setenv(name, share.c_str(), 0);

  Job& job = *args.job;
  SharedControl& control = *args.control;
  SharedSlot& slot = *args.slot;
  const std::size_t total = job.size();
  std::string frames;
  frames.reserve(64 * 1024);
  std::optional<ResultWriter> result_files;
  if (args.results->enabled()) result_files.emplace(*args.results, frames);
  auto flush = [&] {
    if (!frames.empty() && !write_all(args.fd, frames.data(), frames.size())) _exit(kOrphanExit);  // parent gone
    frames.clear();
  };
  auto run_one = [&](std::size_t index) {
    slot.started_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    slot.index.store(static_cast<std::int64_t>(index), std::memory_order_release);
    append_frame(frames, index, [&](std::string& out) { job.run_encoded(index, out); });
    slot.index.store(-1, std::memory_order_release);
    if (frames.size() >= kFlushBytes) flush();
  };
  auto cancelled = [&] { return control.cancelled.load(std::memory_order_relaxed) != 0; };

  for (std::size_t index : args.first) {
    if (cancelled()) break;
    run_one(index);
  }
  flush();
  BatchSizer sizer(job.settings().batch_size, kBatchTarget, args.n_workers);
  while (!cancelled()) {
    const std::uint64_t claimed = control.next.load(std::memory_order_relaxed);
    const std::size_t count = sizer.next(claimed >= total ? 0 : total - claimed);
    const std::uint64_t begin = control.next.fetch_add(count, std::memory_order_relaxed);
    if (begin >= total) break;
    const std::uint64_t end = std::min<std::uint64_t>(begin + count, total);
    slot.chunk_begin.store(begin, std::memory_order_relaxed);
    slot.chunk_end.store(end, std::memory_order_release);
    const auto start = Clock::now();
    for (std::uint64_t index = begin; index < end && !cancelled(); ++index) run_one(index);
    flush();
    sizer.observe(end - begin, Clock::now() - start);
  }
  std::cout.flush();
  std::fflush(nullptr);
  frames.clear();
  append_control_frame(frames);
  flush();
  _exit(0);
}

// ---- the parent's side ----------------------------------------------------------------------

// Bytes read from one worker, parsed into frames as they complete. Not a std::string: large
// results would be zero-filled before being overwritten.
class FrameBuffer {
 public:
  char* space(std::size_t wanted) {
    if (capacity_ - size_ < wanted) {
      const std::size_t capacity = std::max(capacity_ * 2, size_ + wanted);
      auto grown = std::make_unique_for_overwrite<char[]>(capacity);
      if (size_ > start_) std::memcpy(grown.get(), data_.get() + start_, size_ - start_);
      size_ -= start_;
      start_ = 0;
      data_ = std::move(grown);
      capacity_ = capacity;
    }
    return data_.get() + size_;
  }
  void grew(std::size_t bytes) noexcept { size_ += bytes; }
  std::size_t available() const noexcept { return size_ - start_; }
  const char* front() const noexcept { return data_.get() + start_; }
  // Bytes still missing to complete the frame at the front (0 when it is complete).
  std::size_t missing() const noexcept {
    return frame_missing({reinterpret_cast<const std::byte*>(front()), available()});
  }
  void consume(std::size_t bytes) noexcept {
    start_ += bytes;
    if (start_ == size_) start_ = size_ = 0;
  }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0, size_ = 0, start_ = 0;
};

struct Worker {
  int slot = 0;
  pid_t pid = -1;  // -1 once reaped
  int fd = -1;     // read end of its pipe; -1 once closed
  int pidfd = -1;
  bool said_goodbye = false;
  std::vector<std::size_t> first;
  FrameBuffer buffer;
};

class ProcessesRun final : public Run {
 public:
  explicit ProcessesRun(std::shared_ptr<Job> job)
      : job_(std::move(job)),
        n_workers_(static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(job_->settings().n_workers),
                                                          std::max<std::size_t>(job_->size(), 1)))),
        shared_(n_workers_),
        host_(ErrorSite::here().host),
        results_(job_->settings().max_nbytes, job_->settings().temp_folder) {
    workers_.reserve(static_cast<std::size_t>(n_workers_));
    try {
      for (int slot = 0; slot < n_workers_; ++slot) spawn(slot, {});
    } catch (...) {
      cancel();
      throw;
    }
  }

  ~ProcessesRun() override {
    if (stopping_) {
      // A graceful stop: every worker ends its task, sends its outcome and exits.
      while (live_workers() > 0) poll_once(Clock::now() + std::chrono::seconds(1));
      cancel();
      return;
    }
    if (job_->cancelled()) {
      cancel();
      return;
    }
    // Every outcome is in: workers are flushing their output and exiting. Give them a moment,
    // then make sure none is left behind.
    const auto limit = Clock::now() + std::chrono::seconds(2);
    while (live_workers() > 0 && Clock::now() < limit) poll_once(limit);
    cancel();
  }

  void cancel() noexcept override {
    job_->cancel();
    shared_.control().cancelled.store(1, std::memory_order_relaxed);
    for (Worker& worker : workers_) {
      if (worker.pid > 0) kill(worker.pid, SIGKILL);
    }
    for (Worker& worker : workers_) {
      if (worker.pid > 0) {
        int status = 0;
        while (waitpid(worker.pid, &status, 0) < 0 && errno == EINTR) {
        }
        worker.pid = -1;
      }
      close_fds(worker);
    }
  }

  void stop() noexcept override {
    job_->cancel();
    shared_.control().cancelled.store(1, std::memory_order_relaxed);  // workers check it between tasks
    stopping_ = true;
  }

  void wait(Clock::time_point deadline) override {
    const std::size_t recorded_before = recorded_;
    while (recorded_ == recorded_before && !job_->cancelled()) {
      // A graceful stop: workers end their task and start no other (the caller then drains).
      if (job_->stopping()) shared_.control().cancelled.store(1, std::memory_order_relaxed);
      if (live_workers() == 0) {
        if (!respawn_for_pending()) return;
        continue;
      }
      const auto now = Clock::now();
      if (now >= deadline) return;
      poll_once(deadline);
      if (job_->settings().timeout) enforce_timeout();
    }
  }

 private:
  int live_workers() const noexcept {
    return static_cast<int>(std::count_if(workers_.begin(), workers_.end(), [](const Worker& w) { return w.pid > 0; }));
  }

  void spawn(int slot, std::vector<std::size_t> first) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
      throw Error(
          fmt::format("processes backend: cannot create a pipe for a worker: {} (too many open files? "
                      "raise `ulimit -n` or lower n_jobs)",
                      std::strerror(errno)));
    }
    fcntl(pipe_fds[0], F_SETPIPE_SZ, 1 << 20);  // fewer, larger reads for big results; best effort
    SharedSlot& shared_slot = shared_.slot(slot);
    shared_slot.index.store(-1);
    shared_slot.chunk_begin.store(0);
    shared_slot.chunk_end.store(0);

    WorkerArgs args{job_.get(),   &shared_.control(),
                    &shared_slot, pipe_fds[1],
                    getpid(),     first,
                    n_workers_,   std::max(1, job_->settings().cpu_budget / n_workers_),
                    &results_};
    // Buffered output would otherwise be written twice: once by us, once by the child.
    std::cout.flush();
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      const int error = errno;
      ::close(pipe_fds[0]);
      ::close(pipe_fds[1]);
      throw Error(
          fmt::format("processes backend: fork failed: {} (out of memory or process limit? lower n_jobs "
                      "or use backend \"threads\")",
                      std::strerror(error)));
    }
    if (pid == 0) {
      ::close(pipe_fds[0]);
      for (const Worker& other : workers_) {
        if (other.fd >= 0) ::close(other.fd);
        if (other.pidfd >= 0) ::close(other.pidfd);
      }
      worker_main(args);
    }
    ::close(pipe_fds[1]);
    fcntl(pipe_fds[0], F_SETFL, fcntl(pipe_fds[0], F_GETFL) | O_NONBLOCK);

    Worker* worker = nullptr;
    for (Worker& existing : workers_) {
      if (existing.slot == slot) worker = &existing;
    }
    if (worker == nullptr) worker = &workers_.emplace_back();
    *worker = Worker{};
    worker->slot = slot;
    worker->pid = pid;
    worker->fd = pipe_fds[0];
    worker->pidfd = open_pidfd(pid);
    worker->first = std::move(first);
  }

  // One poll over every worker's pipe and pidfd, then whatever it reported.
  void poll_once(Clock::time_point deadline) {
    struct Owner {
      Worker* worker;
      pid_t pid;  // a worker replaced meanwhile (respawned in its slot) is skipped
      bool is_pidfd;
    };
    std::vector<pollfd> fds;
    std::vector<Owner> owners;
    bool polling_for_exit = false;
    for (Worker& worker : workers_) {
      if (worker.pid <= 0) continue;
      if (worker.fd >= 0) {
        fds.push_back({worker.fd, POLLIN, 0});
        owners.push_back({&worker, worker.pid, false});
      }
      if (worker.pidfd >= 0) {
        fds.push_back({worker.pidfd, POLLIN, 0});
        owners.push_back({&worker, worker.pid, true});
      } else {
        polling_for_exit = true;
      }
    }
    auto wake = deadline;
    if (auto timeout = job_->settings().timeout) wake = std::min(wake, next_expiry());
    auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(wake - Clock::now()).count();
    if (polling_for_exit) wait_ms = std::min<decltype(wait_ms)>(wait_ms, 20);
    const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<decltype(wait_ms)>(wait_ms, 0)));
    if (ready < 0 && errno != EINTR) {
      throw Error(fmt::format("processes backend: poll failed: {}", std::strerror(errno)));
    }
    for (std::size_t i = 0; ready > 0 && i < fds.size(); ++i) {
      if (fds[i].revents == 0 || owners[i].worker->pid != owners[i].pid) continue;
      if (owners[i].is_pidfd) {
        reap(*owners[i].worker);
      } else {
        read_frames(*owners[i].worker);
      }
    }
    if (polling_for_exit) {
      for (Worker& worker : workers_) {
        if (worker.pid > 0 && worker.pidfd < 0) {
          int status = 0;
          const pid_t done = waitpid(worker.pid, &status, WNOHANG);
          if (done == worker.pid || (done < 0 && errno == ECHILD)) exited(worker, done == worker.pid ? status : -1);
        }
      }
    }
  }

  // Reads what is in the pipe now and handles every complete frame.
  void read_frames(Worker& worker) {
    while (worker.fd >= 0) {
      const std::size_t wanted = std::max<std::size_t>(worker.buffer.missing(), 256 * 1024);
      char* space = worker.buffer.space(wanted);
      const ssize_t got = ::read(worker.fd, space, wanted);
      if (got < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        close_fd(worker.fd);
        break;
      }
      if (got == 0) {
        close_fd(worker.fd);
        break;
      }
      worker.buffer.grew(static_cast<std::size_t>(got));
      handle_frames(worker);
    }
  }

  void handle_frames(Worker& worker) {
    while (worker.buffer.available() >= sizeof(FrameHeader)) {
      FrameHeader header;
      std::memcpy(&header, worker.buffer.front(), sizeof header);
      if (header.index == kGoodbye) {
        worker.said_goodbye = true;
        worker.buffer.consume(sizeof header);
        continue;
      }
      if (header.index >= job_->size() || header.length > kMaxFrameBytes) {
        // Only our own frames travel on this pipe; anything else means the task corrupted
        // the worker's memory. Stop trusting it.
        log().error("worker process {} sent a malformed frame (task {} of {}, {} bytes); killing it", worker.pid,
                    header.index, job_->size(), header.length);
        kill(worker.pid, SIGKILL);
        close_fd(worker.fd);
        return;
      }
      if (worker.buffer.missing() > 0) return;
      const auto* payload = reinterpret_cast<const std::byte*>(worker.buffer.front() + sizeof header);
      ErrorSite site{header.index, process_rank(), host_, static_cast<long>(worker.pid)};
      std::optional<ResultReader> result_files;  // maps the arrays the worker wrote to files
      if (results_.enabled()) result_files.emplace(results_, std::span<const std::byte>(payload, header.length));
      job_->complete_encoded(header.index, {payload, header.length}, site);
      ++recorded_;
      deaths_without_progress_ = 0;
      worker.buffer.consume(sizeof header + header.length);
    }
  }

  void reap(Worker& worker) {
    read_frames(worker);  // whatever it wrote before exiting is still in the pipe
    int status = 0;
    pid_t done;
    while ((done = waitpid(worker.pid, &status, 0)) < 0 && errno == EINTR) {
    }
    exited(worker, done == worker.pid ? status : -1);
  }

  // A worker is gone (status -1: unknown, e.g. SIGCHLD ignored by the program).
  void exited(Worker& worker, int status) {
    read_frames(worker);
    const pid_t pid = worker.pid;
    worker.pid = -1;
    close_fds(worker);
    const bool clean = worker.said_goodbye && (status == -1 || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    if (clean || job_->cancelled()) return;

    SharedSlot& slot = shared_.slot(worker.slot);
    const std::int64_t culprit = slot.index.load(std::memory_order_acquire);
    int signal = 0, code = -1;
    std::string how;
    if (status == -1) {
      how = "ended with an unknown status (is SIGCHLD ignored in this program?)";
    } else if (WIFSIGNALED(status)) {
      signal = WTERMSIG(status);
      how = fmt::format("was killed by {}", signal_name(signal));
      if (signal == SIGKILL) {
        how +=
            " (sent by the task, the kernel's out-of-memory killer or an administrator: check the memory limit "
            "and dmesg)";
      }
      if (signal == SIGSEGV || signal == SIGBUS) how += " (a memory error in the task)";
    } else {
      code = WEXITSTATUS(status);
      how = fmt::format("exited with status {} (exit() or quick_exit() called inside a task?)", code);
    }
    if (culprit >= 0) {
      const auto task = static_cast<std::size_t>(culprit);
      ErrorSite site{task, process_rank(), host_, static_cast<long>(pid)};
      job_->complete_failed(
          task, std::make_exception_ptr(WorkerDiedError(
                    fmt::format("worker process {} {} while running task {}", pid, how, task), signal, code, site)));
      if (!job_->settings().keep_going) return;  // the call fails; nothing more to run
      // The task it ran has its outcome (this death, or the timeout that killed it): that is
      // progress, however many workers die this way. Only deaths outside any task, which
      // finish nothing, can repeat without end.
      deaths_without_progress_ = 0;
    } else {
      log().warn("worker process {} {} between tasks; its unfinished tasks go to a new worker", pid, how);
      ++deaths_without_progress_;
    }
    if (deaths_without_progress_ > 2 * n_workers_ + 4) {
      fail_pending(fmt::format("worker processes keep dying before finishing any task (the last {})", how));
      return;
    }
    // Tasks the dead worker had claimed but not reported go to a new worker in its slot.
    std::vector<std::size_t> left;
    for (std::size_t index : worker.first) {
      if (!job_->finished(index)) left.push_back(index);
    }
    for (auto index = slot.chunk_begin.load(); index < slot.chunk_end.load(); ++index) {
      if (!job_->finished(index) && static_cast<std::int64_t>(index) != culprit) left.push_back(index);
    }
    // Unclaimed tasks need no new worker while others live (wait() covers the last one).
    if (!left.empty()) spawn(worker.slot, std::move(left));
  }

  // Every worker is gone but tasks are unfinished (a worker died between claiming and
  // recording its claim): give them to a new worker. Returns whether one was started.
  bool respawn_for_pending() {
    std::vector<std::size_t> pending;
    for (std::size_t index = 0; index < job_->size(); ++index) {
      if (!job_->finished(index)) pending.push_back(index);
    }
    if (pending.empty() || job_->cancelled()) return false;
    // Let the counter say "nothing left" so only the listed tasks run.
    shared_.control().next.store(job_->size());
    spawn(workers_.front().slot, std::move(pending));
    return true;
  }

  void fail_pending(const std::string& why) {
    for (std::size_t index = 0; index < job_->size(); ++index) {
      if (job_->finished(index)) continue;
      if (job_->complete_failed(index, std::make_exception_ptr(WorkerDiedError(why, 0, -1, ErrorSite::here(index))))) {
        ++recorded_;
      }
    }
  }

  Clock::time_point next_expiry() const {
    const auto timeout = *job_->settings().timeout;
    auto earliest = Clock::now() + timeout;
    for (const Worker& worker : workers_) {
      if (worker.pid <= 0) continue;
      SharedSlot& slot = const_cast<SharedMemory&>(shared_).slot(worker.slot);
      if (slot.index.load(std::memory_order_acquire) < 0) continue;
      earliest = std::min(earliest, Clock::time_point(Clock::duration(slot.started_ns.load())) + timeout);
    }
    return earliest + std::chrono::milliseconds(1);
  }

  void enforce_timeout() {
    const auto timeout = *job_->settings().timeout;
    const auto now_ns = Clock::now().time_since_epoch().count();
    for (Worker& worker : workers_) {
      if (worker.pid <= 0) continue;
      SharedSlot& slot = shared_.slot(worker.slot);
      const auto index = slot.index.load(std::memory_order_acquire);
      if (index < 0) continue;
      const auto started = slot.started_ns.load(std::memory_order_relaxed);
      if (slot.index.load(std::memory_order_acquire) != index || now_ns - started <= timeout.count()) continue;
      const auto task = static_cast<std::size_t>(index);
      ErrorSite site{task, process_rank(), host_, static_cast<long>(worker.pid)};
      auto error = std::make_exception_ptr(
          TimeoutError(fmt::format("task {} ran past the timeout of {:.3g} s; its worker process {} was killed", task,
                                   std::chrono::duration<double>(timeout).count(), worker.pid),
                       site));
      if (job_->complete_failed(task, error)) {
        ++recorded_;
        kill(worker.pid, SIGKILL);  // reaped by the next poll; its other claimed tasks go to a new worker
      }
    }
  }

  static void close_fd(int& fd) noexcept {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  static void close_fds(Worker& worker) noexcept {
    close_fd(worker.fd);
    close_fd(worker.pidfd);
  }

  std::shared_ptr<Job> job_;
  int n_workers_;
  SharedMemory shared_;
  std::string host_;
  ResultFolder results_;  // removed, with the files workers wrote, when the call ends
  std::vector<Worker> workers_;
  std::size_t recorded_ = 0;
  int deaths_without_progress_ = 0;
  bool stopping_ = false;
};

class ProcessesBackend final : public Backend {
 public:
  bool sequential_when_one_worker() const noexcept override { return true; }
  bool shares_memory() const noexcept override { return false; }
  bool needs_all_tasks() const noexcept override { return true; }
  std::unique_ptr<Run> start(std::shared_ptr<Job> job) override {
    if (!job->results_encodable()) {
      throw ConfigError("backend 'processes' sends results between processes, but the result type " +
                        job->result_type_name() +
                        " cannot be encoded: give it a cereal serialize() function (and include the "
                        "cereal/types header of each standard type it uses), or use backend \"threads\"");
    }
    if (job->size() == 0) throw std::logic_error("processes backend: started with no tasks");
    return std::make_unique<ProcessesRun>(std::move(job));
  }
};

}  // namespace

std::unique_ptr<Backend> make_processes_backend() { return std::make_unique<ProcessesBackend>(); }

}  // namespace joblet::detail
