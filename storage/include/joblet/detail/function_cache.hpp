#pragma once
// The non-template half of a cached function (memory.cpp): everything that does not depend on
// the function's or the arguments' types. CachedFunction (memory.hpp) hashes, encodes and
// decodes; this finds, claims, stores, counts and warns.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <typeinfo>

#include "joblet/hash.hpp"
#include "joblet/mmap_mode.hpp"
#include "joblet/store.hpp"

namespace joblet {

// Counts for one cached function, or (from Memory) for all of them: in this process and in the
// worker processes forked after the function was made (the processes backend's), which add to
// the same counters; each MPI rank counts its own.
struct CacheStatistics {
  std::uint64_t hits = 0;              // results loaded from the cache (including ones another process computed)
  std::uint64_t misses = 0;            // results computed (including forced call()s and calls without a cache)
  std::uint64_t waits = 0;             // hits that waited for another process's computation (compute-once)
  std::uint64_t corrupt_entries = 0;   // entries found unreadable, then recomputed and replaced
  std::uint64_t rejected_entries = 0;  // entries the validation callback (or expires_after) refused
  std::uint64_t store_failures = 0;    // computed results that could not be written (and were returned)
  std::chrono::duration<double> compute_time{0};  // running the function, over all misses
  std::chrono::duration<double> hit_time{0};      // hashing, reading and decoding, over all hits
};

// One call of a cached function, as reported to CacheOptions::on_call.
struct CallReport {
  Hash128 key{};
  bool hit = false;
  bool waited = false;                           // a hit that waited for another process (compute-once)
  std::chrono::duration<double> duration{0};     // this call, end to end
  std::chrono::duration<double> computed_in{0};  // running the function: now on a miss, originally on a hit
};

// Decides whether a found entry may be used; false recomputes it (joblib's cache_validation_callback).
using ValidationCallback = std::function<bool(const EntryMetadata&)>;

struct CacheOptions {
  // The function's version: part of every key, so changing it stops old entries from being used.
  // They stay on disk until pruned (`joblet cache prune`, Memory::reduce_size): a call never
  // deletes entries as a side effect.
  std::string version{};
  // Also key on this program's build id (the GNU build-id note of the executable; without one,
  // a hash of the executable file): every rebuild starts afresh. Off by default.
  bool salt_with_build_id = false;
  // Overrides MemoryOptions::compute_once for this function.
  std::optional<bool> compute_once{};
  // Called on every found entry; returning false recomputes and replaces it.
  ValidationCallback validate{};
  // Called after every call, in the calling thread: per-call duration and hit or miss.
  std::function<void(const CallReport&)> on_call{};
  // Overrides MemoryOptions::verbose for this function (joblib's memory.cache(verbose=...)).
  std::optional<int> verbose{};
};

struct MemoryOptions {
  StoreOptions store{};
  // The first process to miss a key computes it while the others wait for its result (see
  // Store::claim). Unset: on when joblet::Session runs across MPI ranks (where it pays), off
  // for one process (which gains nothing from it).
  std::optional<bool> compute_once{};
  LockOptions lock{};
  // How arrays in stored results come back on a hit (joblib's Memory(mmap_mode=...)): read into
  // memory (checked against their checksums), or memory-mapped from the entry's companion file
  // in O(1), whatever their size (read_only: writes throw; copy_on_write: private pages).
  MmapMode mmap_mode = MmapMode::none;
  // Arrays (NDArray, std::vector of numbers) of at least this many bytes in a result are stored
  // as datasets of a companion HDF5 file next to the entry (readable by h5py, mappable); smaller
  // ones, and results without arrays, stay inside the entry.
  std::size_t array_file_threshold = std::size_t{1} << 20;
  // joblib's Memory(verbose=...): 0 silent; 1 or more logs each miss (the call with its argument
  // summary and key, then how long it took); 10 or more also each hit (how long the load took
  // and the time it saved). Written to joblet's log (stderr; JOBLET_LOG_FILE) at info level,
  // even where JOBLET_LOG_LEVEL is above info, as it is by default; JOBLET_LOG_LEVEL=off
  // silences it. Negative: ConfigError. Independently of it, at JOBLET_LOG_LEVEL=debug each
  // miss names the function's nearest stored entry and the first part of the key that differs.
  int verbose = 0;
};

namespace detail {

// The verbose levels of MemoryOptions::verbose.
inline constexpr int kVerboseMisses = 1;
inline constexpr int kVerboseHits = 10;
// A miss explained at debug level looks at most at this many of the function's entries.
inline constexpr std::size_t kMaxEntriesExplained = 1000;

// The compute_once that Memory uses when neither it nor a cached function sets one.
void set_default_compute_once(bool on) noexcept;
bool default_compute_once() noexcept;

struct MemoryState;
struct Counters;
class DumpWriter;

class FunctionCache {
 public:
  // `version` is the one keys are made with: `parts` (whose arguments are empty) combined.
  FunctionCache(std::shared_ptr<MemoryState> memory, std::string name, std::string version, KeyParts parts,
                CacheOptions options);
  ~FunctionCache();
  FunctionCache(const FunctionCache&) = delete;
  FunctionCache& operator=(const FunctionCache&) = delete;

  bool enabled() const noexcept;
  const std::string& name() const noexcept { return name_; }
  const std::string& version() const noexcept { return version_; }
  // MemoryOptions::verbose, or this function's CacheOptions::verbose.
  int verbose() const noexcept { return verbose_; }
  // A hasher already fed the key's domain, the function's name and its version.
  const Hasher& key_prefix() const noexcept { return key_prefix_; }

  // A usable entry: found, verified and accepted by the validation callback. With compute-once,
  // otherwise the lock to compute it under (or an entry another process computed meanwhile).
  // Corrupt and rejected entries count as misses, with one warning per corrupt entry.
  Claim claim(const Hash128& key) const;
  // The entry's bytes did not decode to the result type.
  void report_undecodable(const Hash128& key, const std::string& why) const;
  // Stores a computed value, encoded into `encoding` with `arrays` as its array writer: in the
  // entry itself, or, when the writer took arrays, in a companion dump file first and then the
  // entry naming it. Failing to is a warning, never an exception: the caller's result is never
  // lost because the cache failed.
  void publish(const Hash128& key, const std::string& arguments, std::span<const ArgumentHash> argument_hashes,
               const std::type_info& result_type, std::chrono::duration<double> computed_in, std::string_view encoding,
               const DumpWriter& arrays) const noexcept;
  // A miss about to be computed (`forced` by call()): says so at verbose level, and at debug
  // level names the nearest stored entry and the first part of the key that differs.
  void log_miss(const Hash128& key, const std::string& arguments, std::span<const ArgumentHash> argument_hashes,
                const std::type_info& result_type, bool forced) const noexcept;
  // A hit, at verbose level kVerboseHits: what it loaded, how fast, and the time it saved.
  void log_hit(const CallReport& report, const std::string& arguments) const noexcept;
  void report_unencodable(const Hash128& key, const std::string& why) const noexcept;
  MmapMode mmap_mode() const noexcept;
  std::size_t array_file_threshold() const noexcept;
  // Counts the call and reports it (on_call, the trace). False for a call that does not count:
  // an elastic campaign loading again what its rounds computed or loaded.
  bool record(const CallReport& report) const;
  // A call of `key` failed with `error`: recorded in the cache for `joblet status` (TaskFailure).
  void record_failure(const Hash128& key, const std::exception_ptr& error) const noexcept;

  bool contains(const Hash128& key) const;
  bool forget(const Hash128& key) const;
  std::size_t clear() const;
  CacheStatistics statistics() const;
  std::optional<std::filesystem::path> location() const;

 private:
  EntryMetadata entry_metadata(const std::string& arguments, std::span<const ArgumentHash> argument_hashes,
                               const std::type_info& result_type, std::chrono::duration<double> computed_in) const;
  std::string explain_miss(const Hash128& key, const std::string& arguments,
                           std::span<const ArgumentHash> argument_hashes, const std::type_info& result_type) const;
  void report_store_failure(const std::string& why) const noexcept;

  std::shared_ptr<MemoryState> memory_;
  std::string name_;
  std::string version_;
  KeyParts key_parts_;  // the parts of version_; the arguments are each call's
  CacheOptions options_;
  int verbose_;
  bool compute_once_;
  bool compute_once_in_campaigns_;  // elastic campaigns take the lock unless compute-once is off by name
  Hasher key_prefix_;
  std::unique_ptr<Counters> counters_;
};

// The build id of this program's executable, as hex (see CacheOptions::salt_with_build_id).
const std::string& build_id();

// What a ShelvedResult refers to (its companion, if any, is opened through entry.companion()).
struct ShelvedEntry {
  StoredEntry entry;
};

// Sleeps a little longer at each attempt (from 50 µs to 10 ms): a writer republishing an entry
// renames its companion, then the entry, a few milliseconds apart.
void pause_before_looking_again(int attempt);
// Loads what a ShelvedResult refers to; throws StorageError naming what to do when it is gone.
ShelvedEntry load_shelved(const std::string& location, const std::string& function, const Hash128& key);
void clear_shelved(const std::string& location, const std::string& function, const Hash128& key);

// A short description of an argument for the entry's metadata.
std::string describe_value(const std::type_info& type, const std::string& value_text);
std::string quote_for_summary(std::string_view text);
// The shortest text that reads back as `value` ("0.1", not "0.100000").
std::string shortest_text(double value);

}  // namespace detail
}  // namespace joblet
