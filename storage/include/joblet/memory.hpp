#pragma once
/// @file
/// Memory: joblib's disk memoization cache, in C++, on a filesystem that every process, rank, job
/// and rerun shares.
///
/// @code
///   joblet::Memory memory("/scratch/me/joblet-cache");
///   auto cached = memory.cache("simulate", simulate, {.version = "2"});
///   double y = cached(params);                     // computed once, then loaded
///
///   // Arguments left out of the key (joblib's ignore=[...]), by position:
///   auto fit = memory.cache("fit", fit_model, joblet::ignore_args<2>, {.version = "1"});
///
///   // The version follows the lambda's source text: editing the lambda invalidates its entries.
///   auto square = memory.cache("square", JOBLET_SOURCE_VERSIONED([](int x) { return x * x; }));
/// @endcode
///
/// A call hashes the function's name and version with its arguments (XXH3-128 over the codec's
/// encoding, see hash.hpp), looks the key up in the store (store.hpp), and on a miss runs the
/// function and stores its result. Exceptions are never cached. Arguments must be hashable
/// (encodable by the codec) unless ignored; results must be encodable (joblet::Encodable).
/// A failure to write the cache (a full disk, a read-only directory) is a warning: the computed
/// result is returned all the same.
///
/// Large arrays in results (NDArray, std::vector of numbers, from MemoryOptions::
/// array_file_threshold = 1 MiB up) are stored as datasets of a companion HDF5 dump file next to
/// the entry (h5py reads it). With MemoryOptions::mmap_mode a hit maps them instead of reading
/// them: O(1) whatever their size, as joblib's Memory(mmap_mode='r'). Mapped hits check the
/// entry, the companion's binding to it and its structure, not the array bytes (that would read
/// them); hits without mmap_mode check every array's checksum as they read it.
///
/// Why a call missed: an entry also records the parts of its key (EntryMetadata::key_parts): the
/// explicit version, the source and build id salts, and each argument's hash, which only a miss
/// computes (a hit costs no more for them). `joblet cache explain <function> --key K` names the
/// parts in which a missed key differs from the entries stored before it; at JOBLET_LOG_LEVEL=debug
/// each miss names the function's nearest entry and the first part that differs; and
/// MemoryOptions::verbose logs each miss (1) and each hit (10), as joblib's Memory(verbose=...).
///
/// A CachedFunction is cheap to copy and safe to call from many threads and processes at once.

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "joblet/cached_call.hpp"
#include "joblet/codec.hpp"
#include "joblet/detail/function_cache.hpp"
#include "joblet/detail/signature.hpp"
#include "joblet/dump.hpp"
#include "joblet/error.hpp"
#include "joblet/hash.hpp"
#include "joblet/store.hpp"

namespace joblet {

/// Argument positions (0-based) left out of the key: `memory.cache("f", f, joblet::ignore_args<1, 2>)`.
/// Ignored arguments need not be hashable (a logger, an output stream, a verbosity level).
template <std::size_t... Positions>
struct IgnoreArgs {
  /// Whether the argument at position I is left out of the key.
  template <std::size_t I>
  static constexpr bool contains = ((I == Positions) || ...);
};
/// The IgnoreArgs to pass to Memory::cache(): `joblet::ignore_args<0, 2>` leaves out the first
/// and third arguments.
template <std::size_t... Positions>
inline constexpr IgnoreArgs<Positions...> ignore_args{};

/// A function with the source text it was written as; made by JOBLET_SOURCE_VERSIONED.
template <class F>
struct SourceVersioned {
  F function;               ///< the function to cache
  std::string_view source;  ///< its source text (the macro's is a literal); hashed by Memory::cache()
};
/// Deduces F from the function, so that `SourceVersioned{f, text}` needs no template argument.
template <class F>
SourceVersioned(F, std::string_view) -> SourceVersioned<F>;

/// JOBLET_SOURCE_VERSIONED(lambda): the lambda, versioned by its own source text as the
/// preprocessor spells it (comments dropped, runs of whitespace made one space). Any edit of the
/// lambda's text gives it a new version, so its old entries are no longer used. Edits to what
/// the lambda calls are not seen: give those functions explicit versions.
#define JOBLET_SOURCE_VERSIONED(...) (::joblet::SourceVersioned{__VA_ARGS__, #__VA_ARGS__})

/// A validation callback refusing entries created longer ago than `age` (joblib's expires_after).
ValidationCallback expires_after(std::chrono::duration<double> age);

namespace detail {
/// The value an entry holds: decoded from its payload, or read (mapped, with an mmap mode) from
/// its companion dump file, which must carry the binding the entry names. Throws
/// SerializationError or StorageError when it cannot, FileReplaced when the companion was
/// replaced (or removed) since the entry was read: look at the entry again.
template <class V>
V decode_entry(const StoredEntry& entry, MmapMode mode) {
  if (entry.metadata().payload_kind != PayloadKind::hdf5_companion) return decode<V>(entry.payload());
  const auto binding = entry.metadata().extra.find("companion");
  if (binding == entry.metadata().extra.end() || binding->second.empty()) {
    throw SerializationError("the entry names no companion file");
  }
  // Mapped arrays are not read, so not checked: O(1) hits. Arrays read into memory are.
  DumpFile file(entry.companion(), {.mmap_mode = mode, .verify = mode == MmapMode::none}, dump_type_name<V>(),
                binding->second, FileUse::cache_companion, entry.companion_opened_as());
  DumpReader reader(file);
  return decode_from<V>(file.encoding(), &reader);
}

/// How many times a hit looks at its entry again when the entry's companion was replaced
/// between reading the one and opening the other (a writer republished it meanwhile).
inline constexpr int kReplacedCompanionRetries = 16;
}  // namespace detail

/// A small, serializable reference to a stored result (joblib's MemorizedResult): pass it to
/// another process or rank and get() the value there. With a Memory that does not cache, it
/// holds the value itself.
template <class R>
class ShelvedResult {
 public:
  /// Refers to nothing: get() throws StorageError.
  ShelvedResult() = default;
  /// Refers to the result of `function` stored under `key` in the cache directory `location`.
  ShelvedResult(std::string location, std::string function, Hash128 key)
      : location_(std::move(location)), function_(std::move(function)), key_(key) {}
  /// Holds `value` itself (a Memory that caches nothing, or a result the cache could not store).
  explicit ShelvedResult(R value) : value_(std::move(value)) {}

  /// Loads the value (or returns the one it holds). Throws StorageError when it was cleared or
  /// pruned meanwhile, or does not decode as R.
  R get() const {
    if (value_) return *value_;
    for (int attempt = 0;; ++attempt) {
      const detail::ShelvedEntry shelved = detail::load_shelved(location_, function_, key_);
      try {
        return detail::decode_entry<R>(shelved.entry, MmapMode::none);
      } catch (const detail::FileReplaced& e) {
        if (attempt < detail::kReplacedCompanionRetries) {  // republished meanwhile: read it again
          detail::pause_before_looking_again(attempt);
          continue;
        }
        throw StorageError("the shelved result of '" + function_ + "' in " + location_ + " keeps changing (" +
                           e.message() + "); get() it again once the processes rewriting it are done");
      } catch (const Error& e) {
        throw StorageError("the shelved result of '" + function_ + "' in " + location_ +
                           " does not decode as the requested type (" + e.message() +
                           "); get() it with the cached function's result type");
      }
    }
  }
  /// Removes the stored value from the cache; does nothing for one that holds its value.
  void clear() const {
    if (!value_) detail::clear_shelved(location_, function_, key_);
  }
  /// The cache key of the result; zero when it holds its value.
  const Hash128& key() const noexcept { return key_; }
  /// The name of the cached function; empty when it holds its value.
  const std::string& function() const noexcept { return function_; }
  /// The cache directory; empty when it holds its value.
  const std::string& location() const noexcept { return location_; }

  /// cereal serialization: the reference, and the value when it holds one.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(location_, function_, key_, value_);
  }

 private:
  std::string location_;
  std::string function_;
  Hash128 key_;
  std::optional<R> value_;
};

namespace detail {
template <class T>
inline constexpr bool is_source_versioned = false;
template <class F>
inline constexpr bool is_source_versioned<SourceVersioned<F>> = true;
template <class T>
concept IsSourceVersioned = is_source_versioned<T>;
}  // namespace detail

/// A function F cached with the argument positions of Ignore left out of its keys. Only the
/// partial specialization for an IgnoreArgs is defined: the class Memory::cache() returns.
template <class F, class Ignore = IgnoreArgs<>>
class CachedFunction;

/// A cached function: call it like the function. Returned by Memory::cache(). Cheap to copy
/// (copies share the cache and the statistics) and safe to call from many threads at once.
template <class F, std::size_t... Ignored>
class CachedFunction<F, IgnoreArgs<Ignored...>> {
  using Ignore = IgnoreArgs<Ignored...>;

 public:
  using is_cached_function = std::true_type;  ///< marks it for the CachedCallable concept
  /// What a call with arguments of types A returns: the function's result, without const or
  /// reference.
  template <class... A>
  using ResultOf = std::remove_cvref_t<std::invoke_result_t<const F&, A...>>;

  /// Wraps `fn` with its cache; made by Memory::cache(), which is how to get one.
  CachedFunction(F fn, std::shared_ptr<const detail::FunctionCache> cache)
      : function_(std::move(fn)), cache_(std::move(cache)) {}

  /// Hit: loads the stored result. Miss: runs the function and stores its result. The function's
  /// exceptions reach the caller and are never stored; failing to store is only a warning.
  template <class... A>
  requires std::invocable<const F&, A...> ResultOf<A...>
  operator()(A&&... args) const { return run(/*force=*/false, std::forward<A>(args)...); }
  /// Runs the function even if its result is stored, and stores the new result (joblib's call()).
  template <class... A>
  requires std::invocable<const F&, A...> ResultOf<A...> call(A&&... args)
  const { return run(/*force=*/true, std::forward<A>(args)...); }
  /// Makes sure the result is stored, and returns a reference to it instead of the value.
  template <class... A>
  requires std::invocable<const F&, A...> ShelvedResult<ResultOf<A...>> call_and_shelve(A&&... args)
  const {
    using R = ResultOf<A...>;
    static_assert(!std::is_void_v<R>, "call_and_shelve needs a function that returns a value");
    if (!cache_->enabled()) return ShelvedResult<R>(run(false, std::forward<A>(args)...));
    const Hash128 key = key_of<R>(args...);
    if (!cache_->contains(key)) {
      R value = run(false, std::forward<A>(args)...);
      // Not stored (the cache could not be written): the reference carries the value instead.
      if (!cache_->contains(key)) return ShelvedResult<R>(std::move(value));
    }
    return ShelvedResult<R>(cache_->location()->string(), cache_->name(), key);
  }
  /// Whether a usable result for these arguments is stored (payload not read).
  template <class... A>
  requires std::invocable<const F&, A...>
  bool check_call_in_cache(const A&... args) const {
    return cache_->enabled() && cache_->contains(key_of<ResultOf<const A&...>>(args...));
  }
  /// The cache key of a call with these arguments.
  template <class... A>
  requires std::invocable<const F&, A...> Hash128 key(const A&... args)
  const { return key_of<ResultOf<const A&...>>(args...); }
  /// Records in the cache that the call with this key failed with `error`, for `joblet status`
  /// (a call records its own failures: Parallel records those of tasks whose worker process died
  /// or ran past its timeout). Never throws; a cache that cannot be written gets a warning.
  void record_failure(const Hash128& key, const std::exception_ptr& error) const noexcept {
    cache_->record_failure(key, error);
  }
  /// Removes every stored result of this function (all versions); returns how many.
  std::size_t clear() const { return cache_->clear(); }
  /// This function's hits, misses, waits and failures, counted in this process and the worker
  /// processes its calls forked (processes backend); each MPI rank counts its own.
  CacheStatistics statistics() const { return cache_->statistics(); }
  /// The name it is cached under (given to Memory::cache()).
  const std::string& name() const noexcept { return cache_->name(); }
  /// The cache directory; nullopt for a Memory that caches nothing.
  std::optional<std::filesystem::path> location() const { return cache_->location(); }
  /// The version keys are made with (the explicit one, plus source and build id salts).
  const std::string& version() const noexcept { return cache_->version(); }
  /// The wrapped function.
  const F& function() const noexcept { return function_; }

 private:
  using Clock = std::chrono::steady_clock;

  template <std::size_t I, class A>
  using Canonical = typename detail::CanonicalParameter<F, I, A>::type;

  template <class R, class... A>
  Hash128 key_of(const A&... args) const {
    static_assert(((Ignored < sizeof...(A)) && ...), "joblet::ignore_args names a position this call does not have");
    Hasher hasher = cache_->key_prefix();
    // The result type is keyed too: a function whose return type changed cannot load old bytes
    // as the new type.
    hasher.update_text(typeid(R).name());
    hash_arguments(hasher, std::index_sequence_for<A...>{}, args...);
    return hasher.digest();
  }

  template <std::size_t... I, class... A>
  static void hash_arguments(Hasher& hasher, std::index_sequence<I...>, const A&... args) {
    (hash_argument<I>(hasher, args), ...);
  }

  template <std::size_t I, class A>
  static void hash_argument(Hasher& hasher, const A& arg) {
    if constexpr (!Ignore::template contains<I>) {
      using P = Canonical<I, A>;
      static_assert(Hashable<P>,
                    "a cached function's argument is not hashable: give its type a cereal serialize() "
                    "function, or leave it out of the key with joblet::ignore_args<position>");
      const P& canonical = arg;  // binds directly when A is P; converts like the call would otherwise
      const auto position = static_cast<std::uint64_t>(I);
      hasher.update_bytes(&position, sizeof position);
      hasher.update(canonical);
    }
  }

  // Each argument's part of the key, for the entry a miss stores: a second pass over the
  // arguments, made only on a miss, so that a hit pays nothing for it.
  template <std::size_t... I, class... A>
  static std::array<ArgumentHash, sizeof...(A)> hash_each(std::index_sequence<I...>, const A&... args) {
    return {argument_hash<I>(args)...};
  }

  template <std::size_t I, class A>
  static ArgumentHash argument_hash(const A& arg) {
    if constexpr (Ignore::template contains<I>) {
      return ArgumentHash{.ignored = true, .hash = {}};
    } else {
      using P = Canonical<I, A>;
      const P& canonical = arg;
      return ArgumentHash{.ignored = false, .hash = hash_value(canonical)};
    }
  }

  template <class... A>
  static std::string summarize(const A&... args) {
    std::string summary;
    summarize_each(summary, std::index_sequence_for<A...>{}, args...);
    return summary;
  }
  template <std::size_t... I, class... A>
  static void summarize_each(std::string& summary, std::index_sequence<I...>, const A&... args) {
    ((summary += (I == 0 ? "" : ", "), summary += describe<I>(args)), ...);
  }
  template <std::size_t I, class A>
  static std::string describe(const A& arg) {
    if constexpr (Ignore::template contains<I>) {
      return "(ignored)";
    } else {
      using P = Canonical<I, A>;
      const P& value = arg;
      if constexpr (std::is_same_v<P, bool>) {
        return detail::describe_value(typeid(P), value ? "true" : "false");
      } else if constexpr (std::is_floating_point_v<P>) {
        return detail::describe_value(typeid(P), detail::shortest_text(static_cast<double>(value)));
      } else if constexpr (std::is_arithmetic_v<P>) {
        return detail::describe_value(typeid(P), std::to_string(value));
      } else if constexpr (std::is_convertible_v<const P&, std::string_view>) {
        return detail::describe_value(typeid(P), detail::quote_for_summary(std::string_view(value)));
      } else {
        return detail::describe_value(typeid(P), "");
      }
    }
  }

  template <class... A>
  ResultOf<A...> run(bool force, A&&... args) const {
    using R = ResultOf<A...>;
    using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
    detail::require_encodable<Stored>();
    const auto start = Clock::now();
    CallReport report;
    if (!cache_->enabled()) {
      if constexpr (std::is_void_v<R>) {
        std::invoke(function_, std::forward<A>(args)...);
        finish_miss(report, start, Clock::now() - start);
        return;
      } else {
        R value = std::invoke(function_, std::forward<A>(args)...);
        finish_miss(report, start, Clock::now() - start);
        return value;
      }
    }
    report.key = key_of<R>(args...);
    EntryLock lock;
    for (int attempt = 0; !force; ++attempt) {
      Claim claim = cache_->claim(report.key);
      if (claim.entry) {
        std::optional<Stored> value;
        try {
          value = detail::decode_entry<Stored>(*claim.entry, cache_->mmap_mode());
        } catch (const detail::FileReplaced& e) {
          // Another process republished the entry between our reading it and opening its
          // companion: a benign race. Read the new entry; recomputing would set off the same
          // race in every other reader.
          if (attempt < detail::kReplacedCompanionRetries) {
            detail::pause_before_looking_again(attempt);
            continue;
          }
          cache_->report_undecodable(report.key, e.message());
        } catch (const SerializationError& e) {
          cache_->report_undecodable(report.key, e.message());
        } catch (const StorageError& e) {  // its companion file is damaged
          cache_->report_undecodable(report.key, e.message());
        }
        if (value) {
          report.hit = true;
          report.waited = claim.waited;
          report.computed_in = claim.entry->metadata().duration;
          report.duration = Clock::now() - start;
          if (cache_->record(report) && cache_->verbose() >= detail::kVerboseHits) {
            cache_->log_hit(report, summarize(args...));
          }
          if constexpr (std::is_void_v<R>) {
            return;
          } else {
            return std::move(*value);
          }
        }
      }
      lock = std::move(claim.lock);
      break;
    }
    const std::string arguments = summarize(args...);
    const auto argument_hashes = hash_each(std::index_sequence_for<A...>{}, args...);
    cache_->log_miss(report.key, arguments, argument_hashes, typeid(Stored), force);
    const auto compute_start = Clock::now();
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(function_, std::forward<A>(args)...);
        const std::chrono::duration<double> computed_in = Clock::now() - compute_start;
        store(report.key, arguments, argument_hashes, computed_in, std::monostate{});
        finish_miss(report, start, computed_in);
      } else {
        R value = std::invoke(function_, std::forward<A>(args)...);
        const std::chrono::duration<double> computed_in = Clock::now() - compute_start;
        store(report.key, arguments, argument_hashes, computed_in, value);
        finish_miss(report, start, computed_in);
        return value;
      }
    } catch (...) {
      cache_->record_failure(report.key, std::current_exception());  // for `joblet status`
      throw;
    }
  }

  template <class V>
  void store(const Hash128& key, const std::string& arguments, std::span<const ArgumentHash> argument_hashes,
             std::chrono::duration<double> computed_in, const V& value) const {
    std::string bytes;
    // Large arrays are collected for a companion file as the value encodes; without any, the
    // bytes are exactly the value's plain encoding and the entry holds them.
    detail::DumpWriter arrays(cache_->array_file_threshold());
    try {
      detail::encode_into(value, bytes, &arrays);
    } catch (const SerializationError& e) {
      cache_->report_unencodable(key, e.message());
      return;
    }
    cache_->publish(key, arguments, argument_hashes, typeid(V), computed_in, bytes, arrays);
  }

  void finish_miss(CallReport& report, Clock::time_point start, std::chrono::duration<double> computed_in) const {
    report.hit = false;
    report.duration = Clock::now() - start;
    report.computed_in = computed_in;
    cache_->record(report);
  }

  F function_;
  std::shared_ptr<const detail::FunctionCache> cache_;
};

/// joblib's Memory: a cache directory, or none, through which functions are cached (see
/// memory.hpp). Cheap to copy: copies share the store and the statistics. The constructors throw
/// ConfigError for malformed MemoryOptions::lock settings.
class Memory {
 public:
  /// A Memory that caches nothing: cached functions call through (joblib's location=None).
  Memory();
  /// A Memory that caches nothing, as Memory() is, with `options` checked and kept (so code can
  /// take a location or std::nullopt alike).
  explicit Memory(std::nullopt_t, MemoryOptions options = {});
  /// Caches in `location` (created when first written to).
  explicit Memory(std::filesystem::path location, MemoryOptions options = {});

  /// Caches `function` under `name`, which with the version identifies it across programs and
  /// runs: two functions must not share a name. The name becomes a directory name in the cache,
  /// so keep to letters, digits and `_-.:`; ConfigError for one that is empty, over 200 bytes,
  /// starts with a dot or holds a path separator or control character, and for a version (with
  /// its salts) over 4096 bytes.
  template <class F>
  requires(!detail::IsSourceVersioned<std::decay_t<F>>) CachedFunction<std::decay_t<F>> cache(std::string name,
                                                                                              F&& function,
                                                                                              CacheOptions options = {})
  const { return cache(std::move(name), std::forward<F>(function), ignore_args<>, std::move(options)); }
  /// The same, leaving the arguments at the positions of the IgnoreArgs (ignore_args) out of the key.
  template <class F, std::size_t... I>
  requires(!detail::IsSourceVersioned<std::decay_t<F>>) CachedFunction<std::decay_t<F>, IgnoreArgs<I...>> cache(
      std::string name, F&& function, IgnoreArgs<I...>, CacheOptions options = {})
  const {
    auto core = make_function_cache(std::move(name), std::move(options), {});
    return CachedFunction<std::decay_t<F>, IgnoreArgs<I...>>(std::forward<F>(function), std::move(core));
  }
  /// The same, for a function made by JOBLET_SOURCE_VERSIONED: a hash of its source text is
  /// added to the version.
  template <class F>
  CachedFunction<F> cache(std::string name, SourceVersioned<F> function, CacheOptions options = {}) const {
    return cache(std::move(name), std::move(function), ignore_args<>, std::move(options));
  }
  /// The same, for a function made by JOBLET_SOURCE_VERSIONED, with ignored arguments.
  template <class F, std::size_t... I>
  CachedFunction<F, IgnoreArgs<I...>> cache(std::string name, SourceVersioned<F> function, IgnoreArgs<I...>,
                                            CacheOptions options = {}) const {
    auto core = make_function_cache(std::move(name), std::move(options), function.source);
    return CachedFunction<F, IgnoreArgs<I...>>(std::move(function.function), std::move(core));
  }

  /// Where the cache lives; nullopt for a Memory that caches nothing.
  std::optional<std::filesystem::path> location() const;
  /// The store under this Memory; nullptr for a Memory that caches nothing.
  const Store* store() const noexcept;
  /// Removes every entry of every function; returns how many (0 for a Memory that caches nothing).
  std::size_t clear() const;
  /// joblib's reduce_size(bytes_limit, items_limit, age_limit): least recently used entries go first.
  ReduceReport reduce_size(const ReduceOptions& options) const;
  /// Totals over every function cached through this Memory (and its copies).
  CacheStatistics statistics() const;

 private:
  std::shared_ptr<const detail::FunctionCache> make_function_cache(std::string name, CacheOptions options,
                                                                   std::string_view source) const;
  std::shared_ptr<detail::MemoryState> state_;
};

}  // namespace joblet
