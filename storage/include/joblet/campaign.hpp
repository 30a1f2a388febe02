#pragma once
// Campaigns: the tasks of one Parallel call over a cached function, recorded in the cache, so
// that `joblet status` can tell — from a login node, while jobs run — how many are done.
//
// A campaign is named after its function and a hash of its task keys ("ising.simulate-3fa9c1d2"):
// the same call made again (a resubmitted job, another array element) finds the same record.

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "joblet/hash.hpp"

namespace joblet {

struct CampaignStatus {
  std::string name;
  std::string function;
  std::size_t tasks = 0;
  std::size_t done = 0;  // tasks with an entry in the cache now
  std::chrono::system_clock::time_point recorded;
};

// Records the campaign of these task keys in the cache at `location` (once: a record that
// exists is kept) and returns its name. Throws StorageError when it cannot be written.
std::string record_campaign(const std::filesystem::path& location, const std::string& function,
                            std::span<const Hash128> keys);

// The campaigns recorded in the cache at `location`, with their progress, by name.
// Unreadable records are skipped with a warning.
std::vector<CampaignStatus> campaign_status(const std::filesystem::path& location);

}  // namespace joblet
