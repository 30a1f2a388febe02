#pragma once
// Large results of the process-based backends (processes, mpi) through files instead of pipes or
// messages (joblib's max_nbytes and temp_folder, applied to results). The engine owns this
// interface and never sees an array or a file; launch/ installs storage's implementation (HDF5
// files the receiver maps, storage/internal/joblet/detail/result_folder.hpp). A program built on
// the engine alone sends every result inline.

#include <cstddef>
#include <memory>
#include <string>

namespace joblet::detail {

class ArrayWriter;
class ArrayReader;

// The folder of one call. Its writer and reader go to Job::run_encoded() and
// complete_encoded(); both are safe to use from any thread.
class ResultFiles {
 public:
  virtual ~ResultFiles() = default;
  // Takes result arrays above max_nbytes into files of the folder; the bytes get references.
  virtual ArrayWriter& writer() const noexcept = 0;
  // Maps the arrays those references name from their files.
  virtual ArrayReader& reader() const noexcept = 0;
  // Removes the folder now (if this process removes it at all), for a caller whose workers may
  // outlive the call; results encoded later stay inline.
  virtual void remove_now() noexcept = 0;
  // Removes the files this process wrote (see ResultFolder::remove_own_files).
  virtual void remove_own_files() noexcept = 0;
  virtual const std::string& path() const noexcept = 0;
};

struct ResultFilesPlace {
  std::size_t max_nbytes = 0;
  // A fresh folder in `root` (empty: /dev/shm with room, else $TMPDIR, else /tmp)...
  std::string root;
  // ...or exactly this folder, on a filesystem every process of the call sees (mpi ranks).
  std::string shared_path;
  bool remove_when_done = true;
  // Map received arrays from their files (one node), or read them into memory (across nodes,
  // where a file removed by another client can vanish under a mapping).
  bool map_arrays = true;
};

using ResultFilesFactory = std::unique_ptr<ResultFiles> (*)(const ResultFilesPlace& place);
void set_result_files_factory(ResultFilesFactory factory) noexcept;
// The folder of a call; null when max_nbytes is unlimited or no implementation is installed.
std::unique_ptr<ResultFiles> make_result_files(const ResultFilesPlace& place);

}  // namespace joblet::detail
