#include "joblet/campaign.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "beneath.hpp"
#include "io.hpp"
#include "joblet/codec.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/store.hpp"
#include "task_failures.hpp"

namespace joblet {
namespace {

// The file format: versioned, so that a later joblet can refuse an older record clearly.
constexpr std::uint32_t kCampaignFormat = 1;

struct CampaignRecord {
  std::uint32_t format = kCampaignFormat;
  std::string function;
  std::vector<Hash128> keys;
  std::int64_t recorded_seconds = 0;  // since the epoch
  template <class Archive>
  void serialize(Archive& ar) {
    ar(format, function, keys, recorded_seconds);
  }
};

constexpr const char* kCampaignsDirectory = ".campaigns";
// 16 bytes per task: room for campaigns of tens of millions of tasks, and a bound on what a
// damaged record can make `joblet status` read.
constexpr std::uint64_t kMaxRecordBytes = std::uint64_t{1} << 30;

std::string record_name(const std::string& name) { return name + ".campaign"; }

}  // namespace

std::string campaign_name(const std::string& function, std::span<const Hash128> keys) {
  return function + "-" + hash_value(std::vector<Hash128>(keys.begin(), keys.end())).hex().substr(0, 8);
}

std::string record_campaign(const std::filesystem::path& location, const std::string& function,
                            std::span<const Hash128> keys) {
  validate_function_name(function);
  const std::string name = campaign_name(function, keys);
  detail::CacheRoot root(std::filesystem::absolute(location).lexically_normal().string());
  const std::string shown = root.shown(kCampaignsDirectory);
  // Below the cache root, no link is followed: a record never lands outside the cache.
  detail::FileDescriptor directory = root.open_directory(kCampaignsDirectory, true, false);
  if (!directory) {
    const int error = errno;
    if (error == ELOOP || error == ENOTDIR || error == EEXIST) {
      throw StorageError("cannot record campaign " + name + ": " + root.describe_obstacle(kCampaignsDirectory));
    }
    throw StorageError("cannot create " + shown + ": " + detail::describe_write_errno(error));
  }
  const std::string file = record_name(name);
  struct stat existing {};
  if (::fstatat(directory.get(), file.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(existing.st_mode)) {
    return name;  // recorded before (a rerun, another array element)
  }
  CampaignRecord record{
      kCampaignFormat, function, std::vector<Hash128>(keys.begin(), keys.end()),
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()};
  const std::string bytes = encode(record);
  const int failure = detail::publish_file_at(directory.get(), file, bytes);
  if (failure != 0) {
    throw StorageError("cannot record campaign " + name + " in " + shown + ": " +
                       detail::describe_write_errno(failure));
  }
  return name;
}

std::vector<CampaignStatus> campaign_status(const std::filesystem::path& location) {
  std::vector<CampaignStatus> campaigns;
  detail::CacheRoot root(std::filesystem::absolute(location).lexically_normal().string());
  detail::FileDescriptor directory = root.open_directory(kCampaignsDirectory, false, false);
  if (!directory) {
    if (errno == ELOOP || errno == ENOTDIR) {
      detail::log().warn("not reading campaign records: {}", root.describe_obstacle(kCampaignsDirectory));
    }
    return campaigns;
  }
  Store store(location);
  std::vector<std::string> names;
  const int listing = ::dup(directory.get());
  DIR* handle = listing >= 0 ? ::fdopendir(listing) : nullptr;
  if (handle == nullptr && listing >= 0) ::close(listing);
  if (handle != nullptr) {
    while (const dirent* item = ::readdir(handle)) {
      const std::string_view name = item->d_name;
      if (name.size() > 9 && name.ends_with(".campaign")) names.emplace_back(name);
    }
    ::closedir(handle);
  }
  std::sort(names.begin(), names.end());
  for (const auto& file : names) {
    const std::string shown = root.shown(std::string(kCampaignsDirectory) + "/" + file);
    const auto skip = [&](const std::string& why) {
      detail::log().warn(
          "skipping the campaign record {}: {}; remove it, or read it with the joblet version that wrote it", shown,
          why);
    };
    // Never followed through a link, never waited on (a FIFO), read only as far as it goes.
    detail::FileDescriptor fd(::openat(directory.get(), file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat info {};
    if (!fd) {
      if (errno != ENOENT)
        skip(errno == ELOOP ? "it is a symbolic link, which the cache never follows" : std::strerror(errno));
      continue;
    }
    if (fstat(fd.get(), &info) != 0) continue;
    if (std::string why = detail::unusable_file(info); !why.empty()) {
      skip(why);
      continue;
    }
    const auto size = static_cast<std::uint64_t>(info.st_size);
    if (size > kMaxRecordBytes || detail::holds_less_than_it_claims(info)) {
      skip("it claims " + std::to_string(size) + " bytes, more than a record holds (a sparse or damaged file)");
      continue;
    }
    std::string bytes(static_cast<std::size_t>(size), '\0');
    if (detail::read_fully_at(fd.get(), bytes.data(), bytes.size(), 0) != 0) {
      skip("it cannot be read");
      continue;
    }
    try {
      const auto record = decode<CampaignRecord>(bytes);
      if (record.format != kCampaignFormat) {
        throw SerializationError("format " + std::to_string(record.format) + ", this joblet reads " +
                                 std::to_string(kCampaignFormat));
      }
      CampaignStatus status;
      status.name = file.substr(0, file.size() - 9);
      status.function = record.function;
      status.tasks = record.keys.size();
      std::map<std::pair<std::string, std::string>, CampaignContributor> by_host_and_job;
      const auto contributor = [&](std::string host, std::string job) -> CampaignContributor& {
        return by_host_and_job.try_emplace({host, job}, CampaignContributor{host, job}).first->second;
      };
      std::vector<bool> done(record.keys.size(), false);
      const detail::TaskFailures failures(root, record.function);
      for (std::size_t index = 0; index < record.keys.size(); ++index) {
        const Hash128& key = record.keys[index];
        if (const auto metadata = store.metadata(record.function, key)) {
          ++status.done;
          done[index] = true;
          const auto field = [&](const char* name) {
            const auto at = metadata->extra.find(name);
            return at == metadata->extra.end() ? std::string() : at->second;
          };
          ++contributor(field("host"), field("job")).computed;
        } else {
          if (const auto holder = store.lock_holder(record.function, key); holder && holder->live) {
            ++contributor(holder->host, holder->job).computing;
          }
          if (auto failure = failures.find(key)) {
            failure->task = index;
            status.failed.push_back(std::move(*failure));
          }
        }
      }
      // Tasks of runs claimed by a live process (elastic campaigns claim runs, not keys).
      for (const auto& [run, holder] : CampaignRuns::claimed(store, status.name, record.keys.size())) {
        if (!holder.live) continue;
        const auto missing = std::count(done.begin() + static_cast<std::ptrdiff_t>(run.begin),
                                        done.begin() + static_cast<std::ptrdiff_t>(run.end), false);
        if (missing > 0) contributor(holder.host, holder.job).computing += static_cast<std::size_t>(missing);
      }
      for (auto& [who, found] : by_host_and_job) status.contributors.push_back(std::move(found));
      std::stable_sort(status.contributors.begin(), status.contributors.end(), [](const auto& a, const auto& b) {
        return std::pair(a.computing > 0, a.computed) > std::pair(b.computing > 0, b.computed);
      });
      status.recorded = std::chrono::system_clock::time_point(std::chrono::seconds(record.recorded_seconds));
      campaigns.push_back(std::move(status));
    } catch (const Error& e) {
      skip(e.message());
    }
  }
  return campaigns;
}

}  // namespace joblet
