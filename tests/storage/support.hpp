#pragma once
// What the storage suites share: temporary directories, captured warnings, forked children,
// and small tmpfs mounts.

#include <fcntl.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "joblet/log.hpp"

namespace joblet::testing {

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "joblet-storage-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::permissions(path_, std::filesystem::perms::all, ignored);
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Collects what joblet logs while it lives.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_)) {
    sink_->set_pattern("%l %v");
    joblet::logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = joblet::logger()->sinks();
    std::erase(sinks, sink_);
  }
  std::string text() const { return stream_.str(); }
  // Warnings logged, optionally only those containing `fragment`.
  int warnings(const std::string& fragment = "") const {
    std::istringstream lines(stream_.str());
    int count = 0;
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("warning ", 0) == 0 && line.find(fragment) != std::string::npos) ++count;
    }
    return count;
  }

 private:
  std::ostringstream stream_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

// Runs `body` in a forked child; the child's exit status is body's return value (an escaping
// exception exits 99).
inline pid_t fork_child(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    int status = 99;
    try {
      status = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", getpid(), e.what());
    } catch (...) {
    }
    std::fflush(stderr);
    _exit(status);
  }
  return pid;
}

// The child's exit code, or 128 + signal.
inline int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits until `ready()` holds (polled every millisecond); false if it still does not after
// `patience`, which is loose: only so that a broken test fails instead of hanging.
template <class Ready>
bool wait_until(Ready&& ready, std::chrono::milliseconds patience = std::chrono::seconds(60)) {
  const auto give_up = std::chrono::steady_clock::now() + patience;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= give_up) return ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Waits until `path` exists; false if it still does not after a loose minute.
inline bool wait_for_file(const std::filesystem::path& path) {
  return wait_until([&] { return std::filesystem::exists(path); });
}

// Blocks the calling process until a signal kills it (a forked child that the test kills).
[[noreturn]] inline void block_until_killed() {
  for (;;) pause();
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Sets a file's mtime to `seconds_ago` before now.
inline void age_file(const std::filesystem::path& path, double seconds_ago) {
  const auto then = std::chrono::system_clock::now() - std::chrono::duration<double>(seconds_ago);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(then.time_since_epoch()).count();
  timespec times[2];
  times[0].tv_sec = times[1].tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  times[0].tv_nsec = times[1].tv_nsec = static_cast<long>(ns % 1'000'000'000);
  utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW);
}

// A tmpfs of `size` mounted on a fresh directory, unmounted (lazily, so a busy mount cannot
// stay behind) when this goes away. ok() is false where mounting is not allowed.
class TmpfsMount {
 public:
  explicit TmpfsMount(const std::string& size, bool read_only = false) {
    if (mount("joblet-test", dir_.path().c_str(), "tmpfs", read_only ? MS_RDONLY : 0,
              ("size=" + size + ",mode=0777").c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~TmpfsMount() {
    if (mounted_) umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::filesystem::path& path() const { return dir_.path(); }
  bool remount_read_only() {
    return mount("joblet-test", dir_.path().c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr) == 0;
  }

 private:
  TempDir dir_;
  bool mounted_ = false;
  std::string error_;
};

// Resident memory of this process now (KiB).
inline long resident_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Peak resident memory `body` adds (KiB), measured in a forked child after `prepare`: the
// peak counter is reset first, so what `prepare` touched is not counted.
inline long peak_added_kib(const std::function<void()>& prepare, const std::function<void()>& body) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t child = fork_child([&] {
    close(fds[0]);
    prepare();
    std::ofstream("/proc/self/clear_refs") << "5";
    const long before = resident_kib();
    body();
    long peak = -1;
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmHWM:", 0) == 0) peak = std::stol(line.substr(6));
    }
    const long added = peak - before;
    return write(fds[1], &added, sizeof added) == sizeof added ? 0 : 1;
  });
  close(fds[1]);
  long added = -1;
  if (read(fds[0], &added, sizeof added) != sizeof added) added = -1;
  close(fds[0]);
  if (wait_child(child) != 0) return -1;
  return added;
}

// An entry as joblet wrote it before entries recorded their keys' parts (format 2, metadata
// without "joblet.key.*" fields), byte for byte: the result 1.5 of
// `memory.cache("scale", [](int x, double factor) { return x * factor; }, {.version = "1"})(3, 0.5)`,
// whose key is kPreviousJobletKey (on this ABI, as the golden keys of memory_test.cpp).
inline constexpr const char* kPreviousJobletKey = "71a8e3da8ac251dbce245146326e5f94";
inline std::string previous_joblet_entry() {
  constexpr const char* kHex =
      "4a4f424c455443450200000040000000aa00000000000000000100000000000008000000000000000000000000000000"
      "af0734eadc96407d0000000000000000db51c28adae3a871945f6e32465124ce05000000000000007363616c65010000"
      "0000000000311100000000000000696e7420332c20646f75626c6520302e350600000000000000646f75626c65be0000"
      "0000000000762f063fd925ee1808000000000000005dc08174c5d0198e0741fa079cfe226d0200000000000000040000"
      "0000000000686f73740200000000000000766d0300000000000000706964040000000000000037383437000000000000"
      "00000000000000000000000000000000000000000000f83f";
  std::string bytes;
  for (const char* at = kHex; at[0] != '\0'; at += 2) {
    bytes += static_cast<char>(std::stoi(std::string(at, 2), nullptr, 16));
  }
  return bytes;
}
// Puts that entry into the cache directory `root`, where Memory looks for it.
inline void write_previous_joblet_entry(const std::filesystem::path& root) {
  const std::string key = kPreviousJobletKey;
  const auto shard = root / "scale" / key.substr(0, 2);
  std::filesystem::create_directories(shard);
  std::ofstream(shard / key, std::ios::binary) << previous_joblet_entry();
}

// A program run through the shell: its exit status and what it printed (stdout and stderr).
struct CommandRun {
  int status = -1;
  std::string output;
};
inline CommandRun run_command(const std::string& command_line) {
  CommandRun run;
  FILE* pipe = popen((command_line + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  while (const std::size_t got = std::fread(buffer, 1, sizeof buffer, pipe)) run.output.append(buffer, got);
  const int status = pclose(pipe);
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

}  // namespace joblet::testing
