#pragma once
/// @file
/// How arrays stored in files come back: read into memory, or memory-mapped (joblib's mmap_mode).

namespace joblet {

/// How load(), SharedArray::get() and a Memory's hits give back an array kept in a file
/// (joblib's mmap_mode: None, 'r' or 'c'). Arrays that cannot be mapped (compressed or chunked
/// datasets) are read into memory whatever the mode.
enum class MmapMode {
  none,       ///< read into memory (joblib's None)
  read_only,  ///< mapped shared and read-only: nothing is read until touched; writes throw ('r')
  /// Mapped private and writable: written pages become private copies, the file never changes
  /// ('c').
  copy_on_write,
};

}  // namespace joblet
