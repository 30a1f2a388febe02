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

// A host and job that computed entries of a campaign, or holds the locks of tasks it is
// computing now. Several jobs share a campaign when they run the same command (elastic
// campaigns, job arrays, a chain of time-limited jobs).
struct CampaignContributor {
  std::string host;  // empty: entries written by a joblet too old to record it
  std::string job;   // its Slurm job ("1234", "1230_4" for an array element); empty outside Slurm
  std::size_t computed = 0;   // the campaign's entries it wrote
  std::size_t computing = 0;  // tasks whose compute-once lock it holds now, with a live heartbeat
};

struct CampaignStatus {
  std::string name;
  std::string function;
  std::size_t tasks = 0;
  std::size_t done = 0;  // tasks with an entry in the cache now
  std::chrono::system_clock::time_point recorded;
  std::vector<CampaignContributor> contributors;  // those computing now first, then by entries written
};

// Records the campaign of these task keys in the cache at `location` (once: a record that
// exists is kept) and returns its name. Throws StorageError when it cannot be written.
std::string record_campaign(const std::filesystem::path& location, const std::string& function,
                            std::span<const Hash128> keys);

// The campaigns recorded in the cache at `location`, with their progress, by name.
// Unreadable records are skipped with a warning.
std::vector<CampaignStatus> campaign_status(const std::filesystem::path& location);

}  // namespace joblet
