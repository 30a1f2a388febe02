#include "cache_command.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "joblet/detail/key_differences.hpp"
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
  for (const EntryInfo* info : foreign)
    print(fmt::format("  not followed: {}: {}\n", info->path.string(), info->problem));
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

std::string quoted_or_none(const std::string& text) { return text.empty() ? std::string("none") : "'" + text + "'"; }

// The lines of `show` and `explain` that say what an entry's key was made of.
std::string key_parts_text(const EntryMetadata& metadata) {
  if (!metadata.key_parts) {
    return "key parts    not recorded (written by an older joblet): which argument differs from another entry "
           "cannot be told\n";
  }
  const KeyParts& parts = *metadata.key_parts;
  std::string text = fmt::format("key parts    version {}, source text {}, build id {}\n",
                                 quoted_or_none(parts.version), parts.source_salt.empty() ? "none" : parts.source_salt,
                                 parts.build_salt.empty() ? "none" : parts.build_salt);
  for (std::size_t position = 0; position < parts.arguments.size(); ++position) {
    const ArgumentHash& argument = parts.arguments[position];
    text +=
        fmt::format("{:<12} {}\n", fmt::format("argument #{}", position),
                    argument.ignored ? std::string("ignored (ignore_args): not part of the key") : argument.hash.hex());
  }
  return text;
}

// A key as given on the command line, lower case: 32 hex digits, or a prefix of them.
std::string key_prefix(const std::string& given) {
  std::string prefix = given;
  std::transform(prefix.begin(), prefix.end(), prefix.begin(),
                 [](char c) { return static_cast<char>(std::tolower(c)); });
  if (prefix.empty() || prefix.size() > 32 ||
      !std::all_of(prefix.begin(), prefix.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
    throw ConfigError("'" + given +
                      "' is not a cache key; give the 32 hex digits `joblet cache ls` shows, or "
                      "a unique prefix of them");
  }
  return prefix;
}

int show(const CacheArguments& arguments) {
  const Store store = open_store(arguments);
  const std::string prefix = key_prefix(arguments.key);
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
  print(key_parts_text(metadata));
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
    print(
        fmt::format("companion    {}\nstatus       ok (entry checksums and the companion's structure verified; "
                    "its arrays are checked as they are read)\n",
                    store.companion_path(info.function, info.key).string()));
    return 0;
  } catch (const Error& e) {
    print(
        fmt::format("status       unusable: its companion file is missing or damaged ({}); the next call "
                    "recomputes and replaces it\n",
                    e.message()));
    return 1;
  }
}

// The readable entries of one function and what they recorded, for explain.
struct FunctionEntries {
  std::vector<EntryInfo> listed;
  std::size_t unreadable = 0;
};

FunctionEntries entries_of(const Store& store, const std::string& function) {
  const std::vector<std::string> functions = store.functions();
  if (std::find(functions.begin(), functions.end(), function) == functions.end()) {
    throw ConfigError("no function '" + function + "' in the cache " + store.root().string() +
                      "; `joblet cache stats` lists its functions (names are case-sensitive)");
  }
  FunctionEntries entries;
  entries.listed = store.list(ListOptions{.function = function, .read_metadata = true});
  std::erase_if(entries.listed, [](const EntryInfo& info) { return info.kind != EntryKind::entry; });
  for (const EntryInfo& info : entries.listed) entries.unreadable += info.metadata ? 0 : 1;
  if (entries.listed.empty()) {
    throw ConfigError("function '" + function + "' has no entries in the cache " + store.root().string() +
                      ": nothing to compare");
  }
  return entries;
}

// The entry whose key is `given` (or starts with it), readable; ConfigError naming what to do.
const EntryInfo& entry_named(const FunctionEntries& entries, const std::string& given, const std::string& function,
                             bool missed) {
  const std::string prefix = key_prefix(given);
  const EntryInfo* found = nullptr;
  std::size_t matches = 0;
  for (const EntryInfo& info : entries.listed) {
    if (!info.key.hex().starts_with(prefix)) continue;
    found = &info;
    ++matches;
  }
  if (matches > 1) {
    throw ConfigError(
        fmt::format("{} entries of '{}' have keys starting with '{}'; give more digits", matches, function, prefix));
  }
  if (found == nullptr) {
    if (missed) {
      throw ConfigError("no entry of '" + function + "' has a key starting with '" + prefix +
                        "': a miss leaves its entry once the function returns, unless the cache could not be "
                        "written or the entry was cleared or pruned since. Run the program with "
                        "JOBLET_LOG_LEVEL=debug to have each miss name its nearest entry and what differs as it "
                        "happens");
    }
    throw ConfigError("no entry of '" + function + "' has a key starting with '" + prefix +
                      "'; `joblet cache ls --function " + function + "` lists them");
  }
  if (!found->metadata) {
    throw ConfigError("entry " + found->key.hex() + " of '" + function + "' is unusable (" + found->problem +
                      "): its key's parts cannot be read; the next call with its arguments recomputes it");
  }
  return *found;
}

void print_entry(const EntryInfo& info, const std::string& indent) {
  const EntryMetadata& metadata = *info.metadata;
  print(fmt::format("{}arguments    {}\n{}result type  {}\n{}created      {}{}, computed in {}\n", indent,
                    metadata.arguments.empty() ? "(none)" : metadata.arguments, indent, metadata.result_type, indent,
                    format_time(metadata.created),
                    metadata.extra.contains("host") ? " on " + metadata.extra.at("host") : std::string(),
                    format_duration(metadata.duration)));
}

// The subject entry, then the others (those created before it, for a miss) nearest first.
int explain_entry(const Store& store, const CacheArguments& arguments, bool missed) {
  const std::string& function = *arguments.function;
  FunctionEntries entries = entries_of(store, function);
  const EntryInfo& subject =
      entry_named(entries, missed ? *arguments.missed_key : *arguments.near_key, function, missed);
  print(fmt::format("entry {} of '{}' in {}\n", subject.key.hex(), function, store.root().string()));
  print_entry(subject, "  ");
  const std::string parts = key_parts_text(*subject.metadata);
  for (std::size_t at = 0; at < parts.size();) {  // indented like the lines above
    const std::size_t end = parts.find('\n', at);
    print("  " + parts.substr(at, end + 1 - at));
    at = end + 1;
  }

  std::vector<EntryInfo> others;
  for (const EntryInfo& info : entries.listed) {
    if (!info.metadata || info.key == subject.key) continue;
    // A miss could only have been served by an entry that was there before its own.
    if (missed && info.metadata->created >= subject.metadata->created) continue;
    others.push_back(info);
  }
  const std::vector<detail::NearEntry> near = detail::nearest_entries(*subject.metadata, others);
  if (near.empty()) {
    print(missed ? fmt::format("\nno entry of '{}' created before it is stored: it was the function's first call, or "
                               "the entries before it were cleared or pruned\n",
                               function)
                 : fmt::format("\nit is the only readable entry of '{}'\n", function));
  } else {
    const std::size_t shown = arguments.limit == 0 ? near.size() : std::min(arguments.limit, near.size());
    print(fmt::format("\n{}{} of '{}', nearest first (here: {}; there: the entry below):\n",
                      near.size() == 1 ? "the other entry" : fmt::format("{} other entries", near.size()),
                      missed ? " created before it" : "", function, subject.key.hex().substr(0, 12)));
    for (std::size_t i = 0; i < shown; ++i) {
      print(fmt::format("\n{}  {}\n", near[i].info->key.hex(), detail::describe(near[i].comparison)));
      print_entry(*near[i].info, "  ");
    }
    if (shown < near.size()) print(fmt::format("\n({} more: --limit 0 shows all)\n", near.size() - shown));
    if (missed) {
      const auto& nearest = near.front().comparison;
      print(nearest.differences.empty() ? fmt::format("\nit missed because {}\n", detail::describe(nearest))
                                        : fmt::format("\nit missed because its {} differs from the nearest entry's{}\n",
                                                      detail::describe(nearest.differences.front()),
                                                      nearest.differences.size() > 1 ? " (among other parts)" : ""));
    }
  }
  if (entries.unreadable != 0) {
    print(fmt::format("\n{} of '{}' unreadable, not compared (`joblet cache ls --function {}` says why)\n",
                      entries_text(entries.unreadable), function, function));
  }
  return 0;
}

// Entries whose keys differ in their arguments alone: the same version, salts, result type and
// arguments left out.
struct EntryGroup {
  std::string title;
  std::vector<const EntryInfo*> entries;
};

std::string group_title(const EntryMetadata& metadata) {
  if (!metadata.key_parts) {
    return fmt::format(
        "version {} (with its salts), result {}, written without per-argument hashes (by an older "
        "joblet)",
        quoted_or_none(metadata.version), metadata.result_type);
  }
  const KeyParts& parts = *metadata.key_parts;
  std::string ignored;
  for (std::size_t position = 0; position < parts.arguments.size(); ++position) {
    if (parts.arguments[position].ignored) ignored += fmt::format("{}#{}", ignored.empty() ? "" : ", ", position);
  }
  return fmt::format("version {}, source text {}, build id {}, result {}, {} argument{}{}",
                     quoted_or_none(parts.version), parts.source_salt.empty() ? "none" : parts.source_salt,
                     parts.build_salt.empty() ? "none" : parts.build_salt.substr(0, 12), metadata.result_type,
                     parts.arguments.size(), parts.arguments.size() == 1 ? "" : "s",
                     ignored.empty() ? std::string() : " (" + ignored + " ignored)");
}

// Which argument positions vary within a group, and how many values each takes.
std::string argument_variation(const EntryGroup& group) {
  const EntryMetadata& first = *group.entries.front()->metadata;
  if (!first.key_parts) return "which arguments vary cannot be told (no per-argument hashes)";
  std::vector<std::string> varying;
  std::vector<std::string> same;
  for (std::size_t position = 0; position < first.key_parts->arguments.size(); ++position) {
    if (first.key_parts->arguments[position].ignored) continue;
    std::set<Hash128> values;
    for (const EntryInfo* info : group.entries) values.insert(info->metadata->key_parts->arguments[position].hash);
    if (values.size() > 1) {
      varying.push_back(fmt::format("#{} ({} values)", position, values.size()));
    } else {
      same.push_back(fmt::format("#{}", position));
    }
  }
  const auto joined = [](const std::vector<std::string>& items) {
    std::string text;
    for (const auto& item : items) text += (text.empty() ? "" : ", ") + item;
    return text.empty() ? std::string("none") : text;
  };
  return "arguments that vary: " + joined(varying) + "; the same in all: " + joined(same);
}

int explain_function(const Store& store, const CacheArguments& arguments) {
  const std::string& function = *arguments.function;
  const FunctionEntries entries = entries_of(store, function);
  std::map<std::string, EntryGroup> groups;
  for (const EntryInfo& info : entries.listed) {
    if (!info.metadata) continue;
    EntryGroup& group = groups[group_title(*info.metadata)];
    if (group.title.empty()) group.title = group_title(*info.metadata);
    group.entries.push_back(&info);
  }
  std::vector<EntryGroup*> ordered;
  for (auto& [title, group] : groups) ordered.push_back(&group);
  // The largest group first: usually the version in use.
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const EntryGroup* a, const EntryGroup* b) { return a->entries.size() > b->entries.size(); });
  print(fmt::format("'{}' in {}: {} in {} group{} (entries of a group differ in their arguments alone)\n", function,
                    store.root().string(), entries_text(entries.listed.size() - entries.unreadable), ordered.size(),
                    ordered.size() == 1 ? "" : "s"));
  const std::size_t shown = arguments.limit == 0 ? ordered.size() : std::min(arguments.limit, ordered.size());
  for (std::size_t i = 0; i < shown; ++i) {
    const EntryGroup& group = *ordered[i];
    print(fmt::format("\n{}: {}\n  {}\n", entries_text(group.entries.size()), group.title, argument_variation(group)));
  }
  if (shown < ordered.size()) {
    print(fmt::format("\n{} more group{} (--limit 0 shows all)\n", ordered.size() - shown,
                      ordered.size() - shown == 1 ? "" : "s"));
  }
  if (entries.unreadable != 0) {
    print(fmt::format("\n{} unreadable, not compared (`joblet cache ls --function {}` says why)\n",
                      entries_text(entries.unreadable), function));
  }
  print(fmt::format("\n`joblet cache explain {} --near KEY` compares one entry with the others, nearest first\n",
                    function));
  return 0;
}

int explain(const CacheArguments& arguments) {
  const Store store = open_store(arguments);
  if (arguments.missed_key) return explain_entry(store, arguments, /*missed=*/true);
  if (arguments.near_key) return explain_entry(store, arguments, /*missed=*/false);
  return explain_function(store, arguments);
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
    case CacheAction::explain:
      return explain(arguments);
    case CacheAction::clear:
      return clear(arguments);
    case CacheAction::prune:
      return prune(arguments);
  }
  return 2;
}

}  // namespace joblet::cli
