#pragma once
/// @file
/// The content-addressed store under Memory, usable on its own: entries of encoded bytes kept in a
/// directory that every process, rank, job and rerun on a shared filesystem (NFS, Lustre, GPFS)
/// can read and write at the same time, without locks on the read or write path.
///
/// Layout: `<root>/<function>/<first 2 hex digits of the key>/<32 hex digit key>`. One entry is
/// one file: a 64-byte header, the metadata, then the payload (see storage/src/entry_format.hpp
/// for the exact bytes). Sharding by key prefix keeps directories small (Lustre and NFS slow down on
/// huge ones); the function level lets a whole function be listed or cleared cheaply.
///
/// Safety, and why it holds without locks:
/// - A writer writes a uniquely named temporary file in the entry's own directory (named after
///   host, pid, thread and a random number, hidden with a leading dot), fsyncs it (optional), and
///   rename()s it over the entry's name. rename is atomic on POSIX filesystems, NFS and Lustre
///   included, so a reader sees the old entry, the new one, or none; never part of one.
/// - Readers open only published names and verify checksums (header + metadata, and payload):
///   a missing, truncated or corrupt entry is a miss. A reader holding an open entry keeps
///   reading it even if another process replaces or prunes it meanwhile.
/// - A writer killed mid-write leaves only a hidden temporary file: the next process of its host
///   that writes the same function removes it, reduce_size() any that is old.
/// - Nothing read from an entry can make the reader allocate more than the file holds, crash,
///   hang, or touch a path outside the store: everything below the root is reached without
///   following symbolic links, and only plain, singly linked files are read
///   (storage/src/beneath.hpp). An entry names its own key, function and version, so a valid
///   entry copied under another key is refused, not served.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "joblet/hash.hpp"

namespace joblet {

/// How an entry holds its value.
enum class PayloadKind : std::uint32_t {
  inline_codec = 0,  ///< the payload is the codec's encoding of the value, inside the entry file
  /// The value is a dump file (see dump.hpp) next to the entry, `<key>.h5`, so that its arrays
  /// can be memory-mapped; the payload is empty. The entry names its companion by a random
  /// binding that the companion carries too (extra["companion"]), so an entry is never read with
  /// another writer's companion. Written first and published by rename like entries; removed with
  /// its entry. Its arrays carry their own checksums (dump's joblet_xxh3_128).
  hdf5_companion = 1,
};

/// One argument's part of a cache key (KeyParts::arguments).
struct ArgumentHash {
  /// Left out of the key (joblet::ignore_args): `hash` is zero, and a different value of this
  /// argument never makes a different key.
  bool ignored = false;
  /// joblet::hash_value() of the argument converted to the function's parameter type, as the
  /// key hashed it.
  Hash128 hash{};
  /// Equal when both are ignored, or both hash the same.
  friend bool operator==(const ArgumentHash&, const ArgumentHash&) = default;
};

/// What Memory made an entry's key of besides the function's name and the result type
/// (EntryMetadata::result_type), part by part, so that `joblet cache explain` can tell which
/// part made two keys differ. The key itself is one hash of them all (see memory.hpp).
struct KeyParts {
  std::string version{};      ///< the explicit version (CacheOptions::version), as given; may be empty
  std::string source_salt{};  ///< the hash of the function's source text (JOBLET_SOURCE_VERSIONED); empty without
  std::string build_salt{};   ///< the program's build id (CacheOptions::salt_with_build_id); empty without
  std::vector<ArgumentHash> arguments{};  ///< one per argument of the call, in order
  /// Equal when every part is.
  friend bool operator==(const KeyParts&, const KeyParts&) = default;
};

/// What an entry says about itself; readable without reading the payload (Store::metadata).
/// The caller fills the descriptive fields; the store fills those marked "set by the store" when it
/// saves. Encoded, all of it must fit in 1 MiB, or the save throws StorageError.
struct EntryMetadata {
  /// The cached function's name, which is also its directory in the store; set by the store,
  /// checked on every read.
  std::string function{};
  /// The version of the function the value was computed by, as the caller names it (Memory's
  /// `version` option). The store keeps it and does not check it; Memory refuses other versions.
  std::string version{};
  std::string arguments{};                          ///< a short, readable summary of the call's arguments
  std::string result_type{};                        ///< the C++ type of the stored value, readable
  std::chrono::duration<double> duration{0};        ///< how long computing the value took
  std::chrono::system_clock::time_point created{};  ///< when the entry was written, by the writer's clock
  std::uint64_t payload_size = 0;                   ///< bytes of the payload; set by the store
  std::uint32_t format_version = 0;                 ///< the entry file's format; set by the store
  Hash128 checksum{};                               ///< XXH3-128 of the payload; set by the store
  Hash128 key{};  ///< the key the entry was written for; set by the store, checked on every read
  /// How the entry holds its value; set by the store (by save() or Store::save_with_companion).
  PayloadKind payload_kind = PayloadKind::inline_codec;
  /// Fields of later revisions, kept by the store (readers ignore keys they do not know). Memory
  /// records the writer's "host", "pid" and Slurm "job" here, and an entry's "companion" binding.
  /// Keys starting with "joblet." are the store's own (key_parts is kept under them): saving
  /// metadata that sets one throws StorageError.
  std::map<std::string, std::string> extra{};
  /// What the key was made of, part by part; set by Memory. Unset in entries written by joblet
  /// before it recorded them, and by callers of Store::save that leave it so: for those,
  /// `joblet cache explain` can compare the version and result type but not the arguments.
  /// Read by Store::metadata(), Store::inspect() and Store::list(); the reads that serve hits
  /// (Store::load() and the claims and loads built on it, so also a ValidationCallback's
  /// metadata) leave it unset: a hit never needs it, and reading it would make every hit slower.
  std::optional<KeyParts> key_parts{};
};

/// An entry read back: its metadata and its payload bytes, verified by the read that made it
/// (Store::load and the like). It owns the whole entry file's bytes, read once; move-only.
class StoredEntry {
 public:
  /// For the store's reads: takes the bytes of a whole entry file, `file_size` long, that they
  /// have parsed and verified, whose payload starts at `payload_offset`.
  StoredEntry(EntryMetadata&& metadata, std::unique_ptr<std::byte[]> file_bytes, std::size_t file_size,
              std::size_t payload_offset) noexcept;
  /// Moves the entry: its bytes, its metadata and its companion, if any.
  StoredEntry(StoredEntry&&) noexcept;
  /// Moves another entry into this one.
  StoredEntry& operator=(StoredEntry&&) noexcept;
  /// Frees the entry's bytes and closes its companion's directory.
  ~StoredEntry();
  /// The entry's metadata.
  const EntryMetadata& metadata() const noexcept { return metadata_; }
  /// The payload: the codec's encoding of the value (PayloadKind::inline_codec), or empty
  /// (PayloadKind::hdf5_companion). Valid while this entry lives.
  std::span<const std::byte> payload() const noexcept {
    return {bytes_.get() + payload_offset_, file_size_ - payload_offset_};
  }
  /// Its companion file (PayloadKind::hdf5_companion), as messages name it; empty when it has none.
  const std::filesystem::path& companion() const noexcept;
  /// The name to open the companion file by while this entry lives: resolved through the
  /// directory the entry was read from, not through the tree as it is now (a /proc/self/fd name;
  /// the same as companion() where /proc is not mounted).
  const std::filesystem::path& companion_opened_as() const noexcept;
  /// For the store's reads: records the companion's `path`, the name it is `opened_as`, and the
  /// open `directory` that name goes through, which this entry keeps open.
  void set_companion(std::filesystem::path path, std::filesystem::path opened_as, std::shared_ptr<const void> directory);

 private:
  EntryMetadata metadata_;
  std::unique_ptr<std::byte[]> bytes_;  ///< the whole file, read once (not zero-filled first)
  std::size_t file_size_;
  std::size_t payload_offset_;
  struct Companion;
  // Most entries have no companion: an entry that is moved (it is, from the read to the caller)
  // moves one pointer, not two paths.
  std::unique_ptr<Companion> companion_{};
};

/// What a read of an entry found (LoadResult::status).
enum class LoadStatus {
  found,    ///< a usable entry: verified, and written for this function and key
  missing,  ///< no entry of that name
  corrupt,  ///< an entry exists but cannot be used: truncated, bit-flipped, not an entry, unreadable
};

/// What Store::load (or inspect(), load_unseen()) found. A corrupt entry is reported here, not
/// thrown: the caller recomputes it and saves over it.
struct LoadResult {
  /// Whether the entry was found, missing or corrupt.
  LoadStatus status = LoadStatus::missing;
  std::optional<StoredEntry> entry{};  ///< set when found
  std::string problem{};               ///< why, when corrupt: a message naming the cause
  /// The entry's file, for messages: set when the entry is missing or corrupt (a hit does not
  /// build it; Store::entry_path() names any entry).
  std::filesystem::path path{};
  /// True when the entry was found (and `entry` is set).
  explicit operator bool() const noexcept { return status == LoadStatus::found; }
};

/// How a Store writes and keeps its entries (Store's constructor).
struct StoreOptions {
  /// fsync each entry before publishing it, so that a crash of the machine cannot publish an
  /// entry whose data never reached the disk. Costs about a millisecond per write on real disks
  /// (more on NFS); without it a power loss may leave a corrupt entry, which readers detect by
  /// its checksum and recompute. A process crash is safe either way.
  bool fsync = true;
  /// For a cache shared by a group (a lab): directories get the setgid bit and group rwx, entry
  /// files group read/write, whatever the umask. Otherwise files and directories get the
  /// user's umask.
  bool group_shared = false;
  /// A budget for the whole store, in bytes of entry files, enforced by this process after its
  /// writes: once it has written a tenth of the budget since its last check, it runs
  /// reduce_size({.bytes_limit = budget}) (least recently used entries go first). Approximate
  /// by design: scanning the store after every write would cost more than the writes.
  std::optional<std::uint64_t> bytes_limit{};
  /// A hit refreshes the entry's mtime (the LRU clock) only when it is older than this: on NFS
  /// every refresh is a synchronous round trip to the server, and LRU needs no finer clock.
  std::chrono::duration<double> touch_interval{60.0};
};

/// The timing of compute-once locks (Store::claim) and of campaign run claims (CampaignRuns):
/// durations in seconds. validate_lock_options() says which are accepted.
struct LockOptions {
  /// A lock whose heartbeat has not moved for this long, as observed by the waiter's own clock
  /// (so clock skew between hosts does not matter), is considered abandoned and taken over:
  /// five heartbeats, so that the locks of a node that died go within seconds, while a holder
  /// starved by load, or a network filesystem's attribute cache (a few seconds), does not make
  /// a live lock look dead.
  std::chrono::duration<double> stale_after{10.0};
  /// How often the holder refreshes the lock's mtime. Must be under half of stale_after.
  std::chrono::duration<double> heartbeat{2.0};
  /// Waiters poll for the entry or the lock's state starting at this interval, backing off
  /// to poll_max.
  std::chrono::duration<double> poll{0.01};
  /// The longest interval between two polls of a waiter; at least poll.
  std::chrono::duration<double> poll_max{0.5};
};

/// Held while this process computes an entry that other processes may be waiting for. A
/// background thread refreshes its heartbeat; destroying it (after publishing the entry, or
/// after a failure) releases it. Move-only.
class EntryLock {
 public:
  /// A lock that is not held.
  EntryLock() noexcept;
  /// Takes over the other lock, heartbeat and all; the other is then not held.
  EntryLock(EntryLock&&) noexcept;
  /// Releases the lock this held, if any, and takes over the other; the other is then not held.
  EntryLock& operator=(EntryLock&&) noexcept;
  /// Releases the lock, if held.
  ~EntryLock();
  /// Whether this holds a lock: false once released or moved from, and for a Claim whose lock
  /// could not be created.
  bool held() const noexcept { return impl_ != nullptr; }
  /// Stops the heartbeat and removes the lock file if it is still this one (a waiter that judged
  /// it stale may have replaced it). Does nothing when not held.
  void release() noexcept;

  /// The held lock's state; defined by the store's implementation.
  struct Impl;
  /// For the store's implementation: the lock `impl` holds, whose heartbeat already runs.
  explicit EntryLock(std::unique_ptr<Impl> impl) noexcept;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Who holds an entry's compute-once lock, as the lock says (Store::lock_holder).
struct LockHolder {
  std::string host{};  ///< empty, and pid 0, when the lock does not say (not made by joblet)
  /// The holder's process id on `host`.
  long pid = 0;
  std::string job{};  ///< the holder's Slurm job, as squeue names it ("1234", "1230_4"); empty outside Slurm
  /// The holder's heartbeat is recent: it refreshed the lock within stale_after, by the cache
  /// filesystem's clock. A lock that is not live is taken over by the next process that needs it.
  bool live = false;
};

/// What Store::claim found: either a usable entry (another process computed it), or the
/// right to compute it (lock held; or not held when the lock could not be created at all, e.g.
/// a read-only cache, in which case computing without it is the only way forward).
struct Claim {
  /// The entry, when a usable one was found (one `accept` takes); the lock is then not held.
  std::optional<StoredEntry> entry{};
  /// The compute-once lock: held when no entry was found, unless it could not be created or
  /// `busy` is set. Release it (or let it go) once the entry is saved, or on failure.
  EntryLock lock{};
  /// Another process held the lock when this one first tried it: the entry came from its
  /// computation, after waiting for it (or, with the lock held, the lock was taken over from it).
  bool waited = false;
  /// Set by try_claim alone: another live process holds the lock; nothing was found, nothing is held.
  bool busy = false;
};

/// What a file that Store::list found is (EntryInfo::kind).
enum class EntryKind {
  entry,  ///< a published entry
  /// A writer's temporary file (a live writer's, or one left by a killed writer), or a companion
  /// file whose entry is gone or not yet published.
  temporary,
  lock,  ///< a compute-once lock
  /// Something the cache did not make where it keeps its own files (a symbolic link or a file
  /// where a directory belongs): never followed, never removed; EntryInfo::problem says what to do.
  foreign,
};

/// A file of the store, as Store::list found it.
struct EntryInfo {
  /// What the file is.
  EntryKind kind = EntryKind::entry;
  /// The function whose directory it is in.
  std::string function{};
  Hash128 key{};  ///< for entries, locks and companion files left without their entry
  /// The file, as messages name it.
  std::filesystem::path path{};
  std::filesystem::path companion{};                  ///< an entry's companion file, when it has one
  std::uint64_t size = 0;                             ///< bytes of the file (and of its companion)
  std::chrono::system_clock::time_point last_used{};  ///< the file's mtime (the LRU clock of entries)
  std::optional<EntryMetadata> metadata{};            ///< when asked for and readable
  std::string problem{};  ///< why an entry is unusable or its metadata unreadable; what a foreign file is
};

/// What Store::list returns.
struct ListOptions {
  std::optional<std::string> function{};  ///< only this function's entries
  bool read_metadata = false;             ///< read each entry's header and metadata (one open each)
  bool include_leftovers = false;         ///< list temporary files and lock files too
  /// Stop once this many entries are listed (leftovers and foreign files not counted), for a
  /// look at a sample of a huge function: which entries come first is unspecified.
  std::optional<std::size_t> max_entries{};
};

/// Limits for reduce_size, as joblib's Memory.reduce_size(bytes_limit, items_limit, age_limit).
/// Entries go in least-recently-used order (by mtime, which hits refresh) until every limit
/// holds; entries unused for longer than age_limit go whatever the other limits.
struct ReduceOptions {
  /// Keep at most this many bytes of entry files (companions included).
  std::optional<std::uint64_t> bytes_limit{};
  /// Keep at most this many entries.
  std::optional<std::uint64_t> items_limit{};
  /// Remove entries unused (not read or written) for longer than this.
  std::optional<std::chrono::duration<double>> age_limit{};
  std::optional<std::string> function{};  ///< apply the limits to this function's entries alone
  bool dry_run = false;                   ///< report what would go, remove nothing
  /// Temporary files older than this were left by killed writers (a live writer finishes long
  /// before); they are removed too, as are lock files older than it.
  std::chrono::duration<double> leftover_age{24.0 * 3600.0};
};

/// A file that should have gone and could not (permissions, a read-only filesystem).
struct RemovalFailure {
  /// The file, as messages name it.
  std::filesystem::path path{};
  std::string problem{};  ///< the cause and the fix
};

/// What Store::reduce_size removed and kept (or, on a dry run, would have).
struct ReduceReport {
  std::vector<EntryInfo> removed{};  ///< entries (and leftovers) removed, or that would be on a dry run
  /// Bytes of the files in `removed` (companions included).
  std::uint64_t removed_bytes = 0;
  /// Entries that stay (of ReduceOptions::function alone, when it is set).
  std::uint64_t kept_entries = 0;
  /// Bytes of the entries that stay (companions included).
  std::uint64_t kept_bytes = 0;
  std::vector<RemovalFailure> failed{};  ///< files that should have gone and are still there
};

/// Throws ConfigError unless heartbeat is positive and under half of stale_after, poll is
/// positive and poll_max is at least poll. Store::claim, Store::try_claim and CampaignRuns check
/// their options with it.
void validate_lock_options(const LockOptions& options);

/// Throws ConfigError unless `name` can name a function's directory: 1 to 200 bytes, no '/',
/// '\\', control characters, no leading '.', not "." or "..". Keeps every path inside the store.
void validate_function_name(std::string_view name);

/// A store in the directory `root` (see this file's description). Copies share their state, and
/// one store may be used by several threads at once. Every member that takes a function name
/// throws ConfigError unless validate_function_name() accepts it.
class Store {
 public:
  /// A store in `root`, made absolute now (a later chdir() does not move it). Nothing is opened
  /// or created here: the directory is made by the first write. Throws ConfigError when `root` is
  /// empty.
  explicit Store(std::filesystem::path root, StoreOptions options = {});

  /// The store's directory: absolute and normalized.
  const std::filesystem::path& root() const noexcept;
  /// The options it was made with.
  const StoreOptions& options() const noexcept;
  /// Where the entry of `function` and `key` is, or would be: `<root>/<function>/<xx>/<key>`.
  std::filesystem::path entry_path(std::string_view function, const Hash128& key) const;
  /// Where an entry's companion file is (PayloadKind::hdf5_companion): `<entry>.h5`.
  std::filesystem::path companion_path(std::string_view function, const Hash128& key) const;

  /// Reads and verifies an entry. A found entry's mtime is refreshed (see touch_interval). A
  /// corrupt entry is reported, not thrown: the caller recomputes and saves over it.
  LoadResult load(std::string_view function, const Hash128& key) const;
  /// Reads and verifies an entry like load(), without refreshing its mtime: for inspecting a
  /// cache (`joblet cache show`) without changing what reduce_size will evict.
  LoadResult inspect(std::string_view function, const Hash128& key) const;
  /// The entry's metadata, verified, without reading its payload; nullopt if missing or corrupt.
  std::optional<EntryMetadata> metadata(std::string_view function, const Hash128& key) const;
  /// Whether the entry is there, as metadata() sees it: its payload is not read or verified, and
  /// its mtime is not refreshed.
  bool contains(std::string_view function, const Hash128& key) const;

  /// Publishes an entry, replacing any entry of the same key. Fills the metadata's function, key,
  /// payload_kind, payload_size, format_version and checksum. Throws StorageError naming the cause (no space,
  /// read-only, permissions, something in the way) after removing its temporary file.
  void save(std::string_view function, const Hash128& key, EntryMetadata metadata,
            std::span<const std::byte> payload) const;
  /// Publishes an hdf5_companion entry: `write_companion` writes the companion file at the name
  /// it is given (published atomically, as dump() does), then the entry naming it is saved.
  void save_with_companion(std::string_view function, const Hash128& key, EntryMetadata metadata,
                           const std::function<void(const std::filesystem::path&)>& write_companion) const;
  /// Removes one entry (and its companion); false when there was none.
  bool remove(std::string_view function, const Hash128& key) const;

  /// Entries (and optionally leftovers), in no particular order.
  std::vector<EntryInfo> list(const ListOptions& options = {}) const;
  /// The functions that have a directory in the store, sorted.
  std::vector<std::string> functions() const;
  /// Removes every entry (of one function, or all), with the leftovers of processes that are
  /// provably gone (of this host and dead, or older than a day); returns how many entries went.
  /// Safe against concurrent writers: their temporary files and locks stay, and one that loses
  /// its directory recreates it. Throws StorageError, after removing all it can, when files
  /// could not be removed (permissions, a read-only filesystem), naming them and the fix.
  std::size_t clear(std::optional<std::string_view> function = std::nullopt) const;
  /// LRU eviction (see ReduceOptions). Safe with other processes pruning or writing at the same
  /// time: an entry removed twice is removed once, an entry replaced while being judged is at
  /// worst recomputed.
  ReduceReport reduce_size(const ReduceOptions& options) const;

  /// Compute-once: returns the entry if it exists and `accept` takes it; otherwise takes the
  /// entry's lock (`<entry>.lock`, created with link(), which NFS and Lustre make atomic; never
  /// flock/fcntl, which they break) and returns it held. If another process holds the lock,
  /// waits for its entry to appear, or for the lock to vanish or go stale, and then takes over.
  /// A caller that has just loaded the entry and found it missing or unusable passes
  /// `look_first = false` to go straight to the lock instead of reading it again; the entry is
  /// still looked at once the lock is taken, and after every wait.
  Claim claim(std::string_view function, const Hash128& key, const LockOptions& options = {},
              const std::function<bool(const EntryMetadata&)>& accept = {}, bool look_first = true) const;
  /// claim() without the wait: when another process holds the lock and is not known to be dead
  /// (a lock of this host whose process is gone, or a file that is no lock, is taken over at
  /// once), returns with `busy` set instead. For elastic campaigns, which compute another task
  /// meanwhile and come back to this one.
  Claim try_claim(std::string_view function, const Hash128& key, const LockOptions& options = {},
                  const std::function<bool(const EntryMetadata&)>& accept = {}, bool look_first = true) const;
  /// Who holds the entry's compute-once lock now; nullopt when nobody does. For reports
  /// (`joblet status`): it waits for nothing and takes nothing over.
  std::optional<LockHolder> lock_holder(std::string_view function, const Hash128& key,
                                        const LockOptions& options = {}) const;
  /// For the holder of a compute-once lock or a run claim: looks again for an entry load() just
  /// found missing, past the client's memory of missing names (NFS and FUSE clients keep a failed
  /// lookup for seconds, so an entry another node has just published can stay invisible here):
  /// if the server's listing of the entry's directory holds it, waits (up to a minute) until it
  /// can be read. Clients also keep listings for seconds (sshfs's cache_timeout, NFS's readdir
  /// cache) unless the directory changed through them: `listing_fresh` says it just did (the
  /// caller made a lock there); otherwise a file made and removed there refreshes it first.
  /// Elsewhere the same as load().
  LoadResult load_unseen(std::string_view function, const Hash128& key, bool listing_fresh = false) const;

  /// What a store and its copies share; defined by the store's implementation.
  struct State;

 private:
  friend class CampaignRuns;  ///< its claim files live in the store and share the lock's mechanics
  LoadResult read(std::string_view function, const Hash128& key, bool touch, bool with_key_parts) const;
  Claim claim_entry(std::string_view function, const Hash128& key, const LockOptions& options,
                    const std::function<bool(const EntryMetadata&)>& accept, bool look_first, bool wait) const;
  void publish(std::string_view function, const Hash128& key, EntryMetadata metadata,
               std::span<const std::byte> payload,
               const std::function<void(const std::filesystem::path&)>* write_companion) const;
  std::shared_ptr<State> state_;
};

}  // namespace joblet
