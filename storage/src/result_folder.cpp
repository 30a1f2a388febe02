#include "joblet/detail/result_folder.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>

#include "array_file.hpp"
#include "io.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/error.hpp"

namespace joblet::detail {
namespace {

// joblib's rule for /dev/shm: use it when at least this much of it is free.
constexpr std::uint64_t kSharedMemoryRoom = 2'000'000'000;
constexpr const char* kDataset = "data";

std::string pick_root() {
  struct statvfs info {};
  if (statvfs("/dev/shm", &info) == 0 &&
      static_cast<std::uint64_t>(info.f_bavail) * info.f_frsize >= kSharedMemoryRoom && access("/dev/shm", W_OK) == 0) {
    return "/dev/shm";
  }
  const char* tmpdir = std::getenv("TMPDIR");
  return tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
}

std::string folder_prefix() { return "joblet-" + host_name_for_files() + "-"; }

// The fix when something else changed the call's folder while the call ran (a tmp cleaner, say).
constexpr const char* kFolderFix =
    "set temp_folder (or JOBLET_TEMP_FOLDER) to a directory nothing cleans while the call runs";

// The cause and fix of a failed write of a result file: the fix is another folder for them.
std::string describe_result_errno(int error) {
  std::string text = std::strerror(error);
  switch (error) {
    case ENOSPC:
    case EDQUOT:
      return text + "; free space there, or set temp_folder (or JOBLET_TEMP_FOLDER) to a folder with room";
    case EROFS:
    case EACCES:
    case EPERM:
    case ENOTDIR:
      return text + "; set temp_folder (or JOBLET_TEMP_FOLDER) to a folder this user can write";
    case ENOENT:
      return text + "; the call's folder was removed meanwhile: " + kFolderFix;
    default:
      return text;
  }
}

// Folders of processes of this host that died before removing theirs (killed by SIGKILL, say).
void remove_abandoned_folders(const std::string& root) {
  static std::mutex mutex;
  static std::set<std::string> swept;
  {
    std::lock_guard lock(mutex);
    if (!swept.insert(root).second) return;
  }
  const std::string prefix = folder_prefix();
  std::error_code error;
  for (std::filesystem::directory_iterator it(root, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid <= 0 || pid == static_cast<long>(getpid()) || process_alive(pid)) continue;
    std::error_code ignored;
    std::filesystem::remove_all(it->path(), ignored);
  }
}

struct Location {
  std::string name;
  std::uint64_t offset = 0;
};

// "<host>-<pid>-<n>.h5:<offset>", as ResultWriter makes them: a plain file name in the folder
// (no '/', no leading '.'); anything else is refused.
std::optional<Location> parse_reference(std::string_view reference) {
  const std::size_t colon = reference.rfind(':');
  if (colon == std::string_view::npos || colon > 255) return std::nullopt;
  const std::string_view name = reference.substr(0, colon);
  const std::string_view offset = reference.substr(colon + 1);
  if (!name.ends_with(".h5") || name.size() < 4 || name.front() == '.') return std::nullopt;
  for (char c : name) {
    const bool plain =
        (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.';
    if (!plain) return std::nullopt;
  }
  if (offset.empty() || offset.size() > 19) return std::nullopt;
  Location location{std::string(name), 0};
  for (char c : offset) {
    if (c < '0' || c > '9') return std::nullopt;
    location.offset = location.offset * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return location;
}

// The result file a reference names, opened and checked to hold `nbytes` at its offset.
struct OpenedFile {
  int fd = -1;
  std::string path;
  std::uint64_t size = 0;
  std::uint64_t offset = 0;
  ~OpenedFile() {
    if (fd >= 0) ::close(fd);
  }
};

void open_result(const ResultFolder& folder, std::string_view reference, DType dtype, std::size_t nbytes,
                 OpenedFile& file) {
  const auto location = parse_reference(reference);
  if (!location) throw SerializationError("a worker's result refers to a file in a form joblet does not write");
  file.path = folder.path() + "/" + location->name;
  file.offset = location->offset;
  file.fd = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (file.fd < 0) {
    throw StorageError("cannot open the result file " + file.path + " a worker wrote: " + std::strerror(errno) +
                       " (was the call's temporary folder removed by someone else?); " + kFolderFix);
  }
  struct stat info {};
  if (fstat(file.fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    throw StorageError("the result file " + file.path + " is not a regular file (replaced by someone else?); " +
                       kFolderFix);
  }
  file.size = static_cast<std::uint64_t>(info.st_size);
  if (file.offset % dtype_size(dtype) != 0 || file.offset > file.size || nbytes > file.size - file.offset) {
    throw StorageError("the result file " + file.path + " (" + std::to_string(file.size) +
                       " bytes) does not hold the array its worker announced (changed by someone else?); " +
                       kFolderFix);
  }
}

}  // namespace

ResultFolder::ResultFolder(std::size_t max_nbytes, const std::string& root) : max_nbytes_(max_nbytes) {
  if (max_nbytes == std::numeric_limits<std::size_t>::max()) return;
  const std::string base = root.empty() ? pick_root() : root;
  remove_abandoned_folders(base);
  static std::atomic<unsigned> calls{0};
  static const std::uint64_t salt = std::random_device{}();
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, "%ld-%u-%08llx", static_cast<long>(getpid()), calls.fetch_add(1),
                static_cast<unsigned long long>(
                    (salt ^ static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())) &
                    0xffffffffULL));
  path_ = base + "/" + folder_prefix() + suffix;
}

ResultFolder::ResultFolder(std::size_t max_nbytes, SharedPath folder)
    : max_nbytes_(max_nbytes), remove_when_done_(folder.remove_when_done) {
  if (max_nbytes != std::numeric_limits<std::size_t>::max()) path_ = std::move(folder.path);
}

ResultFolder::~ResultFolder() { remove_now(); }

void ResultFolder::remove_now() {
  std::unique_lock lock(writing_);
  if (removed_) return;
  removed_ = true;
  if (path_.empty() || !remove_when_done_) return;
  remove_own_files();
  if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void ResultFolder::remove_own_files() noexcept {
  std::lock_guard lock(written_mutex_);
  for (const std::string& name : written_) ::unlink((path_ + "/" + name).c_str());
  written_.clear();
}

ResultWriter::ResultWriter(const ResultFolder& folder) noexcept
    : ArrayWriter(folder.max_nbytes() == std::numeric_limits<std::size_t>::max() ? folder.max_nbytes()
                                                                                      : folder.max_nbytes() + 1),
      folder_(folder) {}

std::optional<std::string> ResultWriter::store(const ArrayBlock& block) {
  static std::atomic<unsigned> files{0};
  std::shared_lock lock(folder_.writing_);
  if (folder_.removed_) return std::nullopt;  // the call is over: nobody would read the file
  try {
    // The folder is private (0700) whoever makes it; its parent may not exist yet either (the
    // MPI backend's <cache>/.results, made by the first rank with a large result).
    if (mkdir(folder_.path().c_str(), 0700) != 0 && errno != EEXIST) {
      int error =
          errno == ENOENT ? make_directories(std::filesystem::path(folder_.path()).parent_path(), false) : errno;
      if (error == 0 && mkdir(folder_.path().c_str(), 0700) != 0 && errno != EEXIST) error = errno;
      if (error != 0) {
        throw StorageError("cannot create the result folder " + folder_.path() + ": " + describe_result_errno(error));
      }
    }
    const std::string name =
        host_name_for_files() + "-" + std::to_string(getpid()) + "-" + std::to_string(files.fetch_add(1)) + ".h5";
    ArrayFileSettings settings;
    settings.checksum = false;  // the file lives only until the caller maps it
    settings.describe_errno = describe_result_errno;
    ArrayFileWriter file(folder_.path() + "/" + name, settings);
    file.set_root_attribute("joblet_format", std::string_view("joblet.array"));
    file.add_array(kDataset, block);
    const std::uint64_t offset = file.offset_of(0);
    file.finish();
    {
      std::lock_guard names(folder_.written_mutex_);
      folder_.written_.push_back(name);
    }
    return name + ":" + std::to_string(offset);
  } catch (const std::exception& e) {
    if (first_time("joblet.results.file:" + folder_.path())) {
      log().warn("a large result goes through the pipe instead of a file: {}", e.what());
    }
    return std::nullopt;
  }
}

// Errors are SerializationErrors: the engine records them as the task's failure to deliver
// its result, like any other undecodable result.
OpenedArray ResultReader::open(std::string_view reference, DType dtype, std::span<const std::size_t>,
                               std::size_t nbytes) {
  try {
    OpenedFile file;
    open_result(folder_, reference, dtype, nbytes, file);
    if (!map_) {
      void* data = nullptr;
      std::shared_ptr<ArrayBuffer> buffer = allocate_array_buffer(nbytes, data, false);
      if (const int error = nbytes == 0 ? 0 : read_fully_at(file.fd, data, nbytes, file.offset); error != 0) {
        throw StorageError("cannot read the result file " + file.path + ": " + std::strerror(error));
      }
      return {std::move(buffer), data, true};
    }
    auto mapping = std::make_shared<const FileMapping>(file.fd, file.size, /*copy_on_write=*/true, file.path);
    return {mapping, mapping->data() + file.offset, true};
  } catch (const StorageError& e) {
    throw SerializationError(e.message());
  }
}

void ResultReader::read(std::string_view reference, DType dtype, std::span<const std::size_t> shape, std::size_t nbytes,
                        Destination destination) {
  try {
    OpenedFile file;
    open_result(folder_, reference, dtype, nbytes, file);
    void* data = destination.allocate(destination.context, shape.empty() ? 1 : shape[0]);
    if (nbytes == 0) return;
    if (const int error = read_fully_at(file.fd, data, nbytes, file.offset); error != 0) {
      throw StorageError("cannot read the result file " + file.path + ": " + std::strerror(error));
    }
  } catch (const StorageError& e) {
    throw SerializationError(e.message());
  }
}

}  // namespace joblet::detail
