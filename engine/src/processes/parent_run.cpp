// processes: the parent's side of a call, and the backend. Workers are forked when the call
// starts (child_setup.cpp) and run worker_loop.cpp; the parent reads their frames, records
// outcomes, reaps and replaces dead workers, and kills a worker past the timeout.
//
// processes: workers forked when the call starts. They inherit every task (closures and
// inputs, copy-on-write), claim indices from a counter in shared memory, and send back only
// encoded outcomes, in frames over one pipe each.
//
// A dead worker is seen through its pidfd (or waitpid polling where pidfds are missing) and
// reported with the task it was running; a worker past the timeout is killed. No worker
// outlives the call: every one is reaped, and they die with the parent (PR_SET_PDEATHSIG).
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <ranges>
#include <set>
#include <string>

#include "../backends.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/result_files.hpp"
#include "shared_state.hpp"

namespace joblet::detail {
namespace {

using Clock = Job::Clock;

std::string signal_name(int signal) {
  const char* abbreviation = sigabbrev_np(signal);
  return abbreviation ? fmt::format("SIG{}", abbreviation) : fmt::format("signal {}", signal);
}

// Bytes read from one worker, parsed into frames as they complete. Not a std::string: large
// results would be zero-filled before being overwritten.
class FrameBuffer {
 public:
  char* space(std::size_t wanted) {
    if (capacity_ - size_ < wanted) {
      const std::size_t pending = size_ - start_;
      if (capacity_ - pending >= wanted) {
        // Room once the frames handled are dropped: the buffer (and its warm pages) is reused,
        // instead of doubling whenever a read ends inside a frame.
        std::memmove(data_.get(), data_.get() + start_, pending);
      } else {
        const std::size_t capacity = std::max(capacity_ * 2, pending + wanted);
        auto grown = std::make_unique_for_overwrite<char[]>(capacity);
        if (pending > 0) std::memcpy(grown.get(), data_.get() + start_, pending);
        data_ = std::move(grown);
        capacity_ = capacity;
      }
      size_ = pending;
      start_ = 0;
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
  ErrorSite site;  // where its tasks fail: this host, its pid, the task of each frame
};

class ProcessesRun final : public Run {
 public:
  explicit ProcessesRun(std::shared_ptr<Job> job)
      : job_(std::move(job)),
        n_workers_(static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(job_->settings().n_workers),
                                                          std::max<std::size_t>(job_->size(), 1)))),
        shared_(n_workers_),
        host_(ErrorSite::here().host),
        results_(make_result_files({.max_nbytes = job_->settings().max_nbytes,
                                    .root = job_->settings().temp_folder,
                                    .shared_path = {},
                                    .remove_when_done = true})),
        watchdog_(job_->settings().timeout) {
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
      enforce_timeout();
    }
  }

 private:
  int live_workers() const noexcept {
    return static_cast<int>(std::count_if(workers_.begin(), workers_.end(), [](const Worker& w) { return w.pid > 0; }));
  }

  // The slots of the workers alive now, for the watchdog.
  auto live_slots() {
    return workers_ | std::views::filter([](const Worker& worker) { return worker.pid > 0; }) |
           std::views::transform([this](const Worker& worker) -> SharedSlot& { return shared_.slot(worker.slot); });
  }

  void spawn(int slot, std::vector<std::size_t> first) {
    SharedSlot& shared_slot = shared_.slot(slot);
    shared_slot.index.store(-1);
    shared_slot.abandoned.store(-1);
    shared_slot.chunk_begin.store(0);
    shared_slot.chunk_end.store(0);
    std::vector<int> inherited_fds;
    for (const Worker& other : workers_) {
      for (int fd : {other.fd, other.pidfd}) {
        if (fd >= 0) inherited_fds.push_back(fd);
      }
    }
    const ForkedWorker forked = fork_worker(WorkerArgs{.job = job_.get(),
                                                       .control = &shared_.control(),
                                                       .slot = &shared_slot,
                                                       .fd = -1,
                                                       .parent = -1,
                                                       .first = first,
                                                       .n_workers = n_workers_,
                                                       .budget = std::max(1, job_->settings().cpu_budget / n_workers_),
                                                       .results = results_.get()},
                                            inherited_fds);

    Worker* worker = nullptr;
    for (Worker& existing : workers_) {
      if (existing.slot == slot) worker = &existing;
    }
    if (worker == nullptr) worker = &workers_.emplace_back();
    *worker = Worker{};
    worker->slot = slot;
    worker->pid = forked.pid;
    worker->site = ErrorSite{std::nullopt, process_rank(), host_, static_cast<long>(forked.pid)};
    worker->fd = forked.fd;
    worker->pidfd = forked.pidfd;
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
    wake = std::min(wake, watchdog_.next_expiry(live_slots(), Clock::now()));
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
    Job::OutcomeRun recorded(*job_);
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
        break;
      }
      if (worker.buffer.missing() > 0) break;
      const auto* payload = reinterpret_cast<const std::byte*>(worker.buffer.front() + sizeof header);
      worker.site.task_index = header.index;
      // Maps the arrays the worker wrote to files.
      const auto outcome = job_->record_encoded(header.index, {payload, header.length}, worker.site,
                                                results_ ? &results_->reader() : nullptr);
      if (outcome != Job::TaskRun::not_recorded) recorded.add(header.index, outcome == Job::TaskRun::failed);
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
    bool run_again = false;  // the task it ran, in a fresh worker (Config::retries)
    if (culprit >= 0) {
      const auto task = static_cast<std::size_t>(culprit);
      run_again = timed_out_to_retry_.erase(task) > 0;
      if (!run_again) {
        ErrorSite site{task, process_rank(), host_, static_cast<long>(pid)};
        const auto error = std::make_exception_ptr(WorkerDiedError(
            fmt::format("worker process {} {} while running task {}", pid, how, task), signal, code, site));
        run_again = job_->retry_attempt(task, error);
        if (!run_again) {
          job_->complete_failed(task, job_->final_error(task, error));
          if (!job_->settings().keep_going) return;  // the call fails; nothing more to run
        }
      }
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
    if (run_again && !job_->finished(static_cast<std::size_t>(culprit)))
      left.push_back(static_cast<std::size_t>(culprit));
    for (std::size_t index : worker.first) {
      if (!job_->finished(index) && static_cast<std::int64_t>(index) != culprit) left.push_back(index);
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

  // A worker past the timeout is killed (reaped by the next poll); the other tasks it claimed go
  // to a new worker.
  void enforce_timeout() {
    watchdog_.check(live_slots(), [&](WatchedSlot& slot, std::size_t task) {
      const auto worker = std::find_if(workers_.begin(), workers_.end(),
                                       [&](const Worker& w) { return w.pid > 0 && &shared_.slot(w.slot) == &slot; });
      ErrorSite site{task, process_rank(), host_, static_cast<long>(worker->pid)};
      auto error = std::make_exception_ptr(
          TimeoutError(watchdog_.describe(task, fmt::format("its worker process {} was killed", worker->pid)), site));
      if (job_->retry_attempt(task, error)) {
        timed_out_to_retry_.insert(task);  // its worker's death then starts it again
      } else {
        if (!job_->complete_failed(task, job_->final_error(task, error))) return false;
        ++recorded_;
      }
      kill(worker->pid, SIGKILL);
      return true;
    });
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
  std::unique_ptr<ResultFiles> results_;  // removed, with the files workers wrote, when the call ends
  TaskWatchdog watchdog_;
  std::vector<Worker> workers_;
  std::size_t recorded_ = 0;
  int deaths_without_progress_ = 0;
  std::set<std::size_t> timed_out_to_retry_;  // killed for a timeout, to run again (Config::retries)
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
                        " cannot be encoded: give it and every class it holds a cereal serialize() function (and "
                        "include the cereal/types header of any standard container the codec does not know), or use "
                        "backend \"threads\"");
    }
    if (job->size() == 0) throw std::logic_error("processes backend: started with no tasks");
    return std::make_unique<ProcessesRun>(std::move(job));
  }
};

}  // namespace

std::unique_ptr<Backend> make_processes_backend() { return std::make_unique<ProcessesBackend>(); }

}  // namespace joblet::detail
