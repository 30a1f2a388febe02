#include "io.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "joblet/detail/env.hpp"
#include "joblet/detail/runtime.hpp"

namespace joblet::detail {
namespace {

std::mutex g_injector_mutex;
std::shared_ptr<std::function<int(IoStep)>> g_injector;
std::atomic<bool> g_injector_set{false};

std::string read_host_name() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof buffer - 1) != 0) return "host";
  std::string name;
  for (const char* c = buffer; *c != '\0' && name.size() < 64; ++c) {
    const bool safe = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-';
    name += safe ? *c : '_';
  }
  return name.empty() ? std::string("host") : name;
}

std::uint64_t random_64() {
  // Seeded per thread from the OS; after a fork the child shares the parent's sequence, but the
  // pid in every temporary name keeps the names apart.
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine();
}

}  // namespace

void set_io_fault_injector(std::function<int(IoStep)> injector) {
  std::lock_guard lock(g_injector_mutex);
  g_injector = injector ? std::make_shared<std::function<int(IoStep)>>(std::move(injector)) : nullptr;
  g_injector_set.store(g_injector != nullptr, std::memory_order_release);
}

int injected_fault(IoStep step) {
  if (!g_injector_set.load(std::memory_order_acquire)) return 0;
  std::shared_ptr<std::function<int(IoStep)>> injector;
  {
    std::lock_guard lock(g_injector_mutex);
    injector = g_injector;
  }
  return injector ? (*injector)(step) : 0;
}

bool fault_injection_active() noexcept { return g_injector_set.load(std::memory_order_acquire); }

const std::string& host_name_for_files() {
  static const std::string name = read_host_name();
  return name;
}

const std::string& job_name_for_files() {
  static const std::string name = [] {
    const auto safe = [](const char* variable) {
      const auto value = env_string(variable);
      if (!value || value->size() > 32) return std::string();
      const bool digits = std::all_of(value->begin(), value->end(), [](char c) { return c >= '0' && c <= '9'; });
      return digits ? *value : std::string();
    };
    const std::string array = safe("SLURM_ARRAY_JOB_ID");
    const std::string element = safe("SLURM_ARRAY_TASK_ID");
    if (!array.empty() && !element.empty()) return array + "_" + element;
    return safe("SLURM_JOB_ID");
  }();
  return name;
}

int publish_file_at(int directory, const std::string& name, std::string_view bytes) {
  const std::string temporary = temporary_name(name);
  const std::span<const std::byte> part(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  int failure = 0;
  const int fd = ::openat(directory, temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) return errno;
  failure = write_all(fd, {&part, 1});
  if (::close(fd) != 0 && failure == 0) failure = errno;
  if (failure == 0 && ::renameat(directory, temporary.c_str(), directory, name.c_str()) != 0) failure = errno;
  if (failure != 0) ::unlinkat(directory, temporary.c_str(), 0);
  return failure;
}

std::string temporary_name(std::string_view stem) {
  char suffix[96];
  std::snprintf(suffix, sizeof suffix, ".%ld.%zx.%016llx.tmp", static_cast<long>(process_id()),
                std::hash<std::thread::id>{}(std::this_thread::get_id()), static_cast<unsigned long long>(random_64()));
  std::string name = ".";
  name += stem;
  name += '.';
  name += host_name_for_files();
  name += suffix;
  return name;
}

std::string describe_write_errno(int error) {
  std::string text = std::strerror(error);
  switch (error) {
    case ENOSPC:
    case EDQUOT:
      return text +
             "; free space (or raise the quota), give the cache a bytes_limit, or prune it with "
             "`joblet cache prune --max-size`";
    case EROFS:
      return text + "; the filesystem is read-only: point Memory at a writable directory";
    case EACCES:
    case EPERM:
      return text +
             "; give this user write permission on the cache directory (for a cache shared by a "
             "group, create it with group_shared)";
    case ENOTDIR:
    case EEXIST:
      return text + "; something that is not a directory is in the way: point Memory at a directory";
    default:
      return text;
  }
}

int make_directories(const std::filesystem::path& directory, bool group_shared) {
  struct stat info {};
  if (stat(directory.c_str(), &info) == 0) return S_ISDIR(info.st_mode) ? 0 : ENOTDIR;
  if (directory.has_parent_path() && directory.parent_path() != directory) {
    if (const int error = make_directories(directory.parent_path(), group_shared); error != 0) return error;
  }
  if (const int error = injected_fault(IoStep::create_directory); error != 0) return error;
  if (mkdir(directory.c_str(), 0777) != 0) {
    // Another process created it first: fine, as long as it is a directory.
    if (errno == EEXIST) return stat(directory.c_str(), &info) == 0 && S_ISDIR(info.st_mode) ? 0 : ENOTDIR;
    return errno;
  }
  if (group_shared && stat(directory.c_str(), &info) == 0) {
    // setgid: files created below belong to the directory's group, so the whole group can share.
    chmod(directory.c_str(), (info.st_mode & 07777) | S_ISGID | S_IRWXG);
  }
  return 0;
}

int write_all(int fd, std::span<const std::span<const std::byte>> parts) {
  std::vector<iovec> vectors;
  vectors.reserve(parts.size());
  for (const auto& part : parts) {
    if (!part.empty()) vectors.push_back({const_cast<std::byte*>(part.data()), part.size()});
  }
  std::size_t first = 0;
  while (first < vectors.size()) {
    const int count = static_cast<int>(std::min<std::size_t>(vectors.size() - first, IOV_MAX));
    const ssize_t written = writev(fd, vectors.data() + first, count);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    auto left = static_cast<std::size_t>(written);
    while (first < vectors.size() && left >= vectors[first].iov_len) left -= vectors[first++].iov_len;
    if (first < vectors.size()) {
      vectors[first].iov_base = static_cast<char*>(vectors[first].iov_base) + left;
      vectors[first].iov_len -= left;
    }
  }
  return 0;
}

int read_fully_at(int fd, void* data, std::size_t size, std::uint64_t offset) {
  auto* at = static_cast<std::byte*>(data);
  while (size > 0) {
    const ssize_t got = ::pread(fd, at, size, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (got == 0) return ENODATA;  // the file shrank under us
    at += got;
    size -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
  return 0;
}

bool process_alive(long pid) {
  if (pid <= 0) return true;  // unknown: assume alive, the heartbeat decides
  return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace joblet::detail
