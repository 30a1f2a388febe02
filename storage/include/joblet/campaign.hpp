#pragma once
/// @file
/// Campaigns: the tasks of one Parallel call over a cached function, recorded in the cache, so
/// that `joblet status` can tell — from a login node, while jobs run — how many are done.
///
/// A campaign is named after its function and a hash of its task keys ("ising.simulate-3fa9c1d2"):
/// the same call made again (a resubmitted job, another array element) finds the same record.

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "joblet/hash.hpp"
#include "joblet/store.hpp"

namespace joblet {

/// A host and job that computed entries of a campaign, or holds the locks of tasks it is
/// computing now. Several jobs share a campaign when they run the same command (elastic
/// campaigns, job arrays, a chain of time-limited jobs).
struct CampaignContributor {
  /// Its host name; empty for entries written by a joblet too old to record it.
  std::string host;
  /// Its Slurm job ("1234", "1230_4" for an array element); empty outside Slurm.
  std::string job;
  std::size_t computed = 0;   ///< the campaign's entries it wrote
  std::size_t computing = 0;  ///< tasks it computes now: missing ones under its live lock or run claim
};

/// A cached call that failed, as the process that saw it fail recorded it in the cache (the worker
/// that ran it, or for a worker that died or ran past its timeout, the caller), so that `joblet
/// status` can list a campaign's failed tasks. A later failure of the same call replaces it.
struct TaskFailure {
  std::size_t task = 0;    ///< its index in the campaign (set by campaign_status())
  Hash128 key{};           ///< the call's cache key
  std::string error_type{};  ///< the exception's type, as C++ writes it
  std::string error{};       ///< its message (at most 4 KiB)
  std::string host{};        ///< where it failed
  std::string job{};         ///< its Slurm job ("1234", "1230_4"); empty outside Slurm
  long pid = 0;            ///< the process that recorded it
  /// When it was recorded, to the second, by the recording host's clock.
  std::chrono::system_clock::time_point when{};
};

/// A recorded campaign and its progress now, as campaign_status() reads it from the cache.
struct CampaignStatus {
  /// Its name (campaign_name()).
  std::string name;
  /// The cached function whose tasks it runs.
  std::string function;
  /// How many tasks (task keys) it has.
  std::size_t tasks = 0;
  std::size_t done = 0;  ///< tasks with an entry in the cache now
  /// When it was first recorded, to the second, by the recording host's clock.
  std::chrono::system_clock::time_point recorded;
  std::vector<CampaignContributor> contributors;  ///< those computing now first, then by entries written
  /// Its tasks that are not done and whose last attempt failed, in task order: rerunning the
  /// same command runs exactly them and the other missing ones again.
  std::vector<TaskFailure> failed;
};

/// Tasks [begin, end) of a campaign, in the order of its keys.
struct TaskRun {
  /// Index of the run's first task.
  std::size_t begin = 0;
  /// Index one past the run's last task.
  std::size_t end = 0;
  /// Runs are equal when they cover the same tasks.
  friend bool operator==(const TaskRun&, const TaskRun&) = default;
};

/// The runs of tasks that the processes of an elastic campaign claim, one claim file per run, so
/// that a short task costs no lock of its own (on a network filesystem every lock is several round
/// trips to the server).
///
/// The claims form a chain in `.campaigns/<campaign>.runs/`: each claim file is named after the
/// first task of its run and holds where the run ends, and a process claims the run that starts
/// where the last claim it has read ends, by making that file appear with its content in one
/// link() (atomic on NFS and Lustre). Runs never overlap, whatever length each process picks,
/// and a process reads each claim of the others once. The holder proves it is alive by the
/// claim's heartbeat (its mtime), exactly as a compute-once lock does. One object serves one
/// thread at a time.
class CampaignRuns {
 public:
  /// Joins the run claims of the campaign named `campaign` (see campaign_name()), whose tasks are
  /// numbered 0 to `tasks` - 1, in the cache at `location`: makes their directory when needed,
  /// and claims nothing yet. Throws ConfigError for invalid `options` (validate_lock_options()),
  /// and StorageError when the directory cannot be made (a read-only cache, something in the
  /// way); claim() throws it when this filesystem has no hard links. Elastic campaigns then claim
  /// each task by its own compute-once lock.
  CampaignRuns(const std::filesystem::path& location, const std::string& campaign, std::size_t tasks,
               const LockOptions& options = {});
  /// Releases the run held, if any (its claim file stays: the chain needs it).
  ~CampaignRuns();
  CampaignRuns(const CampaignRuns&) = delete;
  CampaignRuns& operator=(const CampaignRuns&) = delete;

  /// Claims the next run of at most `length` tasks (at least one) after every run claimed so
  /// far, and keeps its heartbeat until release() or the next claim; nullopt when every task of
  /// the campaign is in a run.
  std::optional<TaskRun> claim(std::size_t length);
  /// The run held is finished (its results published, or it failed): stops its heartbeat. Its
  /// claim file stays, as the chain needs it. Does nothing when no run is held.
  void release() noexcept;
  /// The runs claimed by other processes (or by earlier calls of this one) that claim() passed,
  /// in task order.
  const std::vector<TaskRun>& others() const noexcept;
  /// Whether whoever claimed `run`, one of others(), is gone: its claim file is gone or is no
  /// claim, names a dead process of this host, or its heartbeat has not moved for stale_after as
  /// watched over repeated calls on this process's own clock (immune to clock skew).
  bool holder_gone(const TaskRun& run);

  /// For reports (`joblet status`): every run claimed in the campaign's chain, with its holder as
  /// the claim names it and whether its heartbeat is live, in task order. Waits for nothing.
  static std::vector<std::pair<TaskRun, LockHolder>> claimed(const Store& store, const std::string& campaign,
                                                             std::size_t tasks, const LockOptions& options = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The name of the campaign of these task keys: `<function>-<8 hex digits of their hash>`.
std::string campaign_name(const std::string& function, std::span<const Hash128> keys);

/// Records the campaign of these task keys in the cache at `location` (once: a record that
/// exists is kept) and returns its name. Throws StorageError when it cannot be written.
std::string record_campaign(const std::filesystem::path& location, const std::string& function,
                            std::span<const Hash128> keys);

/// The campaigns recorded in the cache at `location`, with their progress, by name.
/// Unreadable records are skipped with a warning.
std::vector<CampaignStatus> campaign_status(const std::filesystem::path& location);

}  // namespace joblet
