#pragma once
// Files beneath a cache's root, reached without following symbolic links.
//
// A cache is a tree that other users, jobs and accidents change while joblet works in it. A
// symbolic link planted where a function's or a shard's directory belongs would carry writes
// (entries, locks) and deletions (clear, prune) out of the cache, and a link, FIFO or hard link
// planted as a file would make a reader follow it out, hang on it, or change a file elsewhere.
// So everything below the root is reached from the root's descriptor: openat2() with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where the kernel has it (Linux 5.6 on), else a walk of
// openat(O_NOFOLLOW) per component, and files are opened O_NONBLOCK and checked to be plain,
// singly linked files before anything is read. The root itself is the user's choice: it may be,
// or pass through, a link.
//
// HDF5 opens files by name. It is given /proc/self/fd/<descriptor>/<name> for the cache's
// companion files: the kernel resolves that through the directory joblet opened, not through
// the tree as it is now.

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace joblet::detail {

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) noexcept : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { reset(); }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Closes now and reports close()'s error: NFS reports failed writes there.
  int close_checked() noexcept;
  void reset() noexcept;

 private:
  int fd_;
};

// Opens `relative` ("a/b/c": no leading '/', no empty, "." or ".." component) beneath the
// directory `directory`, following no symbolic link, not even a final one. -1 with errno on
// failure: ELOOP when a component is a link, ENOTDIR when one on the way is not a directory.
// O_CLOEXEC is always added.
int open_beneath(int directory, std::string_view relative, int flags, mode_t mode = 0);

// "/proc/self/fd/<fd>": a name for an open directory that HDF5 can build file names on, which
// the kernel resolves through the descriptor; nullopt where /proc is not mounted.
std::optional<std::string> descriptor_name(int fd);

// Why an opened file cannot be a cache file: not a regular file (a directory, a FIFO, a
// device), or linked more than once (a hard link shares its inode with a file elsewhere, which
// a hit would touch). Empty when it can.
std::string unusable_file(const struct stat& info);

// A file whose size is more than a megabyte above the bytes it has on disk (a sparse file, say
// one extended by truncate): it claims bytes it does not hold. Reading it all could cost far more time
// and memory than the file is worth, so callers verify such files piece by piece before they
// allocate for them (or refuse them). Compressing filesystems store real data in fewer blocks
// too, so this is a reason to look closer, never by itself a reason to refuse.
bool holds_less_than_it_claims(const struct stat& info);

// A cache's root directory, opened at first use and kept open: every path below it is resolved
// from this descriptor. A root that was removed (or replaced) meanwhile is noticed after a
// lookup below it fails, and opened again.
class CacheRoot {
 public:
  explicit CacheRoot(std::string path) : path_(std::move(path)) {}
  ~CacheRoot();
  CacheRoot(const CacheRoot&) = delete;
  CacheRoot& operator=(const CacheRoot&) = delete;

  const std::string& path() const noexcept { return path_; }
  // The root's descriptor, or -1 with errno (ENOENT: no cache there yet). With `create`, the
  // root and its missing parents are made first (setgid and group-writable when group_shared).
  int descriptor(bool create, bool group_shared) const;
  // After a lookup below the root failed with ENOENT: true when the root is no longer the
  // directory that was opened (removed, or made anew), so that trying again can help.
  bool reopen_if_replaced() const;
  // The directory `relative` beneath the root, opened for *at() calls and readdir. With
  // `create`, missing directories are made (with the store's permissions), each beneath the
  // last. An invalid descriptor with errno on failure (ELOOP, ENOTDIR: see open_beneath).
  FileDescriptor open_directory(std::string_view relative, bool create, bool group_shared) const;
  // After open_directory or open_beneath failed with ELOOP or ENOTDIR on `relative` (a
  // directory, or a file when `names_file`): which component is in the way and what it is, for
  // messages ("'/c/f/0a' is a symbolic link").
  std::string describe_obstacle(std::string_view relative, bool names_file = false) const;
  // `relative` as a path under the root, for messages.
  std::string shown(std::string_view relative) const;

 private:
  std::string path_;
  mutable std::mutex mutex_;
  mutable std::atomic<int> fd_{-1};
  // Descriptors of replaced roots: another thread may still be resolving a path from one, so
  // they stay open (and their numbers taken) until the store goes.
  mutable std::vector<int> retired_;
};

// Whether `pid` on `host` is a process of this host (not this one) that no longer exists.
bool dead_process_of_this_host(std::string_view host, long pid);

// A process id written in decimal, as lock and temporary file names and contents hold it; 0
// when `text` is not one.
long pid_from_text(std::string_view text);

// Whether a hidden temporary file ("." stem "." host "." pid "." thread "." random ".tmp", as
// temporary_name() makes them) was left by a process of this host that no longer exists.
bool temporary_of_dead_process(std::string_view name);

}  // namespace joblet::detail
