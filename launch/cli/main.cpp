// The `joblet` command. This is the only file that includes CLI11 (seconds of compile time per
// file): it declares every subcommand's options and hands plain argument structs to the
// subcommands' functions. A new subcommand (`info`, `status`) adds its options here and its
// work in its own <name>_command.cpp.

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cache_command.hpp"
#include "info_command.hpp"
#include "status_command.hpp"
#include "joblet/error.hpp"

namespace {

void add_cache_command(CLI::App& app, joblet::cli::CacheArguments& arguments) {
  using joblet::cli::CacheAction;
  CLI::App* cache =
      app.add_subcommand("cache", "Inspect, clear and prune a joblet cache directory (Memory's location)");
  cache->add_option("-d,--dir", arguments.directory,
                    "the cache directory (default: $JOBLET_CACHE_DIR, else ./joblet-cache)");
  cache->require_subcommand(1);
  const auto action = [&arguments](CacheAction chosen) { return [&arguments, chosen] { arguments.action = chosen; }; };
  const auto add_function_filter = [&arguments](CLI::App* command, const char* help) {
    command->add_option("-f,--function", arguments.function, help);
    // `joblet cache ls --dir X` as well as `joblet cache --dir X ls`.
    command->fallthrough();
  };

  CLI::App* stats = cache->add_subcommand("stats", "Entries, sizes and compute time, per function");
  add_function_filter(stats, "only this function");
  stats->callback(action(CacheAction::stats));

  CLI::App* ls = cache->add_subcommand("ls", "List entries, most recently used first within each function");
  add_function_filter(ls, "only this function");
  ls->add_flag("-l,--long", arguments.long_listing, "show each entry's argument summary");
  ls->callback(action(CacheAction::ls));

  CLI::App* show = cache->add_subcommand("show", "Show one entry's metadata and verify its checksums");
  show->add_option("key", arguments.key, "the entry's key, or a unique prefix of it")->required();
  add_function_filter(show, "look only in this function's entries");
  show->callback(action(CacheAction::show));

  CLI::App* clear = cache->add_subcommand("clear", "Remove every entry (of one function, with --function)");
  add_function_filter(clear, "only this function's entries");
  clear->add_flag("-n,--dry-run", arguments.dry_run, "say what would be removed, remove nothing");
  clear->callback(action(CacheAction::clear));

  CLI::App* prune = cache->add_subcommand(
      "prune", "Remove least recently used entries until the limits hold (safe while programs use the cache)");
  prune->add_option("--max-size", arguments.max_size, "keep at most this many bytes: 500M, 10G (powers of 1024)");
  prune->add_option("--max-items", arguments.max_items, "keep at most this many entries");
  prune->add_option("--older-than", arguments.older_than, "remove entries unused for this long: 12h, 7d, 2w");
  add_function_filter(prune, "apply the limits to this function's entries alone");
  prune->add_flag("-n,--dry-run", arguments.dry_run, "list what would be removed, remove nothing");
  prune->callback(action(CacheAction::prune));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("joblet: joblib's Parallel, Memory and dump/load for HPC", "joblet");
  app.require_subcommand(1);
  joblet::cli::CacheArguments cache_arguments;
  add_cache_command(app, cache_arguments);
  joblet::cli::InfoArguments info_arguments;
  CLI::App* info = app.add_subcommand(
      "info", "What joblet sees here: launcher, ranks, CPUs, default backend, cache directory, versions");
  info->add_option("-d,--dir", info_arguments.cache_dir, "the cache directory to describe");
  joblet::cli::StatusArguments status_arguments;
  CLI::App* status = app.add_subcommand(
      "status", "Campaigns in a cache (Parallel calls over a cached function): tasks done and missing. Exit status "
                "0 when all are complete, 3 while tasks are missing");
  status->add_option("-d,--dir", status_arguments.directory,
                     "the cache directory (default: $JOBLET_CACHE_DIR, else ./joblet-cache)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (app.got_subcommand("cache")) return joblet::cli::run_cache_command(cache_arguments);
    if (app.got_subcommand("info")) return joblet::cli::run_info_command(info_arguments);
    if (app.got_subcommand("status")) return joblet::cli::run_status_command(status_arguments);
  } catch (const joblet::Error& e) {
    std::fprintf(stderr, "joblet: %s\n", e.message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "joblet: %s\n", e.what());
    return 1;
  }
  return 0;
}
