#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <set>

#include "entry_format.hpp"
#include "io.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/error.hpp"
#include "joblet/store.hpp"
#include "store_internal.hpp"

namespace joblet {
namespace {

using Clock = std::chrono::system_clock;

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) noexcept : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~FileDescriptor() { reset(); }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Closes now and reports close()'s error: NFS reports failed writes there.
  int close_checked() noexcept {
    const int fd = std::exchange(fd_, -1);
    return fd >= 0 && ::close(fd) != 0 ? errno : 0;
  }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

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

std::vector<std::string> directory_names(const std::string& directory) {
  std::vector<std::string> names;
  DIR* handle = opendir(directory.c_str());
  if (handle == nullptr) return names;
  while (const dirent* item = readdir(handle)) {
    const std::string_view name = item->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  closedir(handle);
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

// One look at an entry. The errno of a failed open, fstat or read comes back with the result, so
// that Store::read can decide on ESTALE by its number rather than by searching the message.
struct ReadAttempt {
  LoadResult result;
  int error = 0;
};

ReadAttempt read_once(const Store::State& state, std::string_view function, const Hash128& key, bool touch) {
  ReadAttempt read;
  LoadResult& result = read.result;
  validate_function_name(function);
  const std::string hex = key.hex();
  const std::string path = detail::shard_directory(state, function, hex) + "/" + hex;
  result.path = path;
  const auto corrupt = [&](std::string problem, int error = 0) {
    result.status = LoadStatus::corrupt;
    result.problem = std::move(problem);
    read.error = error;
    return std::move(read);
  };

  // O_NOFOLLOW: an entry is never a symlink, so one planted in the cache is not followed out of it.
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    const int error = errno;
    if (error == ENOENT || error == ENOTDIR) return read;  // missing
    if (error == ELOOP) return corrupt("it is a symbolic link");
    return corrupt(std::string("it cannot be opened: ") + std::strerror(error), error);
  }
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) {
    const int error = errno;
    return corrupt(std::string("it cannot be examined: ") + std::strerror(error), error);
  }
  if (!S_ISREG(info.st_mode)) return corrupt("it is not a regular file");
  const auto size = static_cast<std::size_t>(info.st_size);
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
    detail::ParsedEntry parsed = detail::parse_entry(std::span<const std::byte>(bytes.get(), size));
    result.entry.emplace(std::move(parsed.metadata), std::move(bytes), size, parsed.payload_offset);
  } catch (const detail::CorruptEntry& e) {
    return corrupt(e.what());
  }
  // The LRU clock. Failing to refresh it (a read-only cache, someone else's file) only makes
  // the entry look older to reduce_size.
  if (touch && Clock::now() - mtime_of(info) > state.options.touch_interval) futimens(fd.get(), nullptr);
  result.status = LoadStatus::found;
  return read;
}

[[noreturn]] void throw_write_error(const std::string& what, const std::string& path, int error) {
  throw StorageError("cannot " + what + " " + path + ": " + detail::describe_write_errno(error));
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

StoredEntry::StoredEntry(EntryMetadata metadata, std::unique_ptr<std::byte[]> file_bytes, std::size_t file_size,
                         std::size_t payload_offset) noexcept
    : metadata_(std::move(metadata)),
      bytes_(std::move(file_bytes)),
      file_size_(file_size),
      payload_offset_(payload_offset) {}

Store::Store(std::filesystem::path root, StoreOptions options) : state_(std::make_shared<State>()) {
  if (root.empty()) {
    throw ConfigError("the cache location is an empty path; give a directory (or no location to disable caching)");
  }
  // Absolute now, so that a later chdir() of the program does not move the cache.
  std::error_code error;
  auto absolute = std::filesystem::absolute(root, error);
  state_->root = (error ? root : absolute).lexically_normal();
  state_->root_text = state_->root.string();
  while (state_->root_text.size() > 1 && state_->root_text.back() == '/') state_->root_text.pop_back();
  state_->root = state_->root_text;
  state_->options = options;
}

const std::filesystem::path& Store::root() const noexcept { return state_->root; }
const StoreOptions& Store::options() const noexcept { return state_->options; }

std::filesystem::path Store::entry_path(std::string_view function, const Hash128& key) const {
  validate_function_name(function);
  const std::string hex = key.hex();
  return detail::shard_directory(*state_, function, hex) + "/" + hex;
}

std::filesystem::path Store::companion_path(std::string_view function, const Hash128& key, bool make_directory) const {
  validate_function_name(function);
  const std::string hex = key.hex();
  const std::string directory = detail::shard_directory(*state_, function, hex);
  if (make_directory) {
    if (int error = detail::make_directories(directory, state_->options.group_shared); error != 0) {
      throw_write_error("create cache directory", directory, error);
    }
  }
  return detail::companion_path_of(directory + "/" + hex);
}

LoadResult Store::load(std::string_view function, const Hash128& key) const { return read(function, key, true); }

LoadResult Store::inspect(std::string_view function, const Hash128& key) const { return read(function, key, false); }

LoadResult Store::read(std::string_view function, const Hash128& key, bool touch) const {
  // On NFS, an entry another client replaced or pruned while we opened it reads as ESTALE:
  // that is the benign race of a lock-free store, so look again, and call it a miss if the
  // entry keeps vanishing (never a corrupt one, which would warn).
  for (int attempt = 0;; ++attempt) {
    ReadAttempt look = read_once(*state_, function, key, touch);
    if (look.result.status != LoadStatus::corrupt || look.error != ESTALE) return std::move(look.result);
    if (attempt == 2) {
      look.result.status = LoadStatus::missing;
      look.result.problem.clear();
      return std::move(look.result);
    }
  }
}

std::optional<EntryMetadata> Store::metadata(std::string_view function, const Hash128& key) const {
  const std::string path = entry_path(function, key).string();
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat info {};
  if (!fd || fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) return std::nullopt;
  try {
    return read_metadata_from(fd.get(), static_cast<std::uint64_t>(info.st_size));
  } catch (const detail::CorruptEntry&) {
    return std::nullopt;
  }
}

bool Store::contains(std::string_view function, const Hash128& key) const {
  return metadata(function, key).has_value();
}

void Store::save(std::string_view function, const Hash128& key, EntryMetadata metadata,
                 std::span<const std::byte> payload) const {
  validate_function_name(function);
  const std::string hex = key.hex();
  const std::string directory = detail::shard_directory(*state_, function, hex);
  const std::string path = directory + "/" + hex;

  metadata.payload_size = payload.size();
  metadata.format_version = detail::kEntryFormatVersion;
  metadata.checksum = hash_bytes(payload.data(), payload.size());
  if (metadata.payload_kind != PayloadKind::hdf5_companion) metadata.payload_kind = PayloadKind::inline_codec;
  std::string prefix;
  try {
    prefix = detail::encode_entry_prefix(metadata);
  } catch (const SerializationError& e) {
    throw StorageError("cannot write cache entry " + path + ": " + e.message());
  }

  const std::string temporary = directory + "/" + detail::temporary_name(hex);
  const bool group_shared = state_->options.group_shared;
  FileDescriptor fd;
  // A concurrent clear() may remove the directory between our mkdir and open: retry a little.
  for (int attempt = 0; attempt < 4 && !fd; ++attempt) {
    if (int error = detail::injected_fault(detail::IoStep::open_temporary); error != 0) {
      throw_write_error("write cache entry", path, error);
    }
    fd = FileDescriptor(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
    if (fd) break;
    if (errno != ENOENT) throw_write_error("write cache entry", path, errno);
    if (int error = detail::make_directories(directory, group_shared); error != 0) {
      throw_write_error("create cache directory", directory, error);
    }
  }
  if (!fd) throw_write_error("write cache entry", path, ENOENT);

  // From here on, a failure must not leave the temporary file behind.
  const auto fail = [&](const char* what, int error) {
    fd.reset();
    ::unlink(temporary.c_str());
    throw_write_error(what, path, error);
  };
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
    if (error == 0 && ::rename(temporary.c_str(), path.c_str()) != 0) error = errno;
    if (error != 0) fail("publish cache entry", error);
  }

  if (const auto budget = state_->options.bytes_limit) {
    std::uint64_t written = prefix.size() + payload.size();
    struct stat companion {};
    if (metadata.payload_kind == PayloadKind::hdf5_companion &&
        stat(detail::companion_path_of(path).c_str(), &companion) == 0) {
      written += static_cast<std::uint64_t>(companion.st_size);
    }
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
  const std::string path = entry_path(function, key).string();
  const bool removed = ::unlink(path.c_str()) == 0;
  ::unlink(detail::companion_path_of(path).c_str());
  return removed;
}

std::vector<std::string> Store::functions() const {
  std::vector<std::string> names;
  for (auto& name : directory_names(state_->root_text)) {
    if (name.front() == '.') continue;
    struct stat info {};
    if (stat((state_->root_text + "/" + name).c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
      names.push_back(std::move(name));
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<EntryInfo> Store::list(const ListOptions& options) const {
  std::vector<std::string> function_names;
  if (options.function) {
    validate_function_name(*options.function);
    function_names.push_back(*options.function);
  } else {
    function_names = functions();
  }
  std::vector<EntryInfo> entries;
  for (const auto& function : function_names) {
    const std::string function_directory = state_->root_text + "/" + function;
    for (const auto& shard : directory_names(function_directory)) {
      if (!is_shard_name(shard)) continue;
      const std::string shard_directory = function_directory + "/" + shard;
      const std::vector<std::string> names = directory_names(shard_directory);
      const auto is_companion = [](const std::string& name) {
        return name.size() == 35 && name.ends_with(".h5") && is_hex_key(name.substr(0, 32));
      };
      std::set<std::string> companions;  // keys of the entries that have one
      std::set<std::string> keys;        // keys of entries
      for (const auto& name : names) {
        if (is_companion(name)) companions.insert(name.substr(0, 32));
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
        } else if (is_companion(name) && !keys.contains(name.substr(0, 32))) {
          info.kind = EntryKind::temporary;  // its entry is gone, or not yet published
          info.key = *Hash128::from_hex(name.substr(0, 32));
        } else {
          continue;
        }
        if (info.kind != EntryKind::entry && !options.include_leftovers) continue;
        if (info.kind != EntryKind::temporary) info.key = *Hash128::from_hex(name.substr(0, 32));
        info.path = shard_directory + "/" + name;
        // Opened for entries (one open gives size, mtime and metadata); stat'ed otherwise.
        struct stat status {};
        if (info.kind == EntryKind::entry && options.read_metadata) {
          FileDescriptor fd(::open(info.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
          if (!fd || fstat(fd.get(), &status) != 0) continue;  // removed meanwhile
          try {
            info.metadata = read_metadata_from(fd.get(), static_cast<std::uint64_t>(status.st_size));
          } catch (const detail::CorruptEntry& e) {
            info.problem = e.what();
          }
        } else if (lstat(info.path.c_str(), &status) != 0) {
          continue;
        }
        info.size = static_cast<std::uint64_t>(status.st_size);
        info.last_used = mtime_of(status);
        if (info.kind == EntryKind::entry && companions.contains(name)) {
          info.companion = detail::companion_path_of(info.path.string());
          struct stat companion {};
          if (stat(info.companion.c_str(), &companion) == 0) info.size += static_cast<std::uint64_t>(companion.st_size);
        }
        entries.push_back(std::move(info));
      }
    }
  }
  return entries;
}

std::size_t Store::clear(std::optional<std::string_view> function) const {
  ListOptions options{.include_leftovers = true};
  if (function) options.function = std::string(*function);
  std::size_t removed = 0;
  for (const auto& info : list(options)) {
    if (::unlink(info.path.c_str()) == 0 && info.kind == EntryKind::entry) ++removed;
    if (!info.companion.empty()) ::unlink(info.companion.c_str());
  }
  // Empty directories go too; a directory a concurrent writer just filled stays (ENOTEMPTY),
  // and a writer that loses its directory recreates it.
  const auto functions_cleared = function ? std::vector<std::string>{std::string(*function)} : functions();
  for (const auto& name : functions_cleared) {
    const std::string function_directory = state_->root_text + "/" + name;
    bool ours = function.has_value();
    for (const auto& shard : directory_names(function_directory)) {
      if (!is_shard_name(shard)) continue;
      ours = true;
      ::rmdir((function_directory + "/" + shard).c_str());
    }
    // Only directories the store made: a cache at a filesystem's root keeps its lost+found.
    if (ours) ::rmdir(function_directory.c_str());
  }
  return removed;
}

ReduceReport Store::reduce_size(const ReduceOptions& options) const {
  ListOptions list_options{.include_leftovers = true};
  list_options.function = options.function;
  std::vector<EntryInfo> all = list(list_options);
  const auto now = Clock::now();
  ReduceReport report;

  // Removes a file unless it was used (or replaced) after we listed it: that narrows the race
  // with a concurrent hit or writer to the instant between this stat and the unlink, and losing
  // that race costs one recomputation, never a wrong result.
  const auto remove = [&](EntryInfo& info) {
    struct stat status {};
    if (lstat(info.path.c_str(), &status) != 0) return;  // someone else removed it
    if (mtime_of(status) > info.last_used) return;
    if (!options.dry_run && ::unlink(info.path.c_str()) != 0) return;
    if (!options.dry_run && !info.companion.empty()) ::unlink(info.companion.c_str());
    report.removed_bytes += info.size;
    report.removed.push_back(std::move(info));
  };

  std::vector<EntryInfo*> entries;
  for (auto& info : all) {
    if (info.kind == EntryKind::entry) {
      entries.push_back(&info);
    } else if (now - info.last_used > options.leftover_age) {
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
