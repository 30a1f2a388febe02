#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <new>
#include <set>
#include <thread>

#include "beneath.hpp"
#include "entry_format.hpp"
#include "io.hpp"
#include "joblet/detail/filesystem_kind.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/error.hpp"
#include "joblet/store.hpp"
#include "store_internal.hpp"

namespace joblet {
namespace {

using Clock = std::chrono::system_clock;
using detail::FileDescriptor;

// Orphaned companion files (their entry gone, or not yet published) are removed once older than
// this: a writer publishes its entry right after its companion, so a younger one may be a live
// writer's.
constexpr std::chrono::minutes kCompanionPublishWindow{10};
// Bytes verified per read when an entry claims more than it holds (see read_once).
constexpr std::size_t kVerifyPiece = std::size_t{1} << 20;

Clock::time_point mtime_of(const struct stat& info) {
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(info.st_mtim.tv_sec) +
                                                                       std::chrono::nanoseconds(info.st_mtim.tv_nsec)));
}

bool is_hex_key(std::string_view name) {
  return name.size() == 32 &&
         std::all_of(name.begin(), name.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_shard_name(std::string_view name) {
  return name.size() == 2 &&
         std::all_of(name.begin(), name.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_companion_name(std::string_view name) {
  return name.size() == 35 && name.ends_with(".h5") && is_hex_key(name.substr(0, 32));
}

// The names in an open directory (the descriptor stays the caller's).
std::vector<std::string> directory_names(int directory) {
  std::vector<std::string> names;
  const int copy = ::dup(directory);
  if (copy < 0) return names;
  DIR* handle = ::fdopendir(copy);
  if (handle == nullptr) {
    ::close(copy);
    return names;
  }
  ::rewinddir(handle);
  while (const dirent* item = ::readdir(handle)) {
    const std::string_view name = item->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  ::closedir(handle);
  return names;
}

std::span<const std::byte> as_bytes(const std::string& text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

// Reads and verifies the header and metadata of an open entry file.
EntryMetadata read_metadata_from(int fd, std::uint64_t file_size) {
  std::byte header_bytes[detail::kEntryHeaderSize];
  if (detail::read_fully_at(fd, header_bytes, sizeof header_bytes, 0) != 0) {
    throw detail::CorruptEntry("the file is shorter than an entry's header");
  }
  const detail::EntryHeader header = detail::parse_entry_header(header_bytes, file_size);
  std::string metadata(header.metadata_size, '\0');  // at most 1 MiB, checked by the header parser
  if (detail::read_fully_at(fd, metadata.data(), metadata.size(), detail::kEntryHeaderSize) != 0) {
    throw detail::CorruptEntry("the entry's metadata is cut short");
  }
  return detail::parse_entry_metadata(header, header_bytes, as_bytes(metadata));
}

// An entry of another call (copied or renamed under this name) is never served as this one.
void check_identity(const EntryMetadata& metadata, std::string_view function, const Hash128& key) {
  if (metadata.key != key || metadata.function != function) {
    throw detail::CorruptEntry("it holds the result of another call (function '" + metadata.function + "', key " +
                               metadata.key.hex() + "): it was copied or renamed here, and is not used");
  }
}

// For files that claim more than they hold: the payload's checksum, computed piece by piece
// before anything is allocated for the whole file. A sparse file of a few blocks that claims a
// gigabyte costs reading its holes once, not a gigabyte of memory.
void verify_in_pieces(int fd, std::uint64_t file_size) {
  const EntryMetadata metadata = read_metadata_from(fd, file_size);
  std::byte header_bytes[detail::kEntryHeaderSize];
  if (detail::read_fully_at(fd, header_bytes, sizeof header_bytes, 0) != 0) {
    throw detail::CorruptEntry("the file is shorter than an entry's header");
  }
  const detail::EntryHeader header = detail::parse_entry_header(header_bytes, file_size);
  XXH3_state_t state;
  XXH3_128bits_reset(&state);
  std::vector<std::byte> piece(kVerifyPiece);
  for (std::uint64_t at = header.payload_offset; at < file_size;) {
    const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(kVerifyPiece, file_size - at));
    if (detail::read_fully_at(fd, piece.data(), size, at) != 0) throw detail::CorruptEntry("it cannot be read");
    XXH3_128bits_update(&state, piece.data(), size);
    at += size;
  }
  const XXH128_hash_t digest = XXH3_128bits_digest(&state);
  if (Hash128{digest.high64, digest.low64} != metadata.checksum) {
    throw detail::CorruptEntry("the checksum of the entry's payload does not match (the file claims " +
                               std::to_string(file_size) + " bytes but holds few of them: a sparse or damaged file)");
  }
}

// One look at an entry, into `result` (a fresh LoadResult: filled in place, so that a hit is
// not moved on its way out). Returns the errno of a failed open, fstat or read, so that
// Store::read can decide on ESTALE by its number rather than by searching the message.
int read_once(LoadResult& result, const Store::State& state, std::string_view function, const Hash128& key, bool touch,
              detail::KeyPartsRead key_parts) {
  validate_function_name(function);
  const detail::EntryName entry = detail::entry_name(function, key);
  const std::string& relative = entry.relative;
  const std::string_view shard = entry.shard();
  const std::string_view hex = entry.hex();
  const auto corrupt = [&](std::string problem, int error = 0) {
    result.status = LoadStatus::corrupt;
    result.problem = std::move(problem);
    return error;
  };

  // No link is followed, and O_NONBLOCK: a FIFO planted as an entry cannot make the open wait.
  const int root = state.directory.descriptor(false, false);
  if (root < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return 0;  // no cache yet: a miss
    return corrupt(std::string("the cache directory cannot be opened: ") + std::strerror(errno), errno);
  }
  // A miss costs this one system call. A root removed since it was opened reads as misses, until
  // this process's next write finds it gone and opens the new one (publish()): a recomputation,
  // never a wrong result.
  FileDescriptor fd(detail::open_beneath(root, relative, O_RDONLY | O_NONBLOCK));
  if (!fd) {
    const int error = errno;
    if (error == ENOENT || error == ENOTDIR) return 0;  // missing
    if (error == ELOOP) return corrupt(state.directory.describe_obstacle(relative, /*names_file=*/true));
    return corrupt(std::string("it cannot be opened: ") + std::strerror(error), error);
  }
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) {
    const int error = errno;
    return corrupt(std::string("it cannot be examined: ") + std::strerror(error), error);
  }
  if (std::string why = detail::unusable_file(info); !why.empty()) return corrupt(std::move(why));
  const auto size = static_cast<std::size_t>(info.st_size);
  if (detail::holds_less_than_it_claims(info)) {
    try {
      verify_in_pieces(fd.get(), size);
    } catch (const detail::CorruptEntry& e) {
      return corrupt(e.what());
    }
  }
  std::unique_ptr<std::byte[]> bytes;
  try {
    // The allocation is the file's real size, whatever its header claims.
    bytes = std::make_unique_for_overwrite<std::byte[]>(std::max<std::size_t>(size, 1));
  } catch (const std::bad_alloc&) {
    return corrupt("it is too large to read (" + std::to_string(size) + " bytes)");
  }
  if (const int error = detail::read_fully_at(fd.get(), bytes.get(), size, 0); error == ENODATA) {
    return corrupt("it was cut short while being read");
  } else if (error != 0) {
    return corrupt(std::string("it cannot be read: ") + std::strerror(error), error);
  }
  try {
    detail::ParsedEntry parsed = detail::parse_entry(std::span<const std::byte>(bytes.get(), size), key_parts);
    check_identity(parsed.metadata, function, key);
    const bool has_companion = parsed.metadata.payload_kind == PayloadKind::hdf5_companion;
    result.entry.emplace(std::move(parsed.metadata), std::move(bytes), size, parsed.payload_offset);
    if (has_companion) {
      // The companion is opened through this entry's own directory, as the entry was.
      auto directory = std::make_shared<FileDescriptor>(state.directory.open_directory(shard, false, false));
      const std::string name = std::string(hex) + ".h5";
      std::string shown = state.directory.shown(std::string(shard) + "/" + name);
      if (auto through = detail::descriptor_name(directory->get())) {
        result.entry->set_companion(std::move(shown), *through + "/" + name, std::move(directory));
      } else {
        result.entry->set_companion(shown, shown, nullptr);
      }
    }
  } catch (const detail::CorruptEntry& e) {
    return corrupt(e.what());
  }
  // The LRU clock. Failing to refresh it (a read-only cache, someone else's file) only makes
  // the entry look older to reduce_size.
  if (touch) {
    // The first look at the filesystem's clock writes its probe in this shard, where a probe
    // left by a killed process is a leftover that reduce_size recognises.
    FileDescriptor probe_here;
    if (!state.clock_measured.load(std::memory_order_acquire)) {
      probe_here = state.directory.open_directory(shard, false, false);
    }
    const auto now = detail::filesystem_now(state, probe_here ? probe_here.get() : -1);
    if (now - mtime_of(info) > state.options.touch_interval) detail::touch_at(state, fd.get(), now);
  }
  result.status = LoadStatus::found;
  return 0;
}

[[noreturn]] void throw_write_error(const std::string& what, const std::string& path, int error) {
  throw StorageError("cannot " + what + " " + path + ": " + detail::describe_write_errno(error));
}

// Makes the shard directory an entry is written in. Something in the way (a link, a file where
// a directory belongs) is named with the fix. ENOENT is not an error: a concurrent clear()
// removed the function directory between its creation and the shard's, and the caller tries
// again.
void make_shard_directory(const Store::State& state, const std::string& shard, const std::string& path) {
  if (state.directory.open_directory(shard, true, state.options.group_shared)) return;
  const int error = errno;
  if (error == ENOENT) return;
  if (error == ELOOP || error == ENOTDIR || error == EEXIST) {
    throw StorageError("cannot write cache entry " + path + ": " + state.directory.describe_obstacle(shard));
  }
  throw_write_error("create cache directory", state.directory.shown(shard), error);
}

// One sweep per function and process: what killed writers of this host left behind.
bool first_write_of(const Store::State& state, std::string_view function) {
  static std::mutex mutex;
  static std::set<std::string> written;
  std::lock_guard lock(mutex);
  return written.insert(state.root_text + "/" + std::string(function)).second;
}

// The owner a lock file names, when it is a process of this host that no longer exists.
bool lock_of_dead_process(int directory, const std::string& name) {
  FileDescriptor fd(::openat(directory, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat info {};
  if (!fd || fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) return false;
  const detail::LockOwner owner = detail::read_lock_owner(fd.get());
  return detail::dead_process_of_this_host(owner.host, owner.pid);
}

}  // namespace

namespace detail {

std::string shard_directory(const Store::State& state, std::string_view function, const std::string& hex) {
  std::string directory;
  directory.reserve(state.root_text.size() + function.size() + 4);
  directory += state.root_text;
  directory += '/';
  directory += function;
  directory += '/';
  directory.append(hex, 0, 2);
  return directory;
}

EntryName entry_name(std::string_view function, const Hash128& key) {
  EntryName name;
  name.relative.reserve(function.size() + 36);
  name.relative.append(function).append(1, '/');
  name.name_at = name.relative.size() + 3;
  name.relative.append(2, '0').append(1, '/').append(32, '0');
  key.write_hex(name.relative.data() + name.name_at);
  name.relative[name.name_at - 3] = name.relative[name.name_at];
  name.relative[name.name_at - 2] = name.relative[name.name_at + 1];
  return name;
}

std::string relative_shard(std::string_view function, const std::string& hex) {
  std::string relative;
  relative.reserve(function.size() + 3);
  relative += function;
  relative += '/';
  relative.append(hex, 0, 2);
  return relative;
}

std::string lock_path_of(const std::string& entry_path) { return entry_path + ".lock"; }

std::string companion_path_of(const std::string& entry_path) { return entry_path + ".h5"; }

}  // namespace detail

void validate_function_name(std::string_view name) {
  const auto fail = [&](const std::string& why) {
    std::string shown;
    for (char c : name.substr(0, 80)) shown += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    throw ConfigError("the function name '" + shown + "' " + why +
                      ": cache function names become directory names; use letters, digits and '_', '-', '.', ':'");
  };
  if (name.empty()) fail("is empty");
  if (name.size() > 200) fail("is longer than 200 bytes");
  if (name == "." || name == "..") fail("is a directory reference");
  if (name.front() == '.') fail("starts with '.', which the cache keeps for its own hidden files");
  for (char c : name) {
    if (c == '/' || c == '\\') fail("contains a path separator");
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) fail("contains a control character");
  }
}

StoredEntry::StoredEntry(EntryMetadata&& metadata, std::unique_ptr<std::byte[]> file_bytes, std::size_t file_size,
                         std::size_t payload_offset) noexcept
    : metadata_(std::move(metadata)),
      bytes_(std::move(file_bytes)),
      file_size_(file_size),
      payload_offset_(payload_offset) {}

struct StoredEntry::Companion {
  std::filesystem::path path;
  std::filesystem::path opened_as;
  std::shared_ptr<const void> directory;  // keeps the directory `opened_as` goes through open
};

StoredEntry::StoredEntry(StoredEntry&&) noexcept = default;
StoredEntry& StoredEntry::operator=(StoredEntry&&) noexcept = default;
StoredEntry::~StoredEntry() = default;

const std::filesystem::path& StoredEntry::companion() const noexcept {
  static const std::filesystem::path none;
  return companion_ ? companion_->path : none;
}

const std::filesystem::path& StoredEntry::companion_opened_as() const noexcept {
  static const std::filesystem::path none;
  return companion_ ? companion_->opened_as : none;
}

void StoredEntry::set_companion(std::filesystem::path path, std::filesystem::path opened_as,
                                std::shared_ptr<const void> directory) {
  companion_ = std::make_unique<Companion>(Companion{std::move(path), std::move(opened_as), std::move(directory)});
}

namespace {
std::string normalized_root(const std::filesystem::path& root) {
  if (root.empty()) {
    throw ConfigError("the cache location is an empty path; give a directory (or no location to disable caching)");
  }
  // Absolute now, so that a later chdir() of the program does not move the cache.
  std::error_code error;
  auto absolute = std::filesystem::absolute(root, error);
  std::string text = (error ? root : absolute).lexically_normal().string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}
}  // namespace

Store::Store(std::filesystem::path root, StoreOptions options)
    : state_(std::make_shared<State>(normalized_root(root))) {
  state_->options = options;
}

const std::filesystem::path& Store::root() const noexcept { return state_->root; }
const StoreOptions& Store::options() const noexcept { return state_->options; }

std::filesystem::path Store::entry_path(std::string_view function, const Hash128& key) const {
  validate_function_name(function);
  const std::string hex = key.hex();
  return detail::shard_directory(*state_, function, hex) + "/" + hex;
}

std::filesystem::path Store::companion_path(std::string_view function, const Hash128& key) const {
  return detail::companion_path_of(entry_path(function, key).string());
}

// A load serves a hit, which never needs the key's parts: it skips them.
LoadResult Store::load(std::string_view function, const Hash128& key) const {
  return read(function, key, /*touch=*/true, /*with_key_parts=*/false);
}

LoadResult Store::inspect(std::string_view function, const Hash128& key) const {
  return read(function, key, /*touch=*/false, /*with_key_parts=*/true);
}

namespace detail {

bool remembers_missing_names(const Store::State& state, int directory) {
  const int known = state.remembers_missing.load(std::memory_order_relaxed);
  if (known >= 0) return known == 1;
  struct statfs info {};
  if (::fstatfs(directory, &info) != 0) return true;  // not known: look past the client
  const auto* kind = filesystem_kind(static_cast<unsigned long>(info.f_type));
  const bool remembers = kind == nullptr || !kind->local;
  state.remembers_missing.store(remembers ? 1 : 0, std::memory_order_relaxed);
  return remembers;
}

}  // namespace detail

LoadResult Store::load_unseen(std::string_view function, const Hash128& key, bool listing_fresh) const {
  const std::string hex = key.hex();
  FileDescriptor directory = state_->directory.open_directory(detail::relative_shard(function, hex), false, false);
  // The listing comes from the server, not from the client's memory of failed lookups.
  if (!directory || !detail::remembers_missing_names(*state_, directory.get())) return load(function, key);
  if (!listing_fresh) {
    // A change made through this client makes it forget its listing of the directory.
    const std::string probe = detail::temporary_name(hex + ".look");
    const int fd = ::openat(directory.get(), probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      ::close(fd);
      ::unlinkat(directory.get(), probe.c_str(), 0);
    }
  }
  const auto names = directory_names(directory.get());
  if (std::find(names.begin(), names.end(), hex) == names.end()) return load(function, key);
  detail::log().debug("cache entry {} is on the server but not yet seen by this client: waiting for it",
                      state_->directory.shown(detail::relative_shard(function, hex) + "/" + hex));
  // A minute is NFS's longest attribute cache; giving up then costs a recomputation, never a
  // wrong result.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  LoadResult found;
  for (auto pause = std::chrono::milliseconds(50);; pause = std::min(pause * 2, std::chrono::milliseconds(1000))) {
    found = load(function, key);
    if (found.status != LoadStatus::missing || std::chrono::steady_clock::now() >= give_up) return found;
    std::this_thread::sleep_for(pause);
  }
}

LoadResult Store::read(std::string_view function, const Hash128& key, bool touch, bool with_key_parts) const {
  // On NFS, an entry another client replaced or pruned while we opened it reads as ESTALE:
  // that is the benign race of a lock-free store, so look again, and call it a miss if the
  // entry keeps vanishing (never a corrupt one, which would warn).
  for (int attempt = 0;; ++attempt) {
    LoadResult result;
    const int error = read_once(result, *state_, function, key, touch,
                                with_key_parts ? detail::KeyPartsRead::read : detail::KeyPartsRead::skip);
    if (result.status == LoadStatus::found) return result;
    // Only a miss or a corrupt entry is named in messages; a hit does not pay for the path.
    result.path = entry_path(function, key);
    if (result.status != LoadStatus::corrupt || error != ESTALE) return result;
    if (attempt == 2) {
      result.status = LoadStatus::missing;
      result.problem.clear();
      return result;
    }
  }
}

std::optional<EntryMetadata> Store::metadata(std::string_view function, const Hash128& key) const {
  validate_function_name(function);
  const int root = state_->directory.descriptor(false, false);
  if (root < 0) return std::nullopt;
  FileDescriptor fd(detail::open_beneath(root, detail::entry_name(function, key).relative, O_RDONLY | O_NONBLOCK));
  struct stat info {};
  if (!fd || fstat(fd.get(), &info) != 0 || !detail::unusable_file(info).empty()) return std::nullopt;
  try {
    EntryMetadata metadata = read_metadata_from(fd.get(), static_cast<std::uint64_t>(info.st_size));
    check_identity(metadata, function, key);
    return metadata;
  } catch (const detail::CorruptEntry&) {
    return std::nullopt;
  }
}

bool Store::contains(std::string_view function, const Hash128& key) const {
  return metadata(function, key).has_value();
}

void Store::save(std::string_view function, const Hash128& key, EntryMetadata metadata,
                 std::span<const std::byte> payload) const {
  publish(function, key, std::move(metadata), payload, nullptr);
}

void Store::save_with_companion(std::string_view function, const Hash128& key, EntryMetadata metadata,
                                const std::function<void(const std::filesystem::path&)>& write_companion) const {
  metadata.payload_kind = PayloadKind::hdf5_companion;
  publish(function, key, std::move(metadata), {}, &write_companion);
}

void Store::publish(std::string_view function, const Hash128& key, EntryMetadata metadata,
                    std::span<const std::byte> payload,
                    const std::function<void(const std::filesystem::path&)>* write_companion) const {
  validate_function_name(function);
  const std::string hex = key.hex();
  const std::string shard = detail::relative_shard(function, hex);
  const std::string path = state_->directory.shown(shard + "/" + hex);

  metadata.key = key;
  metadata.function = std::string(function);
  metadata.payload_size = payload.size();
  metadata.format_version = detail::kEntryFormatVersion;
  metadata.checksum = hash_bytes(payload.data(), payload.size());
  metadata.payload_kind = write_companion != nullptr ? PayloadKind::hdf5_companion : PayloadKind::inline_codec;
  std::string prefix;
  try {
    prefix = detail::encode_entry_prefix(metadata);
  } catch (const SerializationError& e) {
    throw StorageError("cannot write cache entry " + path + ": " + e.message());
  }

  const bool group_shared = state_->options.group_shared;
  // The temporary file first, created by its path beneath the root in one call: once it is
  // there, its directory is not empty and a concurrent clear() leaves it alone (it removes only
  // empty directories and the temporaries of dead writers), so nothing below can lose it.
  const std::string temporary = detail::temporary_name(hex);
  const std::string temporary_relative = shard + "/" + temporary;
  FileDescriptor fd;
  for (int attempt = 0; !fd; ++attempt) {
    if (int error = detail::injected_fault(detail::IoStep::open_temporary); error != 0) {
      throw_write_error("write cache entry", path, error);
    }
    const int root = state_->directory.descriptor(true, group_shared);
    if (root < 0) throw_write_error("create cache directory", state_->root_text, errno);
    fd = FileDescriptor(detail::open_beneath(root, temporary_relative, O_WRONLY | O_CREAT | O_EXCL, 0666));
    if (fd) break;
    const int error = errno;
    if (error != ENOENT) {
      if (error == ELOOP || error == ENOTDIR) {
        throw StorageError("cannot write cache entry " + path + ": " + state_->directory.describe_obstacle(shard));
      }
      throw_write_error("write cache entry", path, error);
    }
    // Its directory is missing (new, or just removed by a clear()): make it, and try again.
    if (attempt == 16) throw_write_error("write cache entry", path, error);
    make_shard_directory(*state_, shard, path);
  }
  FileDescriptor directory(
      detail::open_beneath(state_->directory.descriptor(false, false), shard, O_RDONLY | O_DIRECTORY));
  if (!directory) {
    const int error = errno;
    fd.reset();
    if (const int root = state_->directory.descriptor(false, false); root >= 0) {
      FileDescriptor again(detail::open_beneath(root, shard, O_RDONLY | O_DIRECTORY));
      if (again) ::unlinkat(again.get(), temporary.c_str(), 0);
    }
    throw_write_error("write cache entry", path, error);
  }

  // From here on, a failure must not leave the temporary file behind.
  const auto fail = [&](const char* what, int error) {
    fd.reset();
    ::unlinkat(directory.get(), temporary.c_str(), 0);
    throw_write_error(what, path, error);
  };

  std::uint64_t companion_size = 0;
  if (write_companion != nullptr) {
    // The companion before the entry: an entry is only ever published once the file it names
    // is. HDF5 writes it through the directory just opened, never through the tree as it is now.
    const std::string name = hex + ".h5";
    const auto through = detail::descriptor_name(directory.get());
    const std::string shown_directory = state_->directory.shown(shard);
    try {
      (*write_companion)(through ? *through + "/" + name : shown_directory + "/" + name);
    } catch (const StorageError& e) {
      fd.reset();
      ::unlinkat(directory.get(), temporary.c_str(), 0);
      std::string message = e.message();
      if (through) {
        for (std::size_t at; (at = message.find(*through)) != std::string::npos;) {
          message.replace(at, through->size(), shown_directory);
        }
      }
      throw StorageError(message);
    } catch (...) {
      fd.reset();
      ::unlinkat(directory.get(), temporary.c_str(), 0);
      throw;
    }
    FileDescriptor companion(::openat(directory.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    struct stat info {};
    if (companion && fstat(companion.get(), &info) == 0) {
      companion_size = static_cast<std::uint64_t>(info.st_size);
      if (group_shared) fchmod(companion.get(), (info.st_mode & 07777) | S_IRGRP | S_IWGRP);
    }
  }

  if (group_shared) {
    struct stat info {};
    if (fstat(fd.get(), &info) == 0) fchmod(fd.get(), (info.st_mode & 07777) | S_IRGRP | S_IWGRP);
  }
  if (int error = detail::injected_fault(detail::IoStep::write); error != 0) fail("write cache entry", error);
  const std::span<const std::byte> prefix_bytes = as_bytes(prefix);
  if (!detail::fault_injection_active()) {
    const std::span<const std::byte> parts[] = {prefix_bytes, payload};
    if (int error = detail::write_all(fd.get(), parts); error != 0) fail("write cache entry", error);
  } else {
    // Only tests get here: the file is written in two steps with the injector called between.
    const std::span<const std::byte> first[] = {prefix_bytes, payload.first(payload.size() / 2)};
    if (int error = detail::write_all(fd.get(), first); error != 0) fail("write cache entry", error);
    if (int error = detail::injected_fault(detail::IoStep::mid_write); error != 0) fail("write cache entry", error);
    const std::span<const std::byte> rest[] = {payload.subspan(payload.size() / 2)};
    if (int error = detail::write_all(fd.get(), rest); error != 0) fail("write cache entry", error);
  }
  if (state_->options.fsync) {
    int error = detail::injected_fault(detail::IoStep::fsync);
    if (error == 0 && ::fsync(fd.get()) != 0) error = errno;
    if (error != 0) fail("flush cache entry", error);
  }
  {
    int error = detail::injected_fault(detail::IoStep::close);
    if (error == 0) error = fd.close_checked();
    if (error != 0) fail("write cache entry", error);
  }
  // The directory is not fsynced after the rename: a crash may then lose the new entry, which
  // costs one recomputation; it cannot expose a partial one, since the data was synced first.
  {
    int error = detail::injected_fault(detail::IoStep::rename);
    if (error == 0 && ::renameat(directory.get(), temporary.c_str(), directory.get(), hex.c_str()) != 0) error = errno;
    if (error == EISDIR || error == ENOTEMPTY || error == EEXIST) {
      // A directory where the entry belongs (made by hand, or by an old bug): an empty one is
      // in the way of nothing and goes; anything else is named, with what to delete.
      if (::unlinkat(directory.get(), hex.c_str(), AT_REMOVEDIR) == 0 &&
          ::renameat(directory.get(), temporary.c_str(), directory.get(), hex.c_str()) == 0) {
        detail::log().info("removed the empty directory {} that stood where a cache entry belongs", path);
        error = 0;
      } else {
        fd.reset();
        ::unlinkat(directory.get(), temporary.c_str(), 0);
        throw StorageError("cannot publish cache entry " + path +
                           ": a directory that joblet did not make is there "
                           "and is not empty; remove it (rm -r '" +
                           path + "')");
      }
    }
    if (error != 0) fail("publish cache entry", error);
  }

  if (first_write_of(*state_, function) && detail::process_rank() <= 0) {
    // What killed writers of this host left in this function's directories: found once per
    // process (and, under MPI, by one rank), not on every write.
    try {
      ListOptions leftovers{.function = std::string(function), .include_leftovers = true};
      for (const EntryInfo& info : list(leftovers)) {
        if (info.kind != EntryKind::temporary && info.kind != EntryKind::lock) continue;
        const std::string name = info.path.filename().string();
        FileDescriptor in(state_->directory.open_directory(
            info.function + "/" + info.path.parent_path().filename().string(), false, false));
        if (!in) continue;
        const bool abandoned = info.kind == EntryKind::temporary ? detail::temporary_of_dead_process(name)
                                                                 : lock_of_dead_process(in.get(), name);
        if (abandoned && ::unlinkat(in.get(), name.c_str(), 0) == 0) {
          detail::log().debug("removed {}, left by a process of this host that was killed", info.path.string());
        }
      }
    } catch (const Error&) {
      // A sweep that fails leaves the files to prune; the entry is published.
    }
  }

  if (const auto budget = state_->options.bytes_limit) {
    const std::uint64_t written = prefix.size() + payload.size() + companion_size;
    const std::uint64_t threshold = std::max<std::uint64_t>(*budget / 10, 1);
    const std::uint64_t total = state_->written_since_check.fetch_add(written) + written;
    // exchange: only one thread of this process runs the check.
    if (total >= threshold && state_->written_since_check.exchange(0) >= threshold) {
      try {
        reduce_size({.bytes_limit = *budget});
      } catch (const Error& e) {
        if (detail::first_time("joblet.store.budget:" + state_->root_text)) {
          detail::log().warn("cannot enforce the cache's bytes_limit in {}: {}", state_->root_text, e.message());
        }
      }
    }
  }
}

bool Store::remove(std::string_view function, const Hash128& key) const {
  validate_function_name(function);
  const std::string hex = key.hex();
  FileDescriptor directory = state_->directory.open_directory(detail::relative_shard(function, hex), false, false);
  if (!directory) return false;
  const bool removed = ::unlinkat(directory.get(), hex.c_str(), 0) == 0;
  ::unlinkat(directory.get(), (hex + ".h5").c_str(), 0);
  return removed;
}

std::vector<std::string> Store::functions() const {
  std::vector<std::string> names;
  const int root = state_->directory.descriptor(false, false);
  if (root < 0) return names;
  for (auto& name : directory_names(root)) {
    if (name.front() == '.') continue;
    struct stat info {};
    if (::fstatat(root, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(info.st_mode)) {
      names.push_back(std::move(name));
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<EntryInfo> Store::list(const ListOptions& options) const {
  if (options.function) validate_function_name(*options.function);
  std::vector<EntryInfo> entries;
  std::size_t listed_entries = 0;
  if (options.max_entries == std::size_t{0}) return entries;
  const int root = state_->directory.descriptor(false, false);
  if (root < 0) return entries;
  const auto foreign = [&](std::string function, const std::string& relative, std::string problem) {
    EntryInfo info;
    info.kind = EntryKind::foreign;
    info.function = std::move(function);
    info.path = state_->directory.shown(relative);
    info.problem = std::move(problem);
    struct stat status {};
    if (::fstatat(root, relative.c_str(), &status, AT_SYMLINK_NOFOLLOW) == 0) info.last_used = mtime_of(status);
    entries.push_back(std::move(info));
  };
  const auto obstacle = [](const struct stat& status, const char* belongs) {
    return std::string(S_ISLNK(status.st_mode) ? "a symbolic link" : "a file") + " where " + belongs +
           " belongs: never followed or removed by joblet; remove it";
  };

  std::vector<std::string> function_names;
  if (options.function) {
    function_names.push_back(*options.function);
  } else {
    for (auto& name : directory_names(root)) {
      if (name.front() == '.') continue;
      struct stat status {};
      if (::fstatat(root, name.c_str(), &status, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (S_ISDIR(status.st_mode)) {
        function_names.push_back(std::move(name));
      } else {
        foreign(name, name, obstacle(status, "a function's directory"));
      }
    }
    std::sort(function_names.begin(), function_names.end());
  }
  for (const auto& function : function_names) {
    FileDescriptor function_directory(detail::open_beneath(root, function, O_RDONLY | O_DIRECTORY));
    if (!function_directory) {
      struct stat status {};
      if ((errno == ELOOP || errno == ENOTDIR) &&
          ::fstatat(root, function.c_str(), &status, AT_SYMLINK_NOFOLLOW) == 0) {
        foreign(function, function, obstacle(status, "a function's directory"));
      }
      continue;
    }
    for (const auto& shard : directory_names(function_directory.get())) {
      if (!is_shard_name(shard)) continue;
      const std::string shard_relative = function + "/" + shard;
      FileDescriptor shard_directory(detail::open_beneath(function_directory.get(), shard, O_RDONLY | O_DIRECTORY));
      if (!shard_directory) {
        struct stat status {};
        if ((errno == ELOOP || errno == ENOTDIR) &&
            ::fstatat(function_directory.get(), shard.c_str(), &status, AT_SYMLINK_NOFOLLOW) == 0) {
          foreign(function, shard_relative, obstacle(status, "a shard directory"));
        }
        continue;
      }
      const std::vector<std::string> names = directory_names(shard_directory.get());
      std::set<std::string> companions;  // keys of the entries that have one
      std::set<std::string> keys;        // keys of entries
      for (const auto& name : names) {
        if (is_companion_name(name)) companions.insert(name.substr(0, 32));
        if (is_hex_key(name)) keys.insert(name);
      }
      for (const auto& name : names) {
        EntryInfo info;
        info.function = function;
        if (is_hex_key(name)) {
          info.kind = EntryKind::entry;
        } else if (name.size() == 37 && name.ends_with(".lock") && is_hex_key(name.substr(0, 32))) {
          info.kind = EntryKind::lock;
        } else if (name.front() == '.' && name.ends_with(".tmp")) {
          info.kind = EntryKind::temporary;
        } else if (is_companion_name(name) && !keys.contains(name.substr(0, 32))) {
          info.kind = EntryKind::temporary;  // its entry is gone, or not yet published
          info.key = *Hash128::from_hex(name.substr(0, 32));
        } else {
          continue;
        }
        if (info.kind != EntryKind::entry && !options.include_leftovers) continue;
        if (info.kind != EntryKind::temporary) info.key = *Hash128::from_hex(name.substr(0, 32));
        info.path = state_->directory.shown(shard_relative + "/" + name);
        struct stat status {};
        if (::fstatat(shard_directory.get(), name.c_str(), &status, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone
        if (info.kind == EntryKind::entry) {
          if (std::string why = detail::unusable_file(status); !why.empty()) {
            info.problem = std::move(why);
          } else if (options.read_metadata) {
            // Opened without following a link and without waiting on a FIFO swapped in meanwhile.
            FileDescriptor fd(
                ::openat(shard_directory.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
            if (!fd || fstat(fd.get(), &status) != 0) continue;  // removed meanwhile
            if (std::string changed = detail::unusable_file(status); !changed.empty()) {
              info.problem = std::move(changed);
            } else {
              try {
                EntryMetadata metadata = read_metadata_from(fd.get(), static_cast<std::uint64_t>(status.st_size));
                check_identity(metadata, function, info.key);
                info.metadata = std::move(metadata);
              } catch (const detail::CorruptEntry& e) {
                info.problem = e.what();
              }
            }
          }
        }
        info.size = static_cast<std::uint64_t>(status.st_size);
        info.last_used = mtime_of(status);
        if (info.kind == EntryKind::entry && companions.contains(name)) {
          info.companion = detail::companion_path_of(info.path.string());
          struct stat companion {};
          if (::fstatat(shard_directory.get(), (name + ".h5").c_str(), &companion, AT_SYMLINK_NOFOLLOW) == 0) {
            info.size += static_cast<std::uint64_t>(companion.st_size);
          }
        }
        const bool is_entry = info.kind == EntryKind::entry;
        entries.push_back(std::move(info));
        if (is_entry && ++listed_entries == options.max_entries) return entries;
      }
    }
  }
  return entries;
}

namespace {

// Removes one file a listing found, through its directory beneath the root; `unless_used_after`
// keeps it if it was used (or replaced) since it was listed. Returns 0, or the errno that kept
// it (ENOENT: someone else removed it first; EBUSY: used since).
int remove_listed(const detail::CacheRoot& root, const EntryInfo& info,
                  std::optional<Clock::time_point> unless_used_after, bool dry_run) {
  const std::string name = info.path.filename().string();
  const std::string shard = info.path.parent_path().filename().string();
  FileDescriptor directory = root.open_directory(info.function + "/" + shard, false, false);
  if (!directory) return errno == ENOENT ? ENOENT : errno;
  struct stat status {};
  if (::fstatat(directory.get(), name.c_str(), &status, AT_SYMLINK_NOFOLLOW) != 0) return errno;
  if (unless_used_after && mtime_of(status) > *unless_used_after) return EBUSY;
  if (dry_run) return 0;
  if (::unlinkat(directory.get(), name.c_str(), 0) != 0) return errno;
  if (!info.companion.empty()) ::unlinkat(directory.get(), (name + ".h5").c_str(), 0);
  return 0;
}

std::string removal_problem(int error) {
  std::string text = std::strerror(error);
  switch (error) {
    case EACCES:
    case EPERM:
      return text +
             "; run this as a user who may write the cache directories (its owner, or its group with "
             "group_shared caches)";
    case EROFS:
      return text + "; the cache is on a read-only filesystem: run this where it is mounted writable";
    default:
      return text;
  }
}

// Whether a leftover (temporary file or lock) is provably abandoned: its process, on this host,
// is gone, or it is older than `age`.
bool abandoned(const detail::CacheRoot& root, const EntryInfo& info, Clock::time_point now,
               std::chrono::duration<double> age) {
  if (now - info.last_used > age) return true;
  const std::string name = info.path.filename().string();
  if (info.kind == EntryKind::temporary) {
    if (is_companion_name(name)) return now - info.last_used > kCompanionPublishWindow;
    return detail::temporary_of_dead_process(name);
  }
  if (info.kind == EntryKind::lock) {
    FileDescriptor directory =
        root.open_directory(info.function + "/" + info.path.parent_path().filename().string(), false, false);
    return directory && lock_of_dead_process(directory.get(), name);
  }
  return false;
}

}  // namespace

std::size_t Store::clear(std::optional<std::string_view> function) const {
  if (function) validate_function_name(*function);
  ListOptions options{.include_leftovers = true};
  if (function) options.function = std::string(*function);
  const auto now = detail::filesystem_now(*state_);
  std::size_t removed = 0;
  std::vector<RemovalFailure> failed;
  for (const auto& info : list(options)) {
    if (info.kind == EntryKind::foreign) continue;  // not ours: named by `joblet cache ls`, left alone
    // A live writer's temporary file or lock stays: removing it would fail its publication.
    if (info.kind != EntryKind::entry && !abandoned(state_->directory, info, now, ReduceOptions{}.leftover_age)) {
      continue;
    }
    const int error = remove_listed(state_->directory, info, std::nullopt, false);
    if (error == 0 && info.kind == EntryKind::entry) ++removed;
    if (error != 0 && error != ENOENT) failed.push_back({info.path, removal_problem(error)});
  }
  // Empty directories go too; a directory a concurrent writer just filled stays (ENOTEMPTY),
  // and a writer that loses its directory recreates it.
  const int root = state_->directory.descriptor(false, false);
  const auto functions_cleared = function ? std::vector<std::string>{std::string(*function)} : functions();
  for (const auto& name : functions_cleared) {
    if (root < 0) break;
    FileDescriptor function_directory(detail::open_beneath(root, name, O_RDONLY | O_DIRECTORY));
    if (!function_directory) continue;
    bool ours = function.has_value();
    for (const auto& shard : directory_names(function_directory.get())) {
      if (!is_shard_name(shard)) continue;
      ours = true;
      ::unlinkat(function_directory.get(), shard.c_str(), AT_REMOVEDIR);
    }
    // Only directories the store made: a cache at a filesystem's root keeps its lost+found.
    if (ours) ::unlinkat(root, name.c_str(), AT_REMOVEDIR);
  }
  if (!failed.empty()) {
    throw StorageError("removed " + std::to_string(removed) + " entr" + (removed == 1 ? "y" : "ies") + " from " +
                       state_->root_text + ", but " + std::to_string(failed.size()) + " file" +
                       (failed.size() == 1 ? "" : "s") + " could not be removed (" + failed.front().path.string() +
                       ": " + failed.front().problem + ")");
  }
  return removed;
}

ReduceReport Store::reduce_size(const ReduceOptions& options) const {
  ListOptions list_options{.include_leftovers = true};
  list_options.function = options.function;
  std::vector<EntryInfo> all = list(list_options);
  const auto now = detail::filesystem_now(*state_);
  ReduceReport report;

  // Removes a file unless it was used (or replaced) after we listed it: that narrows the race
  // with a concurrent hit or writer to the instant between this stat and the unlink, and losing
  // that race costs one recomputation, never a wrong result.
  const auto remove = [&](EntryInfo& info) {
    const int error = remove_listed(state_->directory, info, info.last_used, options.dry_run);
    if (error == ENOENT || error == EBUSY) return;  // someone else removed it, or it was used since
    if (error != 0) {
      report.failed.push_back({info.path, removal_problem(error)});
      return;
    }
    report.removed_bytes += info.size;
    report.removed.push_back(std::move(info));
  };

  std::vector<EntryInfo*> entries;
  for (auto& info : all) {
    if (info.kind == EntryKind::entry) {
      entries.push_back(&info);
    } else if (info.kind != EntryKind::foreign && abandoned(state_->directory, info, now, options.leftover_age)) {
      remove(info);
    }
  }
  // Most recently used first; everything after the first entry that breaks a limit goes.
  std::sort(entries.begin(), entries.end(),
            [](const EntryInfo* a, const EntryInfo* b) { return a->last_used > b->last_used; });
  bool evicting = false;
  for (EntryInfo* info : entries) {
    const bool too_old = options.age_limit && now - info->last_used > *options.age_limit;
    if (!evicting) {
      evicting = (options.items_limit && report.kept_entries + 1 > *options.items_limit) ||
                 (options.bytes_limit && report.kept_bytes + info->size > *options.bytes_limit);
    }
    if (evicting || too_old) {
      remove(*info);
    } else {
      ++report.kept_entries;
      report.kept_bytes += info->size;
    }
  }
  return report;
}

}  // namespace joblet
