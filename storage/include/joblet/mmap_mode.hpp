#pragma once
/// @file
/// How arrays stored in files come back: read into memory, or memory-mapped (joblib's mmap_mode).

namespace joblet {

enum class MmapMode {
  none,           ///< read into memory (joblib's None)
  read_only,      ///< mapped shared and read-only: nothing is read until touched; writes throw ('r')
  copy_on_write,  ///< mapped private and writable: written pages become private copies, the file never changes ('c')
};

}  // namespace joblet
