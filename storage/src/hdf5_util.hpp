#pragma once
// The HDF5 C API as the storage library uses it: owned identifiers, errors as StorageError with
// HDF5's own explanation, the dtype <-> HDF5 type mapping, and small attributes. Private to
// storage/src: hdf5.h never reaches a public header.
//
// Debian's parallel HDF5 is built without its thread-safety option, so every HDF5 call must be
// made under lock(). fork() takes the lock too (pthread_atfork), so a child (a processes-backend
// worker writes its large results with HDF5) never inherits the library in the middle of a call.
// Bulk data never moves under the lock: joblet reads and writes array bytes itself, at the
// offsets HDF5 gives, so a thread writing a 1 GiB file blocks other threads' HDF5 calls only
// while metadata is written.

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "joblet/dtype.hpp"

namespace joblet::detail::h5 {

// Initialises HDF5 once (no error printing to stderr: joblet reports errors itself) and
// returns the lock every HDF5 call is made under. Not recursive: no joblet function that
// takes it calls another that does.
std::unique_lock<std::mutex> lock();

// An HDF5 identifier, closed with its own close function.
class Id {
 public:
  Id() noexcept = default;
  Id(hid_t id, herr_t (*closer)(hid_t)) noexcept : id_(id), close_(closer) {}
  Id(Id&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  Id& operator=(Id&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      close_ = other.close_;
      other.id_ = -1;
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() { reset(); }
  hid_t get() const noexcept { return id_; }
  explicit operator bool() const noexcept { return id_ >= 0; }
  void reset() noexcept {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = -1;
  }
  // Closes now and reports failure (closing a file flushes its metadata).
  bool close() noexcept {
    const hid_t id = id_;
    id_ = -1;
    return id < 0 || close_ == nullptr || close_(id) >= 0;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// HDF5's explanation of the error it just reported (its error stack, most specific first).
std::string error_text();
// Throws StorageError("<what>: <HDF5's explanation>").
[[noreturn]] void fail(const std::string& what);
// `id` owned with `close`; throws (fail(what)) when HDF5 returned an error.
Id make(hid_t id, herr_t (*close)(hid_t), const std::string& what);
void check(herr_t status, const std::string& what);

// File access for joblet's files: 64-byte alignment of every object of 64 bytes or more (array
// data can be memory-mapped in place) and no HDF5 file locks (they fail on NFS and Lustre, and
// joblet never changes a published file: writers rename finished files into place).
Id file_access();

// The HDF5 type a dtype is stored as: little-endian IEEE floats and integers, and bool as
// h5py stores it (an enum of int8 with FALSE = 0 and TRUE = 1).
Id file_type(DType dtype);
// The dtype an HDF5 type holds, when it is one of those (byte order included).
std::optional<DType> dtype_from(hid_t type);
// "a 16-bit big-endian integer" and the like, for errors about types joblet cannot map.
std::string describe_type(hid_t type);

void write_string_attribute(hid_t object, const char* name, std::string_view value);
// Stored as a little-endian u32 (the format's attributes are versions and the like).
void write_uint_attribute(hid_t object, const char* name, std::uint32_t value);
// nullopt when the attribute is missing or is not a short fixed-length string / an unsigned
// integer; never reads more than `max_size` bytes.
std::optional<std::string> read_string_attribute(hid_t object, const char* name, std::size_t max_size = 4096);
std::optional<std::uint64_t> read_uint_attribute(hid_t object, const char* name);

}  // namespace joblet::detail::h5
