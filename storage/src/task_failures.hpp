#pragma once
// Failed cached calls, recorded in the cache for `joblet status` (TaskFailure, campaign.hpp): one
// small file per call key, `.campaigns/failures/<function>/<key>`, written like an entry (under a
// unique name, then renamed into place) by whoever saw the call fail; a later failure replaces it.

#include <optional>
#include <string>

#include "beneath.hpp"
#include "joblet/campaign.hpp"

namespace joblet::detail {

// Records `failure` (its task index is not stored) of a call of `function` in the cache at
// `root`. Throws StorageError when it cannot be written.
void record_task_failure(const CacheRoot& root, const std::string& function, const TaskFailure& failure);

// The failures recorded for `function` in the cache at `root`, read one key at a time; reads
// nothing when none were ever recorded. Damaged or hostile files read as no failure.
class TaskFailures {
 public:
  TaskFailures(const CacheRoot& root, const std::string& function);

  std::optional<TaskFailure> find(const Hash128& key) const;

 private:
  FileDescriptor directory_;
};

}  // namespace joblet::detail
