#pragma once
// Helpers shared by the engine suites.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <joblet/error.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace joblet::testing {

inline const std::vector<std::string> kBackends = {"sequential", "threads", "processes"};
inline const std::vector<int> kNJobs = {1, 2, -1, -2};

// Redirects a file descriptor (stdout/stderr) into a temporary file while alive.
class CapturedFd {
 public:
  explicit CapturedFd(int fd) : fd_(fd) {
    std::fflush(nullptr);
    char path[] = "/tmp/joblet-capture-XXXXXX";
    file_ = mkstemp(path);
    path_ = path;
    saved_ = dup(fd_);
    dup2(file_, fd_);
  }
  ~CapturedFd() {
    restore();
    unlink(path_.c_str());
  }
  // Restores the descriptor and returns what was written to it.
  std::string text() {
    restore();
    std::ifstream in(path_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(nullptr);
    dup2(saved_, fd_);
    close(saved_);
    close(file_);
    saved_ = -1;
  }
  int fd_, file_ = -1, saved_ = -1;
  std::string path_;
};

// Children of this process that are zombies (exited, never reaped).
inline int zombie_children() {
  int zombies = 0;
  const std::string self = std::to_string(getpid());
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream stat(entry.path() / "stat");
    std::string pid, comm, state, ppid;
    if (!(stat >> pid >> comm >> state >> ppid)) continue;
    if (ppid == self && state == "Z") ++zombies;
  }
  return zombies;
}

// Whether this process has any child left (running or zombie).
inline bool has_children() {
  int status = 0;
  const pid_t pid = waitpid(-1, &status, WNOHANG);
  return !(pid < 0 && errno == ECHILD);
}

inline void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// How long a test waits for a state before it gives up: loose, only so that a broken test fails
// instead of hanging (CTest's TIMEOUT is 120 s).
inline constexpr std::chrono::seconds kPatience{60};

// Waits until `ready()` holds (polled every millisecond); false if it still does not after
// `patience`.
template <class Ready>
bool wait_until(Ready&& ready, std::chrono::milliseconds patience = kPatience) {
  const auto give_up = std::chrono::steady_clock::now() + patience;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= give_up) return ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// A T in memory shared with every process forked after it was made (MAP_SHARED | MAP_ANONYMOUS):
// worker processes of the processes backend see the caller's writes and the caller theirs.
// Made before the call that forks them. T holds lock-free atomics only.
template <class T>
class SharedMemory {
 public:
  SharedMemory() {
    void* memory = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) throw std::runtime_error("mmap of shared memory failed");
    value_ = new (memory) T();
  }
  ~SharedMemory() {
    value_->~T();
    munmap(value_, sizeof(T));
  }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  T* get() const noexcept { return value_; }
  T* operator->() const noexcept { return value_; }
  T& operator*() const noexcept { return *value_; }

 private:
  T* value_;
};

// Blocks the calling process until a signal kills it: a task of a worker process that the call
// must kill (a call that returns at all then proves it did).
[[noreturn]] inline void block_until_killed() {
  for (;;) pause();
}

// The threads backend's calling thread runs a batch itself when no worker has started 50 ms
// into the call (workers slow to be scheduled on a loaded machine). A task that waits for
// something the caller does would then wait for itself. Made in the calling thread before the
// call; every task calls task_started() first: on a worker it notes that a worker runs tasks,
// after which the caller runs no more batches; on the caller it waits for that note.
class CallerThread {
 public:
  // Whether this is the calling thread (not a thread of a forked worker process, which has the
  // same thread id in a process of its own).
  bool here() const noexcept { return std::this_thread::get_id() == id_ && getpid() == pid_; }
  void task_started() {
    if (!here()) {
      worker_started_.store(true);
    } else {
      wait_until([this] { return worker_started_.load(); });
    }
  }

 private:
  std::thread::id id_ = std::this_thread::get_id();
  pid_t pid_ = getpid();
  std::atomic<bool> worker_started_{false};
};

// A keep_going call's outcomes: every task i returned i, but task `failed`, which failed with
// an Error of type E.
template <class E, class Outcomes>
void expect_only_failed(const Outcomes& outcomes, std::size_t size, std::size_t failed) {
  ASSERT_EQ(outcomes.size(), size);
  for (std::size_t i = 0; i < size; ++i) {
    if (i == failed) {
      ASSERT_FALSE(outcomes[i].ok());
      EXPECT_THROW(outcomes[i].value(), E);
    } else {
      ASSERT_TRUE(outcomes[i].ok()) << "task " << i << ": " << outcomes[i].error_message();
      EXPECT_EQ(outcomes[i].value(), static_cast<int>(i));
    }
  }
}

// A keep_going call stopped by max_failures: every task i returned i, failed with E, or was
// never run (NotRunError). Returns how many failed with E and how many were not run.
template <class E, class Outcomes>
std::pair<std::size_t, std::size_t> count_failed_and_not_run(const Outcomes& outcomes) {
  std::size_t failed = 0;
  std::size_t not_run = 0;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (outcomes[i].ok()) {
      EXPECT_EQ(outcomes[i].value(), static_cast<int>(i));
      continue;
    }
    try {
      std::rethrow_exception(outcomes[i].error());
    } catch (const E&) {
      ++failed;
    } catch (const NotRunError&) {
      ++not_run;
    } catch (...) {
      ADD_FAILURE() << "task " << i << ": " << outcomes[i].error_message();
    }
  }
  return {failed, not_run};
}

}  // namespace joblet::testing
