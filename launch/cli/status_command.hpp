#pragma once
// `joblet status`: the campaigns recorded in a cache (Parallel calls over a cached function), how
// many of their tasks are done, who computes them and which failed, e.g. to watch a job array
// from a login node; `--watch` refreshes that view, with rates and ETAs, until all are complete.
#include <string>

namespace joblet::cli {

struct StatusArguments {
  std::string directory;  // empty: $JOBLET_CACHE_DIR, else ./joblet-cache
  bool watch = false;
  double interval_seconds = 5;  // between two views with watch
};

// 0 when every campaign is complete, 1 on errors, 3 while some tasks are missing (for scripts).
int run_status_command(const StatusArguments& arguments);

}  // namespace joblet::cli
