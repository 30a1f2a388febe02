#pragma once
// `joblet cache stats|ls|show KEY|clear|prune`: inspecting and pruning a cache directory.
// main.cpp fills CacheArguments from the command line; run_cache_command does the work.

#include <optional>
#include <string>

namespace joblet::cli {

enum class CacheAction { stats, ls, show, clear, prune };

struct CacheArguments {
  CacheAction action = CacheAction::stats;
  std::string directory;  // empty: $JOBLET_CACHE_DIR, else ./joblet-cache
  std::optional<std::string> function;
  std::string key;            // show: a key, or a unique prefix of one
  bool long_listing = false;  // ls: the argument summary too
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
