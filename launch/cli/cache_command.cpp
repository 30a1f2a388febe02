#include "cache_command.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "joblet/dump.hpp"
#include "joblet/environment.hpp"
#include "joblet/error.hpp"
#include "joblet/store.hpp"
#include "units.hpp"

namespace joblet::cli {
namespace {

struct FunctionSummary {
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;
  std::set<std::string> versions;
  std::chrono::duration<double> compute_time{0};
  std::chrono::system_clock::time_point last_used{};
  std::uint64_t unreadable = 0;
};

void print(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); }

std::string entries_text(std::uint64_t count) { return fmt::format("{} entr{}", count, count == 1 ? "y" : "ies"); }

Store open_store(const CacheArguments& arguments) {
  const std::string directory = existing_cache_directory(arguments.directory);
  if (arguments.function) validate_function_name(*arguments.function);
  return Store(directory);
}

ListOptions listing(const CacheArguments& arguments, bool read_metadata, bool include_leftovers = false) {
  ListOptions options;
  options.function = arguments.function;
  options.read_metadata = read_metadata;
  options.include_leftovers = include_leftovers;
  return options;
}

int stats(const CacheArguments& arguments) {
  const Store store = open_store(arguments);
  std::map<std::string, FunctionSummary> functions;
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;
  std::uint64_t temporaries = 0;
  std::uint64_t temporary_bytes = 0;
  std::uint64_t locks = 0;
  std::vector<const EntryInfo*> foreign;
  const std::vector<EntryInfo> listed = store.list(listing(arguments, true, true));
  for (const EntryInfo& info : listed) {
    if (info.kind == EntryKind::foreign) {
      foreign.push_back(&info);
      continue;
    }
    if (info.kind == EntryKind::temporary) {
      ++temporaries;
      temporary_bytes += info.size;
      continue;
    }
    if (info.kind == EntryKind::lock) {
      ++locks;
      continue;
    }
    FunctionSummary& summary = functions[info.function];
    ++summary.entries;
    summary.bytes += info.size;
    summary.last_used = std::max(summary.last_used, info.last_used);
    if (info.metadata) {
      summary.versions.insert(info.metadata->version);
      summary.compute_time += info.metadata->duration;
    } else {
      ++summary.unreadable;
    }
    ++entries;
    bytes += info.size;
  }
  print(fmt::format("cache {}\n", store.root().string()));
  print(fmt::format("  {} function{}, {}, {}\n", functions.size(), functions.size() == 1 ? "" : "s",
                    entries_text(entries), format_size(bytes)));
  if (temporaries != 0 || locks != 0) {
    print(fmt::format(
        "  {} temporary file{} ({}; those older than a day are removed by prune), {} compute-once "
        "lock{}\n",
        temporaries, temporaries == 1 ? "" : "s", format_size(temporary_bytes), locks, locks == 1 ? "" : "s"));
  }
  for (const EntryInfo* info : foreign) print(fmt::format("  not followed: {}: {}\n", info->path.string(), info->problem));
  if (functions.empty()) return 0;
  std::size_t width = 8;
  for (const auto& [name, summary] : functions) width = std::max(width, name.size());
  print(fmt::format("\n{:<{}}  {:>8}  {:>8}  {:>10}  {:>11}  {}\n", "function", width, "entries", "versions", "size",
                    "computed in", "last used"));
  for (const auto& [name, summary] : functions) {
    print(fmt::format("{:<{}}  {:>8}  {:>8}  {:>10}  {:>11}  {}{}\n", name, width, summary.entries,
                      summary.versions.size(), format_size(summary.bytes), format_duration(summary.compute_time),
                      format_time(summary.last_used),
                      summary.unreadable == 0 ? std::string() : fmt::format("  ({} unreadable)", summary.unreadable)));
  }
  return 0;
}

int ls(const CacheArguments& arguments) {
  const Store store = open_store(arguments);
  std::vector<EntryInfo> entries = store.list(listing(arguments, true));
  for (const EntryInfo& info : entries) {
    if (info.kind == EntryKind::foreign) {
      std::fputs(fmt::format("joblet: not followed: {}: {}\n", info.path.string(), info.problem).c_str(), stderr);
    }
  }
  std::erase_if(entries, [](const EntryInfo& info) { return info.kind != EntryKind::entry; });
  std::sort(entries.begin(), entries.end(), [](const EntryInfo& a, const EntryInfo& b) {
    return std::tie(a.function, b.last_used) < std::tie(b.function, a.last_used);
  });
  std::size_t width = 8;
  for (const auto& info : entries) width = std::max(width, info.function.size());
  print(fmt::format("{:<32}  {:<{}}  {:<10}  {:>10}  {:<19}  {:>11}{}\n", "key", "function", width, "version", "size",
                    "last used", "computed in", arguments.long_listing ? "  arguments" : ""));
  for (const auto& info : entries) {
    std::string version = info.metadata ? info.metadata->version : "?";
    if (version.empty()) version = "-";
    if (version.size() > 10) version = version.substr(0, 9) + "~";
    print(fmt::format("{:<32}  {:<{}}  {:<10}  {:>10}  {:<19}  {:>11}", info.key.hex(), info.function, width, version,
                      format_size(info.size), format_time(info.last_used),
                      info.metadata ? format_duration(info.metadata->duration) : "?"));
    if (!info.metadata) {
      print(fmt::format("  unreadable: {}", info.problem));
    } else if (arguments.long_listing) {
      print("  " + info.metadata->arguments);
    }
    print("\n");
  }
  return 0;
}

int show(const CacheArguments& arguments) {
  const Store store = open_store(arguments);
  std::string prefix = arguments.key;
  std::transform(prefix.begin(), prefix.end(), prefix.begin(),
                 [](char c) { return static_cast<char>(std::tolower(c)); });
  if (prefix.empty() || prefix.size() > 32 ||
      !std::all_of(prefix.begin(), prefix.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
    throw ConfigError("'" + arguments.key +
                      "' is not a cache key; give the 32 hex digits `joblet cache ls` shows, or "
                      "a unique prefix of them");
  }
  std::vector<EntryInfo> matches;
  for (auto& info : store.list(listing(arguments, false))) {
    if (info.kind == EntryKind::entry && info.key.hex().starts_with(prefix)) matches.push_back(std::move(info));
  }
  if (matches.empty()) {
    throw ConfigError("no entry's key starts with '" + prefix + "' in " + store.root().string() +
                      "; `joblet cache ls` lists the keys (add --function to narrow)");
  }
  if (matches.size() > 1) {
    throw ConfigError(fmt::format("{} entries have keys starting with '{}'; give more digits", matches.size(), prefix));
  }
  const EntryInfo& info = matches.front();
  const LoadResult loaded = store.inspect(info.function, info.key);
  print(fmt::format("key          {}\npath         {}\nfile size    {} ({} bytes)\nlast used    {}\n", info.key.hex(),
                    info.path.string(), format_size(info.size), info.size, format_time(info.last_used)));
  if (!loaded) {
    print(fmt::format("status       unusable: {} (the next call recomputes and replaces it)\n",
                      loaded.status == LoadStatus::missing ? "removed meanwhile" : loaded.problem));
    return 1;
  }
  const EntryMetadata& metadata = loaded.entry->metadata();
  print(fmt::format(
      "function     {}\nversion      {}\narguments    {}\nresult type  {}\ncomputed in  {}\ncreated      "
      "{}\npayload      {} ({} bytes), checksum {}\nformat       version {}\n",
      metadata.function, metadata.version.empty() ? "(none)" : metadata.version, metadata.arguments,
      metadata.result_type, format_duration(metadata.duration), format_time(metadata.created),
      format_size(metadata.payload_size), metadata.payload_size, metadata.checksum.hex(), metadata.format_version));
  if (metadata.payload_kind != PayloadKind::hdf5_companion) {
    print("status       ok (checksums verified)\n");
    return 0;
  }
  // The value is in the companion file: the entry is only as good as it.
  const auto binding = metadata.extra.find("companion");
  try {
    if (binding == metadata.extra.end() || binding->second.empty()) {
      throw StorageError("the entry names no companion file");
    }
    detail::DumpFile companion(loaded.entry->companion(), {}, {}, binding->second, detail::FileUse::cache_companion,
                               loaded.entry->companion_opened_as());
    print(fmt::format("companion    {}\nstatus       ok (entry checksums and the companion's structure verified; "
                      "its arrays are checked as they are read)\n",
                      store.companion_path(info.function, info.key).string()));
    return 0;
  } catch (const Error& e) {
    print(fmt::format("status       unusable: its companion file is missing or damaged ({}); the next call "
                      "recomputes and replaces it\n",
                      e.message()));
    return 1;
  }
}

int clear(const CacheArguments& arguments) {
  const Store store = open_store(arguments);
  const std::string scope = arguments.function ? "function '" + *arguments.function + "'" : std::string("the cache");
  if (arguments.dry_run) {
    std::uint64_t bytes = 0;
    std::uint64_t count = 0;
    for (const auto& info : store.list(listing(arguments, false))) {
      if (info.kind != EntryKind::entry) continue;
      bytes += info.size;
      ++count;
    }
    print(fmt::format("would remove {} ({}) of {}\n", entries_text(count), format_size(bytes), scope));
    return 0;
  }
  const std::size_t removed =
      arguments.function ? store.clear(std::string_view(*arguments.function)) : store.clear(std::nullopt);
  print(fmt::format("removed {} of {}\n", entries_text(removed), scope));
  return 0;
}

int prune(const CacheArguments& arguments) {
  ReduceOptions options;
  if (arguments.max_size) options.bytes_limit = parse_size(*arguments.max_size, "--max-size");
  if (arguments.max_items) {
    std::uint64_t items = 0;
    const std::string& text = *arguments.max_items;
    const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), items);
    if (status != std::errc{} || end != text.data() + text.size()) {
      throw ConfigError("--max-items '" + text + "' is not a whole number of entries");
    }
    options.items_limit = items;
  }
  if (arguments.older_than) options.age_limit = parse_age(*arguments.older_than, "--older-than");
  if (!options.bytes_limit && !options.items_limit && !options.age_limit) {
    throw ConfigError("prune needs a limit: --max-size (e.g. 10G), --max-items N or --older-than (e.g. 7d)");
  }
  options.function = arguments.function;
  options.dry_run = arguments.dry_run;
  const Store store = open_store(arguments);
  const ReduceReport report = store.reduce_size(options);
  std::uint64_t entries = 0;
  for (const auto& info : report.removed) {
    if (info.kind != EntryKind::entry) continue;
    ++entries;
    if (arguments.dry_run) {
      print(fmt::format("would remove {}  {}  {}  last used {}\n", info.key.hex(), info.function,
                        format_size(info.size), format_time(info.last_used)));
    }
  }
  const std::size_t leftovers = report.removed.size() - entries;
  print(fmt::format(
      "{} {} ({}), {} left in {} ({}){}\n", arguments.dry_run ? "would remove" : "removed", entries_text(entries),
      format_size(report.removed_bytes), report.kept_entries,
      arguments.function ? "'" + *arguments.function + "'" : std::string("the cache"), format_size(report.kept_bytes),
      leftovers == 0
          ? std::string()
          : fmt::format(", and {} leftover file{} of killed writers", leftovers, leftovers == 1 ? "" : "s")));
  if (!report.failed.empty()) {
    // Not removed is not done: say so and fail, so that scripts and cron jobs notice.
    std::fputs(fmt::format("joblet: {} file{} could not be removed, e.g. {}: {}\n", report.failed.size(),
                           report.failed.size() == 1 ? "" : "s", report.failed.front().path.string(),
                           report.failed.front().problem)
                   .c_str(),
               stderr);
    return 1;
  }
  return 0;
}

}  // namespace

std::string existing_cache_directory(const std::string& given) {
  const std::string directory = given.empty() ? default_cache_dir() : given;
  std::error_code error;
  if (!std::filesystem::is_directory(directory, error)) {
    throw ConfigError("no cache directory at '" + directory +
                      "'; pass --dir DIR or set JOBLET_CACHE_DIR to the directory given to Memory");
  }
  return directory;
}

int run_cache_command(const CacheArguments& arguments) {
  switch (arguments.action) {
    case CacheAction::stats:
      return stats(arguments);
    case CacheAction::ls:
      return ls(arguments);
    case CacheAction::show:
      return show(arguments);
    case CacheAction::clear:
      return clear(arguments);
    case CacheAction::prune:
      return prune(arguments);
  }
  return 2;
}

}  // namespace joblet::cli
