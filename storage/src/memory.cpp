#include "joblet/memory.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/sinks/sink.h>

#include <atomic>
#include <charconv>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "io.hpp"
#include "joblet/cached_call.hpp"
#include "joblet/detail/key_differences.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/runtime.hpp"
#include "joblet/detail/shared_counters.hpp"
#include "store_internal.hpp"
#include "task_failures.hpp"

namespace joblet {
namespace detail {
namespace {

using Nanoseconds = std::chrono::nanoseconds;

std::uint64_t to_ns(std::chrono::duration<double> duration) {
  return static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, std::chrono::duration_cast<Nanoseconds>(duration).count()));
}

// A fresh name binding an entry to its companion file: unique across hosts, processes and time.
std::string new_binding() {
  static std::atomic<std::uint64_t> counter{0};
  struct {
    std::uint64_t random;
    std::int64_t time;
    std::int64_t pid;
    std::uint64_t count;
  } seed{std::random_device{}(), std::chrono::system_clock::now().time_since_epoch().count(),
         static_cast<std::int64_t>(process_id()), counter.fetch_add(1)};
  return hash_bytes(&seed, sizeof seed).hex();
}

// Output asked for with MemoryOptions::verbose: at info level, and shown even where the log
// level (JOBLET_LOG_LEVEL, warn by default) is above it, as Parallel's verbose output is; only
// `off` silences it. Written to the logger's sinks, so it carries the process's identity and
// reaches JOBLET_LOG_FILE too.
void say_verbosely(const std::string& text) {
  spdlog::logger& logger = log();
  if (logger.should_log(spdlog::level::info)) {
    logger.info("{}", text);
    return;
  }
  if (logger.level() == spdlog::level::off) return;
  const spdlog::details::log_msg message(logger.name(), spdlog::level::info, text);
  for (const auto& sink : logger.sinks()) {
    if (sink->should_log(message.level)) sink->log(message);
  }
}

// "850 us", "12.5 ms", "3.20 s", "2 min 05 s", as `joblet cache` prints durations.
std::string duration_text(std::chrono::duration<double> duration) {
  const double seconds = duration.count();
  if (seconds < 1e-3) return fmt::format("{:.0f} us", seconds * 1e6);
  if (seconds < 1) return fmt::format("{:.1f} ms", seconds * 1e3);
  if (seconds < 60) return fmt::format("{:.2f} s", seconds);
  const auto whole = static_cast<long long>(seconds);
  return fmt::format("{} min {:02} s", whole / 60, whole % 60);
}

// Long argument summaries would bloat every entry; the summary is for people, not for keys.
constexpr std::size_t kMaxArgumentSummary = 1024;
constexpr std::size_t kMaxVersionLength = 4096;

}  // namespace

// The counts of a cached function or of a Memory, in counters its forked worker processes add
// to as well: a processes call whose every task was a hit reports those hits in the caller.
enum Count : std::size_t {
  kHits,
  kMisses,
  kWaits,
  kCorruptEntries,
  kRejectedEntries,
  kStoreFailures,
  kComputeNs,
  kHitNs,
  kCounts
};

struct Counters {
  SharedCounters counts{kCounts};
  // The keys an elastic campaign's rounds computed or loaded in this process, until the call
  // loads them to return them (see record()).
  std::mutex campaign_mutex;
  std::set<Hash128> campaign_keys;
  std::atomic<bool> any_campaign_keys{false};

  CacheStatistics snapshot() const {
    CacheStatistics statistics;
    statistics.hits = counts.load(kHits);
    statistics.misses = counts.load(kMisses);
    statistics.waits = counts.load(kWaits);
    statistics.corrupt_entries = counts.load(kCorruptEntries);
    statistics.rejected_entries = counts.load(kRejectedEntries);
    statistics.store_failures = counts.load(kStoreFailures);
    statistics.compute_time = Nanoseconds(static_cast<std::int64_t>(counts.load(kComputeNs)));
    statistics.hit_time = Nanoseconds(static_cast<std::int64_t>(counts.load(kHitNs)));
    return statistics;
  }
};

struct MemoryState {
  std::optional<Store> store;
  MemoryOptions options;
  Counters totals;
};

namespace {
// Every count goes to the function's counters and to its Memory's totals.
void add(Counters& function, Counters& memory, Count count, std::uint64_t value) {
  function.counts.add(count, value);
  memory.counts.add(count, value);
}
}  // namespace

FunctionCache::FunctionCache(std::shared_ptr<MemoryState> memory, std::string name, std::string version, KeyParts parts,
                             CacheOptions options)
    : memory_(std::move(memory)),
      name_(std::move(name)),
      version_(std::move(version)),
      key_parts_(std::move(parts)),
      options_(std::move(options)),
      verbose_(options_.verbose.value_or(memory_->options.verbose)),
      compute_once_(options_.compute_once.value_or(memory_->options.compute_once.value_or(default_compute_once()))),
      compute_once_in_campaigns_(options_.compute_once.value_or(memory_->options.compute_once.value_or(true))),
      counters_(std::make_unique<Counters>()) {
  // The key's domain comes first so that a future key scheme ("v2") cannot collide with this one.
  key_prefix_.update_text("joblet.cache-key.v1").update_text(name_).update_text(version_);
}

FunctionCache::~FunctionCache() = default;

bool FunctionCache::enabled() const noexcept { return memory_->store.has_value(); }

Claim FunctionCache::claim(const Hash128& key) const {
  const Store& store = *memory_->store;
  LoadResult found = store.load(name_, key);
  // The key covers the version, so an entry of another version here was put here by hand.
  if (found && found.entry->metadata().version != version_) {
    found.status = LoadStatus::corrupt;
    found.problem = "it was written for version '" + found.entry->metadata().version + "' of '" + name_ +
                    "', not version '" + version_ + "': it was copied or renamed here, and is not used";
  }
  switch (found.status) {
    case LoadStatus::found:
      if (!options_.validate || options_.validate(found.entry->metadata())) return Claim{std::move(found.entry), {}};
      add(*counters_, memory_->totals, kRejectedEntries, 1);
      log().debug("cache entry {} was refused by its validation callback; recomputing it",
                  store.entry_path(name_, key).string());
      break;
    case LoadStatus::corrupt:
      add(*counters_, memory_->totals, kCorruptEntries, 1);
      if (first_time("joblet.memory.corrupt:" + found.path.string())) {
        log().warn("cache entry {} is unusable ({}); recomputing and replacing it", found.path.string(), found.problem);
      }
      break;
    case LoadStatus::missing:
      break;
  }
  const auto accept = [this](const EntryMetadata& metadata) {
    return metadata.version == version_ && (!options_.validate || options_.validate(metadata));
  };
  if (const CampaignClaim mode = campaign_claim(); mode != CampaignClaim::none) {
    // A task of an elastic campaign: compute-once unless it was turned off by name; a task of a
    // run this process claimed is its alone already.
    if (!compute_once_in_campaigns_ || mode == CampaignClaim::held) return Claim{};
    if (mode == CampaignClaim::held_recheck) {
      LoadResult again = store.load_unseen(name_, key);
      if (again && accept(again.entry->metadata())) return Claim{std::move(again.entry), {}};
      return Claim{};
    }
    if (mode == CampaignClaim::wait) return store.claim(name_, key, memory_->options.lock, accept, false);
    Claim claim = store.try_claim(name_, key, memory_->options.lock, accept, /*look_first=*/false);
    if (claim.busy) throw ComputingElsewhere();
    return claim;
  }
  if (!compute_once_) return Claim{};
  return store.claim(name_, key, memory_->options.lock, accept, /*look_first=*/false);
}

void FunctionCache::report_undecodable(const Hash128& key, const std::string& why) const {
  add(*counters_, memory_->totals, kCorruptEntries, 1);
  const std::string path = memory_->store->entry_path(name_, key).string();
  if (first_time("joblet.memory.corrupt:" + path)) {
    log().warn("cache entry {} does not decode as the function's result ({}); recomputing and replacing it", path, why);
  }
}

void FunctionCache::report_store_failure(const std::string& why) const noexcept {
  add(*counters_, memory_->totals, kStoreFailures, 1);
  try {
    if (first_time("joblet.memory.write:" + memory_->store->root().string())) {
      log().warn("{}; the result is returned but not cached (this warning is shown once per cache)", why);
    } else {
      log().debug("{}; the result is returned but not cached", why);
    }
  } catch (...) {
    // Logging failed too (out of memory): the result still goes back to the caller.
  }
}

EntryMetadata FunctionCache::entry_metadata(const std::string& arguments, std::span<const ArgumentHash> argument_hashes,
                                            const std::type_info& result_type,
                                            std::chrono::duration<double> computed_in) const {
  EntryMetadata metadata;
  metadata.function = name_;
  metadata.version = version_;
  metadata.key_parts = key_parts_;
  metadata.key_parts->arguments.assign(argument_hashes.begin(), argument_hashes.end());
  metadata.arguments =
      arguments.size() > kMaxArgumentSummary ? arguments.substr(0, kMaxArgumentSummary) + "..." : arguments;
  metadata.result_type = demangle(result_type.name());
  metadata.duration = computed_in;
  metadata.created = std::chrono::system_clock::now();
  // Who computed it: `joblet status` tells which hosts and jobs a campaign's results came from.
  metadata.extra["host"] = host_name_for_files();
  metadata.extra["pid"] = std::to_string(process_id());
  if (!job_name_for_files().empty()) metadata.extra["job"] = job_name_for_files();
  return metadata;
}

void FunctionCache::publish(const Hash128& key, const std::string& arguments,
                            std::span<const ArgumentHash> argument_hashes, const std::type_info& result_type,
                            std::chrono::duration<double> computed_in, std::string_view encoding,
                            const DumpWriter& arrays) const noexcept {
  if (TracedCachedCall* traced = thread_context().traced_call) {
    try {
      traced->arguments = arguments.substr(0, kMaxArgumentSummary);
    } catch (...) {  // out of memory: the trace goes without the summary
    }
  }
  try {
    const Store& store = *memory_->store;
    EntryMetadata metadata = entry_metadata(arguments, argument_hashes, result_type, computed_in);
    if (arrays.array_count() == 0) {
      store.save(name_, key, std::move(metadata),
                 std::as_bytes(std::span<const char>(encoding.data(), encoding.size())));
      return;
    }
    const std::string binding = new_binding();
    DumpOptions options;
    options.fsync = store.options().fsync;
    metadata.extra["companion"] = binding;
    // The store writes the companion first: an entry is only published once the file it names is.
    store.save_with_companion(name_, key, std::move(metadata), [&](const std::filesystem::path& companion) {
      arrays.write(companion, encoding, demangle(result_type.name()), options, binding, describe_write_errno);
    });
  } catch (const Error& e) {
    report_store_failure(e.message());
  } catch (const std::exception& e) {
    report_store_failure(std::string("cannot write a cache entry of '") + name_ + "': " + e.what());
  }
}

MmapMode FunctionCache::mmap_mode() const noexcept { return memory_->options.mmap_mode; }

std::size_t FunctionCache::array_file_threshold() const noexcept { return memory_->options.array_file_threshold; }

void FunctionCache::report_unencodable(const Hash128& key, const std::string& why) const noexcept {
  add(*counters_, memory_->totals, kStoreFailures, 1);
  try {
    if (first_time("joblet.memory.encode:" + name_)) {
      log().warn("the result of '{}' (key {}) cannot be encoded ({}); it is returned but not cached", name_, key.hex(),
                 why);
    }
  } catch (...) {
  }
}

void FunctionCache::log_miss(const Hash128& key, const std::string& arguments,
                             std::span<const ArgumentHash> argument_hashes, const std::type_info& result_type,
                             bool forced) const noexcept {
  try {
    if (verbose_ >= kVerboseMisses) {
      say_verbosely(fmt::format("Memory: computing {}({}){}, key {}", name_, arguments,
                                forced ? " (forced by call())" : "", key.hex()));
    }
    if (!log().should_log(spdlog::level::debug)) return;
    if (forced) {
      log().debug("cache miss of '{}' ({}), key {}: call() recomputes it whatever is stored", name_, arguments,
                  key.hex());
      return;
    }
    log().debug("{}", explain_miss(key, arguments, argument_hashes, result_type));
  } catch (...) {
    // Logging failed (out of memory): the call goes on without it.
  }
}

std::string FunctionCache::explain_miss(const Hash128& key, const std::string& arguments,
                                        std::span<const ArgumentHash> argument_hashes,
                                        const std::type_info& result_type) const {
  std::string text = fmt::format("cache miss of '{}' ({}), key {}, argument hashes [", name_, arguments, key.hex());
  for (std::size_t position = 0; position < argument_hashes.size(); ++position) {
    text += (position == 0 ? "" : ", ");
    text += argument_hashes[position].ignored ? std::string("ignored") : argument_hashes[position].hash.hex();
  }
  text += "]: ";
  EntryMetadata subject = entry_metadata(arguments, argument_hashes, result_type, {});
  subject.key = key;
  // Bounded: the scan is for a person reading a debug log, not worth minutes on a huge cache.
  const std::vector<EntryInfo> listed =
      memory_->store->list(ListOptions{.function = name_, .read_metadata = true, .max_entries = kMaxEntriesExplained});
  std::size_t unreadable = 0;
  for (const EntryInfo& info : listed) {
    if (info.key == key) {
      if (!info.metadata) return text + "its entry is there but unusable (" + info.problem + ")";
      return text +
             "its entry is there, but was not used: refused by the validation callback, not decodable as the "
             "result, or written by another process since this one looked";
    }
    if (!info.metadata) ++unreadable;
  }
  const std::string looked_at =
      listed.size() == kMaxEntriesExplained ? fmt::format(" (the first {} looked at)", listed.size()) : "";
  const std::vector<NearEntry> near = nearest_entries(subject, listed);
  if (near.empty()) {
    return text + fmt::format("no other entry of '{}' is stored in {}{}", name_, memory_->store->root().string(),
                              unreadable == 0 ? std::string() : fmt::format(" ({} unreadable)", unreadable));
  }
  const NearEntry& nearest = near.front();
  text += fmt::format("the nearest of the function's {} stored entr{}{} is {} ({}): ", listed.size(),
                      listed.size() == 1 ? "y" : "ies", looked_at, nearest.info->key.hex(),
                      nearest.info->metadata->arguments);
  const auto& differences = nearest.comparison.differences;
  if (differences.empty()) return text + describe(nearest.comparison);
  text += "it differs first in " + describe(differences.front());
  if (differences.size() > 1) text += fmt::format(" ({} parts differ)", differences.size());
  if (nearest.comparison.arguments_unknown) {
    text += "; it was written without per-argument hashes (by an older joblet), so the arguments may differ too";
  }
  return text;
}

void FunctionCache::log_hit(const CallReport& report, const std::string& arguments) const noexcept {
  try {
    const auto saved = report.computed_in - report.duration;
    say_verbosely(fmt::format("Memory: loaded {}({}) in {}, computed in {}: {} saved", name_, arguments,
                              duration_text(report.duration), duration_text(report.computed_in),
                              saved.count() > 0 ? duration_text(saved) : std::string("nothing")));
  } catch (...) {
  }
}

bool FunctionCache::record(const CallReport& report) const {
  // An elastic campaign's rounds compute or load each result once, and the call then loads them
  // all again to return them: those reloads are not hits of their own.
  // In a worker process, the rounds' keys were noted in other processes: the call says it.
  bool reload = report.hit && thread_context().loads_campaign_results;
  if (campaign_claim() != CampaignClaim::none) {
    const std::lock_guard lock(counters_->campaign_mutex);
    counters_->campaign_keys.insert(report.key);
    counters_->any_campaign_keys.store(true, std::memory_order_relaxed);
  } else if (report.hit && counters_->any_campaign_keys.load(std::memory_order_relaxed)) {
    const std::lock_guard lock(counters_->campaign_mutex);
    if (counters_->campaign_keys.erase(report.key) == 1) {
      counters_->any_campaign_keys.store(!counters_->campaign_keys.empty(), std::memory_order_relaxed);
      reload = true;
    }
  }
  if (TracedCachedCall* traced = thread_context().traced_call) {
    traced->function = &name_;
    traced->key_high = report.key.high;
    traced->key_low = report.key.low;
    traced->cache = reload       ? TracedCachedCall::reloaded
                    : report.hit ? TracedCachedCall::hit
                                 : TracedCachedCall::computed;
    traced->computed_seconds = report.hit ? report.computed_in.count() : 0.0;
    if (report.hit) traced->arguments.clear();
  }
  if (reload) return false;
  if (SharedCounters* tally = thread_context().call_tally) {
    if (report.hit) {
      tally->add(kTallyCacheHits, 1);
      tally->add(kTallySavedNs, to_ns(report.computed_in));
    } else {
      tally->add(kTallyCacheComputed, 1);
    }
  }
  if (report.hit) {
    add(*counters_, memory_->totals, kHits, 1);
    if (report.waited) add(*counters_, memory_->totals, kWaits, 1);
    add(*counters_, memory_->totals, kHitNs, to_ns(report.duration));
  } else {
    add(*counters_, memory_->totals, kMisses, 1);
    add(*counters_, memory_->totals, kComputeNs, to_ns(report.computed_in));
    if (verbose_ >= kVerboseMisses && enabled()) {
      say_verbosely(fmt::format("Memory: {} computed in {}", name_, duration_text(report.computed_in)));
    }
  }
  if (options_.on_call) options_.on_call(report);
  return true;
}

void FunctionCache::record_failure(const Hash128& key, const std::exception_ptr& error) const noexcept {
  if (!enabled()) return;
  try {
    TaskFailure failure{.key = key,
                        .host = host_name_for_files(),
                        .job = job_name_for_files(),
                        .pid = static_cast<long>(process_id()),
                        .when = std::chrono::system_clock::now()};
    try {
      std::rethrow_exception(error);
    } catch (const TaskError& e) {  // made again from another process: it names the original
      failure.error_type = e.original_type();
      failure.error = e.original_message();
    } catch (const Error& e) {
      failure.error_type = demangle(typeid(e).name());
      failure.error = e.message();
    } catch (const std::exception& e) {
      failure.error_type = demangle(typeid(e).name());
      failure.error = e.what();
    } catch (...) {
      failure.error_type = "unknown";
      failure.error = "an exception that is not a std::exception";
    }
    const CacheRoot root(std::filesystem::absolute(memory_->store->root()).lexically_normal().string());
    record_task_failure(root, name_, failure);
  } catch (const Error& e) {
    if (first_time("record-task-failure")) {
      log().warn("cannot record the failure of a call of '{}' for `joblet status`: {}", name_, e.message());
    }
  } catch (...) {  // out of memory: the failure goes unrecorded; the call reports it anyway
  }
}

bool FunctionCache::contains(const Hash128& key) const {
  if (!enabled()) return false;
  const auto metadata = memory_->store->metadata(name_, key);
  return metadata && metadata->version == version_ && (!options_.validate || options_.validate(*metadata));
}

bool FunctionCache::forget(const Hash128& key) const { return enabled() && memory_->store->remove(name_, key); }

std::size_t FunctionCache::clear() const { return enabled() ? memory_->store->clear(name_) : 0; }

CacheStatistics FunctionCache::statistics() const { return counters_->snapshot(); }

std::optional<std::filesystem::path> FunctionCache::location() const {
  if (!enabled()) return std::nullopt;
  return memory_->store->root();
}

ShelvedEntry load_shelved(const std::string& location, const std::string& function, const Hash128& key) {
  if (location.empty())
    throw StorageError("this ShelvedResult refers to nothing (default-constructed); get one from call_and_shelve");
  const Store store(location);
  LoadResult found = store.load(function, key);
  if (found.status == LoadStatus::found) {
    return ShelvedEntry{std::move(*found.entry)};
  }
  throw StorageError("the shelved result of '" + function + "' (key " + key.hex() + ") is no longer usable in " +
                     location + " (" +
                     (found.status == LoadStatus::missing ? "it was cleared or pruned" : found.problem) +
                     "); call call_and_shelve again to recompute it");
}

void clear_shelved(const std::string& location, const std::string& function, const Hash128& key) {
  if (!location.empty()) Store(location).remove(function, key);
}

std::string describe_value(const std::type_info& type, const std::string& value_text) {
  std::string name = demangle(type.name());
  if (name == "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >") name = "std::string";
  return value_text.empty() ? name : name + " " + value_text;
}

std::string shortest_text(double value) {
  char buffer[32];
  const auto [end, status] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return status == std::errc{} ? std::string(buffer, end) : std::to_string(value);
}

std::string quote_for_summary(std::string_view text) {
  constexpr std::size_t kShown = 40;
  std::string quoted = "\"";
  for (char c : text.substr(0, kShown)) quoted += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  quoted += text.size() > kShown ? "\"..." : "\"";
  return quoted;
}

void pause_before_looking_again(int attempt) {
  std::this_thread::sleep_for(std::chrono::microseconds(std::min(50 << std::min(attempt, 10), 10'000)));
}

namespace {
std::atomic<bool> g_default_compute_once{false};
}  // namespace
void set_default_compute_once(bool on) noexcept { g_default_compute_once.store(on, std::memory_order_relaxed); }
bool default_compute_once() noexcept { return g_default_compute_once.load(std::memory_order_relaxed); }

}  // namespace detail

ValidationCallback expires_after(std::chrono::duration<double> age) {
  return [age](const EntryMetadata& metadata) { return std::chrono::system_clock::now() - metadata.created <= age; };
}

Memory::Memory() : Memory(std::nullopt) {}

Memory::Memory(std::nullopt_t, MemoryOptions options) : state_(std::make_shared<detail::MemoryState>()) {
  // Checked here even when compute_once is off: a cached function may turn it on.
  validate_lock_options(options.lock);
  if (options.verbose < 0) {
    throw ConfigError("MemoryOptions::verbose = " + std::to_string(options.verbose) +
                      " is not valid: use 0 (silent), 1 (misses) or 10 (misses and hits)");
  }
  state_->options = std::move(options);
}

Memory::Memory(std::filesystem::path location, MemoryOptions options) : Memory(std::nullopt, options) {
  state_->store.emplace(std::move(location), state_->options.store);
}

std::shared_ptr<const detail::FunctionCache> Memory::make_function_cache(std::string name, CacheOptions options,
                                                                         std::string_view source) const {
  validate_function_name(name);
  if (options.verbose && *options.verbose < 0) {
    throw ConfigError("the verbose option of cached function '" + name + "' is " + std::to_string(*options.verbose) +
                      "; use 0 (silent), 1 (misses) or 10 (misses and hits)");
  }
  KeyParts parts;
  parts.version = options.version;
  if (!source.empty()) parts.source_salt = hash_bytes(source.data(), source.size()).hex().substr(0, 16);
  if (options.salt_with_build_id) parts.build_salt = detail::build_id().substr(0, 32);
  std::string version = parts.version;
  const auto append = [&](const std::string& part) { version += (version.empty() ? "" : "+") + part; };
  if (!parts.source_salt.empty()) append("src:" + parts.source_salt);
  if (!parts.build_salt.empty()) append("build:" + parts.build_salt);
  if (version.size() > detail::kMaxVersionLength) {
    throw ConfigError("the version of cached function '" + name + "' is " + std::to_string(version.size()) +
                      " bytes long; keep it under 4096 (a number or a short tag)");
  }
  return std::make_shared<const detail::FunctionCache>(state_, std::move(name), std::move(version), std::move(parts),
                                                       std::move(options));
}

std::optional<std::filesystem::path> Memory::location() const {
  if (!state_->store) return std::nullopt;
  return state_->store->root();
}

const Store* Memory::store() const noexcept { return state_->store ? &*state_->store : nullptr; }

std::size_t Memory::clear() const { return state_->store ? state_->store->clear() : 0; }

ReduceReport Memory::reduce_size(const ReduceOptions& options) const {
  return state_->store ? state_->store->reduce_size(options) : ReduceReport{};
}

CacheStatistics Memory::statistics() const { return state_->totals.snapshot(); }

}  // namespace joblet
