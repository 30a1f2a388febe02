// The compute-once lock: "<entry>.lock", next to the entry it guards.
//
// Why this design, on NFS and Lustre:
// - Creation is link(unique temporary, lock): link is atomic on every NFS version and on Lustre,
//   and the lock appears with its content (host, pid, token) already written. A lost NFS reply
//   to a link that did succeed is detected by the temporary's link count (2), the classic
//   remedy. flock/fcntl locks are never used: NFS and Lustre implement them partially or not at
//   all (and a lock held by a dead client can outlive it).
// - The holder proves it is alive by a heartbeat: a thread refreshes the lock's mtime (one thread
//   for every lock of the process, lock_heartbeat.cpp).
// - A waiter judges staleness by watching the lock: if its identity (device, inode) and mtime
//   have not changed for stale_after, measured on the waiter's own monotonic clock, the holder
//   is gone. Comparing the mtime with the waiter's clock instead would break under clock skew
//   between hosts. Opening the lock to look at it also defeats NFS's attribute cache
//   (close-to-open consistency). On the holder's own host, a dead pid is recognised at once.
// - Taking over a stale lock: rename it to a unique name, then check that what was renamed is
//   the inode judged stale. If two waiters take over at once, the second one's rename may grab
//   the lock the first one just created; it then sees a different inode and puts it back with
//   link() (which cannot overwrite a third lock). The lock is an optimisation, never a
//   correctness condition: entries are published atomically whoever computes them, so the
//   rare race where two processes both compute costs time, not a wrong result.
// - Everything happens through the shard directory's descriptor, opened beneath the cache root
//   without following links (beneath.hpp). Something that is not a plain file where the lock
//   belongs (a symbolic link, a FIFO, a directory) was not made by joblet: it is taken over at
//   once, never followed, read or waited on.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <thread>

#include "beneath.hpp"
#include "io.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/error.hpp"
#include "joblet/store.hpp"
#include "lock_heartbeat.hpp"
#include "store_internal.hpp"

namespace joblet {

using detail::FileDescriptor;

struct EntryLock::Impl {
  std::shared_ptr<const FileDescriptor> directory;  // the shard directory the lock is in
  std::string name;                                 // "<key>.lock"
  std::string path;                                 // for messages
  int fd = -1;
  dev_t device = 0;
  ino_t inode = 0;
  std::string content;  // what we wrote into the lock: its random token makes it ours alone
  std::chrono::duration<double> heartbeat{10.0};
  std::uint64_t heartbeat_id = 0;

  void start() {
    heartbeat_id =
        detail::start_heartbeat(fd, std::chrono::duration_cast<std::chrono::steady_clock::duration>(heartbeat));
  }

  ~Impl() {
    if (heartbeat_id != 0) detail::stop_heartbeat(heartbeat_id);
    // Remove the lock only if it is still ours: a waiter may have judged it stale and replaced it.
    if (still_ours()) ::unlinkat(directory->get(), name.c_str(), 0);
    if (fd >= 0) ::close(fd);
  }

  // The same inode, or else the same content: a FUSE client such as sshfs numbers a hard link
  // apart from the file it was made from, so the lock's name never shows our descriptor's inode.
  bool still_ours() const {
    struct stat info {};
    if (::fstatat(directory->get(), name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(info.st_mode)) {
      return false;
    }
    if (info.st_dev == device && info.st_ino == inode) return true;
    const int seen = ::openat(directory->get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (seen < 0) return false;
    std::string text(content.size() + 1, '\0');
    const ssize_t got = ::pread(seen, text.data(), text.size(), 0);
    ::close(seen);
    return got == static_cast<ssize_t>(content.size()) && text.compare(0, content.size(), content) == 0;
  }
};

EntryLock::EntryLock() noexcept = default;
EntryLock::EntryLock(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
EntryLock::EntryLock(EntryLock&&) noexcept = default;
EntryLock& EntryLock::operator=(EntryLock&&) noexcept = default;
EntryLock::~EntryLock() = default;
void EntryLock::release() noexcept { impl_.reset(); }

namespace detail {

std::string_view lock_field(std::string_view text, std::string_view key) {
  const auto at = text.find("\n" + std::string(key) + " ");
  if (at == std::string_view::npos) return {};
  const auto start = at + key.size() + 2;
  const auto end = text.find('\n', start);
  return end == std::string_view::npos ? std::string_view{} : text.substr(start, end - start);
}

namespace {
LockOwner owner_from_text(std::string_view text) {
  return LockOwner{std::string(lock_field(text, "host")), pid_from_text(lock_field(text, "pid")),
                   std::string(lock_field(text, "job"))};
}
}  // namespace

// Reads what owner_lines() below writes.
LockOwner read_lock_owner(int fd) {
  char buffer[512];
  const ssize_t got = ::pread(fd, buffer, sizeof buffer - 1, 0);
  if (got <= 0) return {};
  return owner_from_text(std::string_view(buffer, static_cast<std::size_t>(got)));
}

std::string owner_lines() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return "host " + host_name_for_files() + "\npid " + std::to_string(getpid()) + "\njob " + job_name_for_files() +
         "\ntoken " + std::to_string(engine()) + "\n";
}

std::optional<LockView> look_at(int directory, const std::string& name) {
  LockView view;
  struct stat info {};
  // Opened without following a link and without waiting on a FIFO.
  const int fd = ::openat(directory, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (::fstatat(directory, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) return std::nullopt;
    view.device = info.st_dev;
    view.inode = info.st_ino;
    view.foreign = true;  // a symbolic link (or something that cannot be opened)
    return view;
  }
  if (fstat(fd, &info) == 0) {
    view.device = info.st_dev;
    view.inode = info.st_ino;
    view.mtime_ns = static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec;
    view.foreign = !S_ISREG(info.st_mode);
  }
  if (!view.foreign) {
    char buffer[512];
    const ssize_t got = ::pread(fd, buffer, sizeof buffer - 1, 0);
    if (got > 0) view.text.assign(buffer, static_cast<std::size_t>(got));
    LockOwner owner = owner_from_text(view.text);
    view.host = std::move(owner.host);
    view.pid = owner.pid;
    view.job = std::move(owner.job);
  }
  ::close(fd);
  return view;
}

namespace {
// Whether `temporary` can be hard-linked to a fresh name. An SFTP server (sshfs) answers a link
// onto an existing name with a generic failure that arrives as EPERM, which is also what a
// filesystem without hard links says: a link that works elsewhere tells the two apart, without
// looking the name up in a client cache that may not know it yet.
bool links_elsewhere(int directory, const std::string& temporary) {
  const std::string probe = temporary + ".probe";
  if (::linkat(directory, temporary.c_str(), directory, probe.c_str(), 0) != 0) return false;
  ::unlinkat(directory, probe.c_str(), 0);
  return true;
}
}  // namespace

LinkAttempt link_new_file(int directory, const std::string& name, std::string_view stem, const std::string& content,
                          int& fd_out, int& error) {
  const std::string temporary = temporary_name(stem);
  const int fd = ::openat(directory, temporary.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    error = errno;
    return LinkAttempt::unavailable;
  }
  const bool written = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  bool held = false;
  if (written) {
    if (::linkat(directory, temporary.c_str(), directory, name.c_str(), 0) == 0) {
      held = true;
    } else {
      error = errno;
      struct stat info {};
      held = fstat(fd, &info) == 0 && info.st_nlink == 2;  // the link happened; its reply was lost
      if (!held && error != EEXIST && links_elsewhere(directory, temporary)) error = EEXIST;
    }
  } else {
    error = errno;
  }
  ::unlinkat(directory, temporary.c_str(), 0);
  if (!held) {
    ::close(fd);
    if (!written) return LinkAttempt::unavailable;
    // Filesystems without hard links cannot host the file; anything but EEXIST means that.
    return error == EEXIST ? LinkAttempt::busy : LinkAttempt::unavailable;
  }
  fd_out = fd;
  return LinkAttempt::held;
}

}  // namespace detail

namespace {

using Attempt = detail::LinkAttempt;
using detail::LockView;
using detail::look_at;

// What a lock file holds: read back by detail::read_lock_owner() above.
std::string lock_content() { return "joblet compute-once lock\n" + detail::owner_lines(); }

// Tries to create the lock; on success fills `impl`.
Attempt try_create(const std::shared_ptr<const FileDescriptor>& directory, const std::string& name,
                   const std::string& hex, std::unique_ptr<EntryLock::Impl>& impl, int& error) {
  if ((error = detail::injected_fault(detail::IoStep::create_lock)) != 0) return Attempt::unavailable;
  const std::string content = lock_content();
  int fd = -1;
  const Attempt attempt = detail::link_new_file(directory->get(), name, hex + ".lock", content, fd, error);
  if (attempt != Attempt::held) return attempt;
  impl = std::make_unique<EntryLock::Impl>();
  impl->directory = directory;
  impl->name = name;
  impl->content = content;
  impl->fd = fd;
  struct stat info {};
  fstat(fd, &info);
  impl->device = info.st_dev;
  impl->inode = info.st_ino;
  return Attempt::held;
}

// Removes the lock `name` if it is still the one judged stale.
void take_over(int directory, const std::string& name, const std::string& path, const std::string& hex,
               const LockView& stale) {
  const std::string aside = detail::temporary_name(hex + ".lock.stale");
  if (::renameat(directory, name.c_str(), directory, aside.c_str()) != 0) return;  // gone: someone took over
  struct stat info {};
  const bool judged = ::fstatat(directory, aside.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0 &&
                      info.st_dev == stale.device && info.st_ino == stale.inode;
  if (!judged) {
    // We moved a fresh lock another waiter had just created: put it back unless a newer one
    // appeared meanwhile (link never overwrites).
    ::linkat(directory, aside.c_str(), directory, name.c_str(), 0);
  }
  ::unlinkat(directory, aside.c_str(), 0);
  if (!judged) return;
  if (stale.foreign) {
    detail::log().warn(
        "removed {}: something that is not a lock file (a symbolic link, FIFO or directory) stood "
        "where a compute-once lock belongs",
        path);
  } else {
    detail::log().info("took over the stale compute-once lock {} (held by pid {} on {})", path, stale.pid,
                       stale.host.empty() ? std::string("an unknown host") : stale.host);
  }
}

}  // namespace

void validate_lock_options(const LockOptions& options) {
  if (!(options.heartbeat.count() > 0) || options.heartbeat * 2 > options.stale_after) {
    throw ConfigError(
        "LockOptions: heartbeat must be positive and under half of stale_after, or live holders "
        "would look stale; raise stale_after or lower heartbeat");
  }
  if (!(options.poll.count() > 0) || options.poll_max < options.poll) {
    throw ConfigError("LockOptions: poll must be positive and poll_max at least poll");
  }
}

Claim Store::claim(std::string_view function, const Hash128& key, const LockOptions& options,
                   const std::function<bool(const EntryMetadata&)>& accept, bool look_first) const {
  return claim_entry(function, key, options, accept, look_first, /*wait=*/true);
}

Claim Store::try_claim(std::string_view function, const Hash128& key, const LockOptions& options,
                       const std::function<bool(const EntryMetadata&)>& accept, bool look_first) const {
  return claim_entry(function, key, options, accept, look_first, /*wait=*/false);
}

std::optional<LockHolder> Store::lock_holder(std::string_view function, const Hash128& key,
                                             const LockOptions& options) const {
  validate_function_name(function);
  const std::string hex = key.hex();
  const FileDescriptor directory =
      state_->directory.open_directory(detail::relative_shard(function, hex), false, false);
  if (!directory) return std::nullopt;
  const auto view = look_at(directory.get(), hex + ".lock");
  if (!view || view->foreign) return std::nullopt;
  const auto beat = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(view->mtime_ns)));
  const bool dead_here = detail::dead_process_of_this_host(view->host, view->pid);
  return LockHolder{view->host, view->pid, view->job,
                    !dead_here && detail::filesystem_now(*state_) - beat < options.stale_after};
}

Claim Store::claim_entry(std::string_view function, const Hash128& key, const LockOptions& options,
                         const std::function<bool(const EntryMetadata&)>& accept, bool look_first, bool wait) const {
  validate_lock_options(options);
  validate_function_name(function);
  const std::string hex = key.hex();
  const std::string shard = detail::relative_shard(function, hex);
  const std::string name = hex + ".lock";
  const std::string lock_path = state_->directory.shown(shard + "/" + name);
  const auto usable = [&](LoadResult& found) { return found && (!accept || accept(found.entry->metadata())); };
  const auto unavailable = [&](int error) {
    if (detail::first_time("joblet.store.lock:" + state_->root_text)) {
      detail::log().warn(
          "cannot create compute-once locks in {} ({}); computing without them, so several "
          "processes may compute the same result",
          state_->root_text,
          error == ELOOP || error == ENOTDIR ? state_->directory.describe_obstacle(shard)
                                             : detail::describe_write_errno(error));
    }
    return Claim{};
  };

  using Steady = std::chrono::steady_clock;
  std::optional<LockView> watched;
  Steady::time_point unchanged_since{};
  auto poll = options.poll;
  bool waited = false;
  int directories_lost = 0;
  std::shared_ptr<const FileDescriptor> directory;
  for (bool look = look_first;; look = true) {
    if (look) {
      if (LoadResult found = load(function, key); usable(found)) return Claim{std::move(found.entry), {}, waited};
    }
    if (!directory) {
      FileDescriptor opened = state_->directory.open_directory(shard, true, state_->options.group_shared);
      if (!opened) return unavailable(errno);
      directory = std::make_shared<const FileDescriptor>(std::move(opened));
    }

    std::unique_ptr<EntryLock::Impl> impl;
    int error = 0;
    switch (try_create(directory, name, hex, impl, error)) {
      case Attempt::held: {
        impl->path = lock_path;
        impl->heartbeat = options.heartbeat;
        impl->start();
        EntryLock lock(std::move(impl));
        // The previous holder may have published just before we took the lock. A client that
        // remembers failed lookups would answer a plain load from memory: look past it.
        LoadResult found = detail::remembers_missing_names(*state_, directory->get())
                               ? load_unseen(function, key, /*listing_fresh=*/true)
                               : load(function, key);
        if (usable(found)) return Claim{std::move(found.entry), {}, waited};
        return Claim{std::nullopt, std::move(lock), waited};
      }
      case Attempt::unavailable:
        if (error == ENOENT && ++directories_lost < 4) {
          directory.reset();  // a concurrent clear() removed the directory: make it again
          continue;
        }
        return unavailable(error);
      case Attempt::busy:
        waited = true;
        break;
    }

    const std::optional<LockView> now_seen = look_at(directory->get(), name);
    if (!now_seen) continue;  // released between our attempt and our look: try again at once
    const auto now = Steady::now();
    bool stale = now_seen->foreign;
    if (stale) {
      // Not a lock joblet made: nobody computes under it.
    } else if (now_seen->host == detail::host_name_for_files() && now_seen->pid != getpid() &&
               !detail::process_alive(now_seen->pid)) {
      stale = true;
    } else if (watched && watched->same_file(*now_seen)) {
      stale = now - unchanged_since >= options.stale_after;
    } else {
      watched = now_seen;
      unchanged_since = now;
    }
    if (stale) {
      take_over(directory->get(), name, lock_path, hex, *now_seen);
      watched.reset();
      poll = options.poll;
      continue;
    }
    if (!wait) return Claim{.busy = true};
    std::this_thread::sleep_for(poll);
    poll = std::min(poll * 2, options.poll_max);
  }
}

}  // namespace joblet
