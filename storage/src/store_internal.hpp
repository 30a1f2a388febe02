#pragma once
// What store.cpp and entry_lock.cpp share.

#include <atomic>
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
};

namespace detail {

// "<root>/<function>/<xx>" and the entry's file name "<32 hex>".
std::string shard_directory(const Store::State& state, std::string_view function, const std::string& hex);
// "<function>/<xx>": the shard directory below the root.
std::string relative_shard(std::string_view function, const std::string& hex);
std::string lock_path_of(const std::string& entry_path);
// Who holds a compute-once lock, as its content says (empty host and pid 0 when it does not).
struct LockOwner {
  std::string host;
  long pid = 0;
};
LockOwner read_lock_owner(int fd);
// An entry's companion file (PayloadKind::hdf5_companion).
std::string companion_path_of(const std::string& entry_path);

}  // namespace detail
}  // namespace joblet
