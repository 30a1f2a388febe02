#pragma once
// What store.cpp and entry_lock.cpp share.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
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
std::string lock_path_of(const std::string& entry_path);
// Who holds a compute-once lock, as its content says (empty host and pid 0 when it does not).
struct LockOwner {
  std::string host;
  long pid = 0;
  std::string job;  // job_name_for_files() of the holder
};
LockOwner read_lock_owner(int fd);
// An entry's companion file (PayloadKind::hdf5_companion).
std::string companion_path_of(const std::string& entry_path);

}  // namespace detail
}  // namespace joblet
