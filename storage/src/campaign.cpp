#include "joblet/campaign.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>

#include "io.hpp"
#include "joblet/codec.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/store.hpp"

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

std::filesystem::path campaigns_directory(const std::filesystem::path& location) { return location / ".campaigns"; }

}  // namespace

std::string record_campaign(const std::filesystem::path& location, const std::string& function,
                            std::span<const Hash128> keys) {
  validate_function_name(function);
  const std::string name = function + "-" + hash_value(std::vector<Hash128>(keys.begin(), keys.end())).hex().substr(0, 8);
  const auto directory = campaigns_directory(location);
  const auto path = directory / (name + ".campaign");
  std::error_code error;
  if (std::filesystem::exists(path, error)) return name;
  if (const int failure = detail::make_directories(directory, false); failure != 0) {
    throw StorageError("cannot create " + directory.string() + ": " + detail::describe_write_errno(failure));
  }
  CampaignRecord record{kCampaignFormat, function, std::vector<Hash128>(keys.begin(), keys.end()),
                        std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count()};
  const std::string bytes = encode(record);
  // Published like cache entries: written under a unique name, then renamed into place.
  const auto temporary = directory / detail::temporary_name(name);
  const std::span<const std::byte> part(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  int failure = 0;
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    failure = errno;
  } else {
    failure = detail::write_all(fd, {&part, 1});
    if (::close(fd) != 0 && failure == 0) failure = errno;
    if (failure == 0 && std::rename(temporary.c_str(), path.c_str()) != 0) failure = errno;
  }
  if (failure != 0) {
    std::filesystem::remove(temporary, error);
    throw StorageError("cannot record campaign " + name + " in " + directory.string() + ": " +
                       detail::describe_write_errno(failure));
  }
  return name;
}

std::vector<CampaignStatus> campaign_status(const std::filesystem::path& location) {
  std::vector<CampaignStatus> campaigns;
  std::error_code error;
  const auto directory = campaigns_directory(location);
  if (!std::filesystem::is_directory(directory, error)) return campaigns;
  Store store(location);
  for (const auto& file : std::filesystem::directory_iterator(directory, error)) {
    if (file.path().extension() != ".campaign") continue;
    std::ifstream in(file.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    try {
      const auto record = decode<CampaignRecord>(bytes);
      if (record.format != kCampaignFormat) {
        throw SerializationError("format " + std::to_string(record.format) + ", this joblet reads " +
                                 std::to_string(kCampaignFormat));
      }
      CampaignStatus status;
      status.name = file.path().stem().string();
      status.function = record.function;
      status.tasks = record.keys.size();
      status.done = static_cast<std::size_t>(std::count_if(record.keys.begin(), record.keys.end(), [&](const Hash128& key) {
        return store.contains(record.function, key);
      }));
      status.recorded = std::chrono::system_clock::time_point(std::chrono::seconds(record.recorded_seconds));
      campaigns.push_back(std::move(status));
    } catch (const Error& e) {
      detail::log().warn(
          "skipping the campaign record {}: {}; remove it, or read it with the joblet version that wrote it",
          file.path().string(), e.message());
    }
  }
  std::sort(campaigns.begin(), campaigns.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return campaigns;
}

}  // namespace joblet
