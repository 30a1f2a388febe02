#pragma once
// Helpers shared by the engine suites.

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
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
  ~CapturedFd() { restore(); }
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

}  // namespace joblet::testing
