#include "beneath.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "io.hpp"

namespace joblet::detail {
namespace {

// What a file may hold beyond its allocated blocks before holds_less_than_it_claims() says so:
// the tail of a block, and more than enough for filesystems that round differently.
constexpr std::uint64_t kUnallocatedSlack = std::uint64_t{1} << 20;

std::atomic<bool> g_no_openat2{false};

bool valid_component(std::string_view part) { return !part.empty() && part != "." && part != ".."; }

// The walk for kernels without openat2: one openat(O_NOFOLLOW) per component.
int walk_beneath(int directory, std::string_view relative, int flags, mode_t mode) {
  FileDescriptor holder;
  int current = directory;
  for (;;) {
    const std::size_t slash = relative.find('/');
    const std::string part(relative.substr(0, slash));
    if (!valid_component(part)) {
      errno = EINVAL;
      return -1;
    }
    if (slash == std::string_view::npos) {
      const int fd = ::openat(current, part.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
      return fd;
    }
    const int next = ::openat(current, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      // O_NOFOLLOW | O_DIRECTORY on a link may say ENOTDIR: call a link a link.
      struct stat info {};
      if (errno == ENOTDIR && ::fstatat(current, part.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISLNK(info.st_mode)) {
        errno = ELOOP;
      }
      return -1;
    }
    holder = FileDescriptor(next);
    current = next;
    relative.remove_prefix(slash + 1);
  }
}

}  // namespace

int FileDescriptor::close_checked() noexcept {
  const int fd = std::exchange(fd_, -1);
  return fd >= 0 && ::close(fd) != 0 ? errno : 0;
}

void FileDescriptor::reset() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int open_beneath(int directory, std::string_view relative, int flags, mode_t mode) {
  if (relative.empty() || relative.front() == '/') {
    errno = EINVAL;
    return -1;
  }
  if (!g_no_openat2.load(std::memory_order_relaxed)) {
    // The kernel wants a NUL-terminated name: an entry's fits on the stack, a longer one is copied.
    char short_name[128];
    std::string long_name;
    const char* path = short_name;
    if (relative.size() < sizeof short_name) {
      std::memcpy(short_name, relative.data(), relative.size());
      short_name[relative.size()] = '\0';
    } else {
      long_name.assign(relative);
      path = long_name.c_str();
    }
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
    how.mode = (flags & O_CREAT) != 0 ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
    const long fd = ::syscall(SYS_openat2, directory, path, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    // EXDEV: the path leaves the directory (a ".." the caller let through); ELOOP: a link.
    if (errno == EXDEV) errno = ELOOP;
    if (errno != ENOSYS && errno != EPERM && errno != E2BIG) return -1;
    // No openat2 (an old kernel), or a seccomp filter that refuses it (older container
    // runtimes answer EPERM): walk instead, and stop asking after ENOSYS.
    if (errno == ENOSYS) g_no_openat2.store(true, std::memory_order_relaxed);
  }
  return walk_beneath(directory, relative, flags, mode);
}

std::optional<std::string> descriptor_name(int fd) {
  static const bool proc = ::access("/proc/self/fd", X_OK) == 0;
  if (!proc || fd < 0) return std::nullopt;
  return "/proc/self/fd/" + std::to_string(fd);
}

std::string unusable_file(const struct stat& info) {
  if (S_ISDIR(info.st_mode)) return "it is a directory, not a file joblet wrote; remove it";
  if (S_ISFIFO(info.st_mode)) return "it is a FIFO (named pipe), not a file joblet wrote; remove it";
  if (S_ISLNK(info.st_mode)) return "it is a symbolic link, which the cache never follows; remove it";
  if (!S_ISREG(info.st_mode)) return "it is a device or socket, not a file joblet wrote; remove it";
  if (info.st_nlink > 1) {
    return "it has " + std::to_string(info.st_nlink) +
           " hard links: a cache file must be a file of its own (a hard link shares it with a file elsewhere, "
           "which using it would change); remove it";
  }
  return {};
}

bool holds_less_than_it_claims(const struct stat& info) {
  const auto size = static_cast<std::uint64_t>(info.st_size);
  const auto allocated = static_cast<std::uint64_t>(info.st_blocks) * 512;
  return size > allocated + kUnallocatedSlack;
}

CacheRoot::~CacheRoot() {
  const int fd = fd_.load();
  if (fd >= 0) ::close(fd);
  for (int old : retired_) ::close(old);
}

int CacheRoot::descriptor(bool create, bool group_shared) const {
  const int fd = fd_.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  std::lock_guard lock(mutex_);
  if (const int opened = fd_.load(std::memory_order_relaxed); opened >= 0) return opened;
  if (create) {
    if (const int error = make_directories(path_, group_shared); error != 0) {
      errno = error;
      return -1;
    }
  }
  const int opened = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (opened < 0) return -1;
  fd_.store(opened, std::memory_order_release);
  return opened;
}

bool CacheRoot::reopen_if_replaced() const {
  std::lock_guard lock(mutex_);
  const int fd = fd_.load(std::memory_order_relaxed);
  if (fd < 0) return true;
  struct stat opened {
  }, now{};
  if (::fstat(fd, &opened) != 0) return false;
  const bool same = ::stat(path_.c_str(), &now) == 0 && now.st_dev == opened.st_dev && now.st_ino == opened.st_ino;
  if (same) return false;
  retired_.push_back(fd);
  fd_.store(-1, std::memory_order_release);
  return true;
}

FileDescriptor CacheRoot::open_directory(std::string_view relative, bool create, bool group_shared) const {
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int root = descriptor(create, group_shared);
    if (root < 0) return FileDescriptor();
    FileDescriptor found(open_beneath(root, relative, O_RDONLY | O_DIRECTORY));
    if (found) return found;
    if (errno != ENOENT) return FileDescriptor();
    if (!create) {
      if (reopen_if_replaced()) continue;
      errno = ENOENT;
      return FileDescriptor();
    }
    // Make what is missing, one directory at a time, each beneath the one before.
    FileDescriptor current;
    int at = root;
    std::string_view rest = relative;
    bool lost_root = false;
    while (!rest.empty()) {
      const std::size_t slash = rest.find('/');
      const std::string part(rest.substr(0, slash));
      rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
      if (const int error = injected_fault(IoStep::create_directory); error != 0) {
        errno = error;
        return FileDescriptor();
      }
      const bool made = ::mkdirat(at, part.c_str(), 0777) == 0;
      if (!made && errno != EEXIST) {
        if (errno == ENOENT) {
          lost_root = true;  // the directory we are in was removed meanwhile
          break;
        }
        return FileDescriptor();
      }
      FileDescriptor next(open_beneath(at, part, O_RDONLY | O_DIRECTORY));
      if (!next) {
        if (errno == ENOENT) {
          lost_root = true;
          break;
        }
        return FileDescriptor();
      }
      if (made && group_shared) {
        // setgid: files created below belong to the directory's group, so the whole group can share.
        struct stat info {};
        if (::fstat(next.get(), &info) == 0) ::fchmod(next.get(), (info.st_mode & 07777) | S_ISGID | S_IRWXG);
      }
      current = std::move(next);
      at = current.get();
    }
    if (!lost_root) return current;
    reopen_if_replaced();
  }
  errno = ENOENT;
  return FileDescriptor();
}

std::string CacheRoot::shown(std::string_view relative) const {
  return relative.empty() ? path_ : path_ + "/" + std::string(relative);
}

std::string CacheRoot::describe_obstacle(std::string_view relative, bool names_file) const {
  const int root = descriptor(false, false);
  if (root < 0) return "'" + path_ + "' cannot be opened: " + std::strerror(errno);
  std::string walked;
  while (!relative.empty()) {
    const std::size_t slash = relative.find('/');
    const std::string part(relative.substr(0, slash));
    walked += walked.empty() ? part : "/" + part;
    relative = slash == std::string_view::npos ? std::string_view{} : relative.substr(slash + 1);
    struct stat info {};
    if (::fstatat(root, walked.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) break;
    const bool last = relative.empty();
    if (S_ISLNK(info.st_mode)) {
      return "'" + shown(walked) +
             "' is a symbolic link: the cache follows no link below its root, so that nothing is read or written "
             "outside it; remove the link (joblet makes its own directories)";
    }
    if ((!last || !names_file) && !S_ISDIR(info.st_mode)) {
      return "'" + shown(walked) +
             "' is a file where the cache keeps a directory: remove it (joblet makes the directory again)";
    }
  }
  return "'" + shown(walked) + "' is not what the cache put there: remove it";
}

bool temporary_of_dead_process(std::string_view name) {
  // ".<stem>.<host>.<pid>.<thread>.<random>.tmp": the last fields hold no dots (hosts are reduced
  // to letters, digits, '-' and '_' for file names).
  if (name.size() < 6 || name.front() != '.' || !name.ends_with(".tmp")) return false;
  name.remove_suffix(4);
  std::string_view fields[4];
  for (auto& field : fields) {
    const std::size_t dot = name.rfind('.');
    if (dot == std::string_view::npos || dot == 0) return false;
    field = name.substr(dot + 1);
    name = name.substr(0, dot);
  }
  return dead_process_of_this_host(fields[3], pid_from_text(fields[2]));
}

long pid_from_text(std::string_view text) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string_view::npos) return 0;
  return std::strtol(std::string(text).c_str(), nullptr, 10);
}

bool dead_process_of_this_host(std::string_view host, long pid) {
  return host == host_name_for_files() && pid > 0 && pid != static_cast<long>(::getpid()) && !process_alive(pid);
}

}  // namespace joblet::detail
