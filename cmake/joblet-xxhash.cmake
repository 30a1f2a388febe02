# xxHash ships no CMake config: wrap its header and library in an imported target.
# Included both by the build and by the installed joblet-config.cmake.
find_path(JOBLET_XXHASH_INCLUDE_DIR xxhash.h REQUIRED)
find_library(JOBLET_XXHASH_LIBRARY NAMES xxhash REQUIRED)
if(NOT TARGET joblet_xxhash)
  add_library(joblet_xxhash UNKNOWN IMPORTED)
  set_target_properties(joblet_xxhash PROPERTIES
    IMPORTED_LOCATION "${JOBLET_XXHASH_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${JOBLET_XXHASH_INCLUDE_DIR}")
endif()
