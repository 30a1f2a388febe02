#pragma once
// Large results of the process-based backends (processes, mpi) through files instead of pipes or
// messages (joblib's max_nbytes and temp_folder, applied to results). The engine owns this
// interface and never sees an array or a file; launch/ installs storage's implementation (HDF5
// files the receiver maps, storage/internal/joblet/detail/result_folder.hpp). A program built on
// the engine alone sends every result inline.

#include <cstddef>
#include <memory>
#include <span>
#include <string>

namespace joblet::detail {

// A non-owning reference to a callable taking nothing, for calls that must not allocate.
class FunctionRef {
 public:
  template <class F>
  FunctionRef(F& function) noexcept  // NOLINT: converts from any callable, as std::function does
      : object_(&function), call_([](void* object) { (*static_cast<F*>(object))(); }) {}
  void operator()() const { call_(object_); }

 private:
  void* object_;
  void (*call_)(void*);
};

// The folder of one call.
class ResultFiles {
 public:
  virtual ~ResultFiles() = default;
  // Runs `encode`; meanwhile result arrays above max_nbytes that this thread encodes into `out`
  // go to files of the folder, and `out` gets references to them.
  virtual void while_encoding(const std::string& out, FunctionRef encode) const = 0;
  // Runs `decode`; meanwhile the references in `bytes` are mapped from their files.
  virtual void while_decoding(std::span<const std::byte> bytes, FunctionRef decode) const = 0;
  // Removes the folder now (if this process removes it at all), for a caller whose workers may
  // outlive the call; results encoded later stay inline.
  virtual void remove_now() noexcept = 0;
  virtual const std::string& path() const noexcept = 0;
};

struct ResultFilesPlace {
  std::size_t max_nbytes = 0;
  // A fresh folder in `root` (empty: /dev/shm with room, else $TMPDIR, else /tmp)...
  std::string root;
  // ...or exactly this folder, on a filesystem every process of the call sees (mpi ranks).
  std::string shared_path;
  bool remove_when_done = true;
};

using ResultFilesFactory = std::unique_ptr<ResultFiles> (*)(const ResultFilesPlace& place);
void set_result_files_factory(ResultFilesFactory factory) noexcept;
// The folder of a call; null when max_nbytes is unlimited or no implementation is installed.
std::unique_ptr<ResultFiles> make_result_files(const ResultFilesPlace& place);

}  // namespace joblet::detail
