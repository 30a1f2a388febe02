#pragma once
// Large results of worker processes, through files instead of pipes (joblib's max_nbytes and
// temp_folder, applied to results). For the engine's process-based backends, which only hand
// these to the codec and never see an array:
//
//   ResultFolder folder(settings.max_nbytes, settings.temp_folder);   // in the caller, per call
//   ResultWriter writer(folder);   // in each worker: encode_into(result, frames, &writer)
//   ResultReader reader(folder);   // in the caller: decode_from<R>(result_bytes, &reader)
//
// In a worker, every array of a result that is larger than max_nbytes is written to a file of
// its own in the folder (an HDF5 file with one contiguous dataset, readable as a SharedArray)
// and only a short reference goes through the pipe. The caller maps the file (private pages:
// the array is writable and the file never changes) instead of reading it; arrays stay valid
// after the folder is gone. The folder is made by the first worker that needs it, and removed
// with everything in it when the ResultFolder is destroyed (or by remove_now()): when the call
// ends, however it ends.
// A worker that cannot write a file (no space left) sends the array through the pipe instead.
//
// The folder: the configured one, else /dev/shm when it has room (2 GiB free, as joblib asks),
// else $TMPDIR, else /tmp; in it, a fresh directory joblet-<host>-<pid>-<n>-<random>. Folders
// left by a killed process of this host are removed by the next process that makes one there.
//
// Across hosts (the MPI backend moving large results through a shared filesystem): every rank
// makes a ResultFolder on the same path (SharedPath: rank 0 picks it and tells the others),
// and only one of them removes it. File names carry the writer's host and pid, so ranks never
// collide.

#include <cstddef>
#include <limits>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "joblet/detail/array_io.hpp"

namespace joblet::detail {

class ResultFolder {
 public:
  // max_nbytes: arrays larger than this go to files; std::numeric_limits<std::size_t>::max()
  // turns the folder off. root: where to make the folder (empty: see above).
  ResultFolder(std::size_t max_nbytes, const std::string& root);
  // A folder at exactly `path` (on a filesystem every rank sees), removed at the end only when
  // `remove_when_done`.
  struct SharedPath {
    std::string path;
    bool remove_when_done = false;
  };
  ResultFolder(std::size_t max_nbytes, SharedPath folder);
  ~ResultFolder();  // removes the folder
  ResultFolder(const ResultFolder&) = delete;
  ResultFolder& operator=(const ResultFolder&) = delete;

  // Removes the folder now (when this ResultFolder removes it at all), for a caller whose
  // workers may outlive the call (a thread abandoned at a timeout). Thread-safe: results
  // written after it stay inline, so the folder is never made again.
  void remove_now();
  // Removes the files this process wrote. Across nodes each writer removes its own before the
  // owner removes the folder: the owner's client may list the folder from a cache that has not
  // seen the other nodes' files yet, and a folder it cannot empty stays behind.
  void remove_own_files() noexcept;

  bool enabled() const noexcept { return !path_.empty(); }
  const std::string& path() const noexcept { return path_; }
  std::size_t max_nbytes() const noexcept { return max_nbytes_; }

 private:
  friend class ResultWriter;

  std::size_t max_nbytes_;
  std::string path_;
  bool remove_when_done_ = true;
  // Writers hold it shared while they make a file; remove_now() exclusively.
  mutable std::shared_mutex writing_;
  bool removed_ = false;
  mutable std::mutex written_mutex_;
  mutable std::vector<std::string> written_;  // names of the files this process wrote
};

// Both hold no state of their own: one of each serves every thread of a process.
class ResultWriter final : public ArrayWriter {
 public:
  explicit ResultWriter(const ResultFolder& folder) noexcept;
  std::optional<std::string> store(const ArrayBlock& block) override;

 private:
  const ResultFolder& folder_;
};

class ResultReader final : public ArrayReader {
 public:
  // `map`: arrays are mapped from their files; otherwise read into memory (for a folder on a
  // network filesystem, where another client's unlink can pull a mapped file away).
  explicit ResultReader(const ResultFolder& folder, bool map = true) noexcept : folder_(folder), map_(map) {}
  OpenedArray open(std::string_view reference, DType dtype, std::span<const std::size_t> shape,
                   std::size_t nbytes) override;
  void read(std::string_view reference, DType dtype, std::span<const std::size_t> shape, std::size_t nbytes,
            Destination destination) override;

 private:
  const ResultFolder& folder_;
  bool map_;
};

}  // namespace joblet::detail
