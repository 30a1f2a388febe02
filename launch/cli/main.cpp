// The `joblet` command. This is the only file that includes CLI11 (seconds of compile time per
// file): it declares every subcommand's options and hands plain argument structs to the
// subcommands' functions. A new subcommand (`info`, `status`) adds its options here and its
// work in its own <name>_command.cpp.
//
// Options may come before or after the subcommand that takes them: the cache directory is an
// option of every command, so `joblet --dir X status`, `joblet cache --dir X ls` and
// `joblet cache ls --dir X` all work, and each command's --help lists every option it takes.

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "cache_command.hpp"
#include "completion_command.hpp"
#include "info_command.hpp"
#include "joblet/error.hpp"
#include "show_command.hpp"
#include "status_command.hpp"
#include "trace_command.hpp"

namespace {

constexpr const char* kDirectoryHelp = "the cache directory (default: $JOBLET_CACHE_DIR, else ./joblet-cache)";

// The one --dir of the command line, wherever it was given.
void add_directory_option(CLI::App* command, std::string& directory) {
  command->add_option("-d,--dir", directory, kDirectoryHelp);
}

// A leaf command: its own options, the directory, and those of the commands above it when
// they come after its name (`joblet cache ls --dir X`).
CLI::App* add_leaf(CLI::App* parent, const std::string& name, const std::string& description, std::string& directory) {
  CLI::App* command = parent->add_subcommand(name, description);
  add_directory_option(command, directory);
  command->fallthrough();
  return command;
}

void add_cache_command(CLI::App& app, joblet::cli::CacheArguments& arguments, std::string& directory) {
  using joblet::cli::CacheAction;
  CLI::App* cache =
      app.add_subcommand("cache", "Inspect, clear and prune a joblet cache directory (Memory's location)");
  add_directory_option(cache, directory);
  cache->require_subcommand(1);
  cache->fallthrough();
  const auto action = [&arguments](CacheAction chosen) { return [&arguments, chosen] { arguments.action = chosen; }; };
  const auto add_function_filter = [&arguments](CLI::App* command, const char* help) {
    command->add_option("-f,--function", arguments.function, help);
  };

  CLI::App* stats = add_leaf(cache, "stats", "Entries, sizes and compute time, per function", directory);
  add_function_filter(stats, "only this function");
  stats->callback(action(CacheAction::stats));

  CLI::App* ls = add_leaf(cache, "ls", "List entries, most recently used first within each function", directory);
  add_function_filter(ls, "only this function");
  ls->add_flag("-l,--long", arguments.long_listing, "show each entry's argument summary");
  ls->callback(action(CacheAction::ls));

  CLI::App* show = add_leaf(cache, "show", "Show one entry's metadata and verify its checksums", directory);
  show->add_option("key", arguments.key, "the entry's key, or a unique prefix of it")->required();
  add_function_filter(show, "look only in this function's entries");
  show->callback(action(CacheAction::show));

  CLI::App* explain = add_leaf(
      cache, "explain",
      "Why a call missed: which parts of their keys (argument, version, source text, build id, result type) make "
      "a function's entries differ",
      directory);
  explain->add_option("function", arguments.function, "the cached function's name")->required();
  CLI::Option* missed = explain->add_option(
      "--key", arguments.missed_key,
      "a key that missed (as a trace or the debug log names it; a unique prefix will do): what differs from the "
      "entries stored before it");
  explain
      ->add_option("--near", arguments.near_key,
                   "a stored entry's key (or a unique prefix): the function's other entries, nearest first, and what "
                   "differs")
      ->excludes(missed);
  explain->add_option("--limit", arguments.limit, "show at most this many entries (0: all)")->capture_default_str();
  explain->callback(action(CacheAction::explain));

  CLI::App* clear = add_leaf(cache, "clear", "Remove every entry (of one function, with --function)", directory);
  add_function_filter(clear, "only this function's entries");
  clear->add_flag("-n,--dry-run", arguments.dry_run, "say what would be removed, remove nothing");
  clear->callback(action(CacheAction::clear));

  CLI::App* prune = add_leaf(
      cache, "prune", "Remove least recently used entries until the limits hold (safe while programs use the cache)",
      directory);
  prune->add_option("--max-size", arguments.max_size, "keep at most this many bytes: 500M, 10G (powers of 1024)");
  prune->add_option("--max-items", arguments.max_items, "keep at most this many entries");
  prune->add_option("--older-than", arguments.older_than, "remove entries unused for this long: 12h, 7d, 2w");
  add_function_filter(prune, "apply the limits to this function's entries alone");
  prune->add_flag("-n,--dry-run", arguments.dry_run, "list what would be removed, remove nothing");
  prune->callback(action(CacheAction::prune));
}

// What `joblet completion` completes: the commands and options declared above.
joblet::cli::CommandTree tree_of(const CLI::App& command) {
  joblet::cli::CommandTree tree{command.get_name(), command.get_fallthrough(), {}, {}};
  for (const CLI::Option* option : command.get_options()) {
    if (!option->nonpositional()) continue;
    joblet::cli::CommandOption described;
    for (const std::string& name : option->get_snames()) described.names.push_back("-" + name);
    for (const std::string& name : option->get_lnames()) described.names.push_back("--" + name);
    described.takes_value = option->get_expected_max() > 0;  // flags expect none
    described.names_directory = option->check_lname("dir");
    tree.options.push_back(std::move(described));
  }
  for (const CLI::App* sub : command.get_subcommands([](const CLI::App*) { return true; })) {
    tree.subcommands.push_back(tree_of(*sub));
  }
  return tree;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("joblet: joblib's Parallel, Memory and dump/load for HPC", "joblet");
  app.require_subcommand(1);
  std::string directory;
  add_directory_option(&app, directory);
  joblet::cli::CacheArguments cache_arguments;
  add_cache_command(app, cache_arguments, directory);
  joblet::cli::InfoArguments info_arguments;
  add_leaf(&app, "info", "What joblet sees here: launcher, ranks, CPUs, default backend, cache directory, versions",
           directory);
  joblet::cli::StatusArguments status_arguments;
  CLI::App* status = add_leaf(&app, "status",
                              "Campaigns in a cache (Parallel calls over a cached function): tasks done and missing, "
                              "who computes them, and the failed ones with their errors. Exit status 0 when all are "
                              "complete, 3 while tasks are missing",
                              directory);
  status->add_flag("--watch", status_arguments.watch,
                   "refresh the view (progress, rate, ETA, failures) until every campaign is complete; plain lines "
                   "when stdout is not a terminal");
  status->add_option("--interval", status_arguments.interval_seconds, "seconds between two views with --watch")
      ->default_val(5);
  joblet::cli::ShowArguments show_arguments;
  CLI::App* show =
      app.add_subcommand("show",
                         "What a file written by joblet::dump holds: its C++ type, datasets (names, dtypes, shapes, "
                         "compression) and named numbers and strings");
  show->add_option("file", show_arguments.file, "the .h5 file")->required();
  joblet::cli::TraceArguments trace_arguments;
  CLI::App* trace = app.add_subcommand(
      "trace",
      "What traced calls did (Config::trace, JOBLET_TRACE), over every process, rank and node: tasks, cache hits, "
      "failures by type, CPU time, time saved, efficiency, slowest tasks, load per rank and host");
  trace->add_option("directory", trace_arguments.directory, "the trace directory")->required();
  trace->add_option("--chrome", trace_arguments.chrome,
                    "also write the attempts to this file in Chrome's trace event format (Perfetto, chrome://tracing)");
  trace->add_option("--html", trace_arguments.html,
                    "also write a self-contained HTML report to this file: timeline of every worker and rank by host, "
                    "task durations, cache hits over time, failures");
  joblet::cli::CompletionArguments completion_arguments;
  CLI::App* completion =
      app.add_subcommand("completion", "Print a shell completion script: source <(joblet completion bash)");
  completion->add_option("shell", completion_arguments.shell, "the shell (bash)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  cache_arguments.directory = info_arguments.cache_dir = status_arguments.directory = directory;
  try {
    if (app.got_subcommand("cache")) return joblet::cli::run_cache_command(cache_arguments);
    if (app.got_subcommand("info")) return joblet::cli::run_info_command(info_arguments);
    if (app.got_subcommand("status")) return joblet::cli::run_status_command(status_arguments);
    if (app.got_subcommand("show")) return joblet::cli::run_show_command(show_arguments);
    if (app.got_subcommand("trace")) return joblet::cli::run_trace_command(trace_arguments);
    if (app.got_subcommand("completion"))
      return joblet::cli::run_completion_command(completion_arguments, tree_of(app));
  } catch (const joblet::Error& e) {
    std::fprintf(stderr, "joblet: %s\n", e.message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "joblet: %s\n", e.what());
    return 1;
  }
  return 0;
}
