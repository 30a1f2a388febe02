#pragma once
// `joblet status`: the campaigns recorded in a cache (Parallel calls over a cached function)
// and how many of their tasks are done, e.g. to watch a job array from a login node.
#include <string>

namespace joblet::cli {

struct StatusArguments {
  std::string directory;  // empty: $JOBLET_CACHE_DIR, else ./joblet-cache
};

// 0 when every campaign is complete, 1 on errors, 3 while some tasks are missing (for scripts).
int run_status_command(const StatusArguments& arguments);

}  // namespace joblet::cli
