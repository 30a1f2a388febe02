#pragma once
// What store.cpp and entry_lock.cpp share.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "beneath.hpp"
#include "joblet/store.hpp"

namespace joblet {

struct Store::State {
  explicit State(std::string root_path) : root(root_path), root_text(root_path), directory(std::move(root_path)) {}
  std::filesystem::path root;
  std::string root_text;        // root, as the prefix every entry path starts with
  detail::CacheRoot directory;  // what every path below the root is resolved from
  StoreOptions options;
  // Bytes this process wrote since it last enforced bytes_limit.
  std::atomic<std::uint64_t> written_since_check{0};
  // The cache filesystem's clock minus this host's, measured once (filesystem_clock.cpp).
  mutable std::mutex clock_mutex;
  mutable std::atomic<bool> clock_measured{false};
  mutable std::atomic<std::int64_t> clock_offset_ns{0};
  // Whether the cache filesystem's client remembers failed lookups (remembers_missing_names):
  // -1 until first asked.
  mutable std::atomic<int> remembers_missing{-1};
};

namespace detail {

// The time now on the cache filesystem's clock, which stamps what its files' mtimes are compared
// with. `directory` (a descriptor beneath the root, or -1 for the root) hosts the probe file the
// first call writes.
std::chrono::system_clock::time_point filesystem_now(const Store::State& state, int directory = -1);
// Whether the client of the filesystem `directory` (beneath the root) is on may answer "no such
// file" from memory for a name another client has created since: NFS and FUSE clients keep
// failed lookups for seconds (NFS until the directory's cached attributes expire, sshfs for
// negative_timeout); local filesystems never do, and need none of what Store::load_unseen()
// does. Asked of the filesystem once per store.
bool remembers_missing_names(const Store::State& state, int directory);
// Refreshes an open entry's mtime to `now` on the filesystem's clock (its LRU stamp).
void touch_at(const Store::State& state, int fd, std::chrono::system_clock::time_point now);

// "<root>/<function>/<xx>" and the entry's file name "<32 hex>".
std::string shard_directory(const Store::State& state, std::string_view function, const std::string& hex);
// "<function>/<xx>": the shard directory below the root.
std::string relative_shard(std::string_view function, const std::string& hex);
// An entry's name below the root, "<function>/<xx>/<32 hex>", built in one string (a hit's
// lookup): the shard and the file name are views of it.
struct EntryName {
  std::string relative;
  std::size_t name_at = 0;
  std::string_view shard() const { return std::string_view(relative).substr(0, name_at - 1); }
  std::string_view hex() const { return std::string_view(relative).substr(name_at); }
};
EntryName entry_name(std::string_view function, const Hash128& key);
std::string lock_path_of(const std::string& entry_path);
// Who holds a compute-once lock, as its content says (empty host and pid 0 when it does not).
struct LockOwner {
  std::string host;
  long pid = 0;
  std::string job;  // job_name_for_files() of the holder
};
LockOwner read_lock_owner(int fd);
// The value of the line "KEY value" of a lock or claim file's text; empty if none.
std::string_view lock_field(std::string_view text, std::string_view key);
// The lines naming this process (host, pid, job) and a random token that makes a file ours alone:
// what compute-once locks and campaign run claims hold after their first line.
std::string owner_lines();

// A lock or claim file as a waiter sees it.
struct LockView {
  dev_t device = 0;
  ino_t inode = 0;
  std::int64_t mtime_ns = 0;
  std::string host;
  long pid = 0;
  std::string job;
  std::string text;      // its first 511 bytes
  bool foreign = false;  // not a plain file: not one joblet made
  bool same_file(const LockView& other) const noexcept {
    return device == other.device && inode == other.inode && mtime_ns == other.mtime_ns;
  }
};
// What is at `name` in `directory` now (never following a link, never waiting on a FIFO);
// nullopt if nothing.
std::optional<LockView> look_at(int directory, const std::string& name);

enum class LinkAttempt { held, busy, unavailable };
// Makes `name` in `directory` appear with `content` already in it, or not at all: written to a
// unique temporary (named after `stem`) and hard-linked into place, which NFS and Lustre make
// atomic; a lost reply to a link that succeeded is recognised by the link count. held: the
// file is ours, open as `fd_out`; busy: `name` exists; unavailable: `error` says why (no hard
// links on this filesystem, permissions).
LinkAttempt link_new_file(int directory, const std::string& name, std::string_view stem, const std::string& content,
                          int& fd_out, int& error);
// An entry's companion file (PayloadKind::hdf5_companion).
std::string companion_path_of(const std::string& entry_path);

}  // namespace detail
}  // namespace joblet
