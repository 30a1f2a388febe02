#pragma once
// `joblet info`: what joblet sees here — how the program would be started, CPUs, the default
// backend, the cache directory and its filesystem, library versions.
#include <string>

namespace joblet::cli {

struct InfoArguments {
  std::string cache_dir;  // empty: $JOBLET_CACHE_DIR, else ./joblet-cache
};

int run_info_command(const InfoArguments& arguments);

}  // namespace joblet::cli
