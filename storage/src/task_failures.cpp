#include "task_failures.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "beneath.hpp"
#include "io.hpp"
#include "joblet/codec.hpp"

namespace joblet::detail {
namespace {

// The file format: versioned, so that a later joblet can tell an older record and skip it.
constexpr std::uint32_t kFailureFormat = 1;
constexpr std::size_t kMaxMessage = 4096;
// A record holds a message of 4 KiB and a few names: anything much larger is not one.
constexpr off_t kMaxRecordBytes = 64 * 1024;

std::string failures_directory(const std::string& function) { return ".campaigns/failures/" + function; }

struct FailureRecord {
  std::uint32_t format = kFailureFormat;
  Hash128 key{};
  std::string error_type;
  std::string error;
  std::string host;
  std::string job;
  std::int64_t pid = 0;
  std::int64_t when_seconds = 0;  // since the epoch
  template <class Archive>
  void serialize(Archive& ar) {
    ar(format, key, error_type, error, host, job, pid, when_seconds);
  }
};

}  // namespace

void record_task_failure(const CacheRoot& root, const std::string& function, const TaskFailure& failure) {
  const std::string relative = failures_directory(function);
  // Below the cache root, no link is followed: a record never lands outside the cache.
  FileDescriptor directory = root.open_directory(relative, true, false);
  if (!directory) {
    const int error = errno;
    if (error == ELOOP || error == ENOTDIR || error == EEXIST) {
      throw StorageError("cannot record the failure of a call of " + function + ": " +
                         root.describe_obstacle(relative));
    }
    throw StorageError("cannot create " + root.shown(relative) + ": " + describe_write_errno(error));
  }
  const FailureRecord record{
      kFailureFormat,     failure.key,
      failure.error_type, failure.error.substr(0, kMaxMessage),
      failure.host,       failure.job,
      failure.pid,        std::chrono::duration_cast<std::chrono::seconds>(failure.when.time_since_epoch()).count()};
  const std::string bytes = encode(record);
  const int problem = publish_file_at(directory.get(), failure.key.hex(), bytes);
  if (problem != 0) {
    throw StorageError("cannot record the failure of a call of " + function + " in " + root.shown(relative) + ": " +
                       describe_write_errno(problem));
  }
}

TaskFailures::TaskFailures(const CacheRoot& root, const std::string& function)
    : directory_(root.open_directory(failures_directory(function), false, false)) {}

std::optional<TaskFailure> TaskFailures::find(const Hash128& key) const {
  if (!directory_) return std::nullopt;
  // Never followed through a link, never waited on (a FIFO), read only as far as it goes.
  FileDescriptor fd(::openat(directory_.get(), key.hex().c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return std::nullopt;
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0 || !unusable_file(info).empty() || info.st_size > kMaxRecordBytes ||
      holds_less_than_it_claims(info)) {
    return std::nullopt;
  }
  std::string bytes(static_cast<std::size_t>(info.st_size), '\0');
  if (read_fully_at(fd.get(), bytes.data(), bytes.size(), 0) != 0) return std::nullopt;
  try {
    const auto record = decode<FailureRecord>(bytes);
    if (record.format != kFailureFormat || !(record.key == key)) return std::nullopt;
    return TaskFailure{.task = 0,
                       .key = record.key,
                       .error_type = record.error_type,
                       .error = record.error,
                       .host = record.host,
                       .job = record.job,
                       .pid = static_cast<long>(record.pid),
                       .when = std::chrono::system_clock::time_point(std::chrono::seconds(record.when_seconds))};
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace joblet::detail
