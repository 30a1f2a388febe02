#pragma once
// `joblet cache stats|ls|show KEY|explain FUNCTION|clear|prune`: inspecting and pruning a cache
// directory.
// main.cpp fills CacheArguments from the command line; run_cache_command does the work.

#include <cstddef>
#include <optional>
#include <string>

namespace joblet::cli {

enum class CacheAction { stats, ls, show, explain, clear, prune };

struct CacheArguments {
  CacheAction action = CacheAction::stats;
  std::string directory;                  // empty: $JOBLET_CACHE_DIR, else ./joblet-cache
  std::optional<std::string> function;    // explain: the function (required)
  std::string key;                        // show: a key, or a unique prefix of one
  std::optional<std::string> missed_key;  // explain --key: the key of a miss (or a unique prefix)
  std::optional<std::string> near_key;    // explain --near: a stored entry's key (or a unique prefix)
  std::size_t limit = 10;                 // explain: entries shown; 0 for all
  bool long_listing = false;              // ls: the argument summary too
  bool dry_run = false;
  std::optional<std::string> max_size;
  std::optional<std::string> max_items;
  std::optional<std::string> older_than;
};

// The cache directory a command works on: `given`, else $JOBLET_CACHE_DIR, else ./joblet-cache.
// ConfigError when it is not a directory: commands inspect caches, they never create one.
std::string existing_cache_directory(const std::string& given);

// Prints to stdout; returns the exit status. Errors a user can fix are joblet::Error.
int run_cache_command(const CacheArguments& arguments);

}  // namespace joblet::cli
