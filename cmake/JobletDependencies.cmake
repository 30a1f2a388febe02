# Every dependency is a Debian 12 package (see tools/setup); none is vendored.
find_package(Threads REQUIRED)
find_package(TBB REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(cereal REQUIRED)
include(joblet-xxhash)
