#pragma once
/// @file
/// SharedArray: a handle on an array in an HDF5 file (file, dataset, dtype, shape) that is tiny
/// to copy and to send to another process or rank, and opens the file only when the data is
/// asked for, mapping it rather than reading it.
///
/// @code
///   // rank 0 (or any process) writes once ...
///   joblet::SharedArray handle = joblet::SharedArray::write("/scratch/me/field.h5", field);
///   // ... and sends `handle` anywhere (it encodes to about a hundred bytes); there:
///   joblet::NDArray<double> view = handle.get<double>();   // mapped read-only, nothing read yet
///
///   // Any HDF5 file's contiguous dataset, e.g. one written by h5py:
///   auto x = joblet::SharedArray("data.h5", "/group/x").get<float>();
/// @endcode
///
/// The handle carries the dtype and shape when it was made by write() (and across processes),
/// so get<T>() checks them against the file: a file replaced by one of another shape is an
/// error, not a wrong answer. Arrays that cannot be mapped (compressed or chunked datasets) are
/// read into memory instead. A mapping is made once per handle and mode in a process and shared
/// by every array get() returns; it lives as long as any of them does.

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "joblet/codec.hpp"
#include "joblet/dtype.hpp"
#include "joblet/mmap_mode.hpp"
#include "joblet/ndarray.hpp"

namespace joblet {

/// A handle on an array in an HDF5 file (see this file's description). Copies share what this
/// process has opened and mapped; its const members may be called from several threads at once.
class SharedArray {
 public:
  /// A handle that refers to nothing, to assign or decode into: dtype(), shape() and get() throw
  /// StorageError.
  SharedArray() = default;
  /// Refers to `dataset` of the HDF5 file `file` (written by joblet or any other program).
  /// Nothing is opened here. Throws ConfigError when either name is empty.
  explicit SharedArray(std::filesystem::path file, std::string dataset = "data");

  /// Writes `array` as dataset `dataset` of a new HDF5 file at `file` (replacing it atomically:
  /// readers see the old file or the new one) and returns a handle on it, which knows the
  /// array's dtype and shape. Throws ConfigError when a name is empty, StorageError when the
  /// file cannot be written.
  template <Element T>
  static SharedArray write(const std::filesystem::path& file, const NDArray<T>& array,
                           const std::string& dataset = "data") {
    return write_block(file, dataset, dtype_of<T>, array.shape(), array.data(), array.nbytes());
  }

  /// The HDF5 file's path, as given when the handle was made.
  const std::string& file() const noexcept { return file_; }
  /// The dataset's name in the file ("data" unless another was given).
  const std::string& dataset() const noexcept { return dataset_; }
  /// The elements' dtype: from the handle when known, otherwise read from the file (once). Throws
  /// StorageError when the file cannot be read, or no longer holds what the handle says.
  DType dtype() const;
  /// The array's shape: from the handle when known, otherwise read from the file (once). Throws
  /// as dtype() does.
  const std::vector<std::size_t>& shape() const;
  /// The number of elements: the product of shape().
  std::size_t size() const;
  /// The array's size in bytes: size() elements of dtype().
  std::size_t nbytes() const { return size() * dtype_size(dtype()); }

  /// The array: mapped (read_only: shared pages, writes throw; copy_on_write: private, writable
  /// pages) or read into memory (MmapMode::none, and for data that cannot be mapped). T must be
  /// the dataset's dtype. Throws StorageError when the file is missing, damaged or changed.
  template <Element T>
  NDArray<T> get(MmapMode mode = MmapMode::read_only) const {
    detail::OpenedArray opened = open(dtype_of<T>, mode);
    return NDArray<T>(std::move(opened.buffer), static_cast<T*>(opened.data), shape(), opened.writable);
  }

  /// Encodes the handle (for the codec, through cereal): the file and dataset names, and the dtype
  /// and shape when the handle knows them; never the data.
  template <class Archive>
  void save(Archive& ar) const {
    const auto dtype = static_cast<std::uint8_t>(dtype_ ? *dtype_ : DType{0});
    const auto rank = static_cast<std::uint8_t>(shape_ ? shape_->size() : 0xff);
    ar(file_, dataset_, dtype, rank);
    if (shape_) {
      for (std::size_t extent : *shape_) ar(static_cast<std::uint64_t>(extent));
    }
  }
  /// Decodes a handle that save() encoded; it opens the file anew in this process. An unknown
  /// dtype or a rank above 32 is refused (the codec throws SerializationError).
  template <class Archive>
  void load(Archive& ar) {
    std::uint8_t dtype = 0, rank = 0;
    ar(file_, dataset_, dtype, rank);
    dtype_.reset();
    shape_.reset();
    state_ = make_state();
    if (dtype != 0) {
      if (dtype_size(static_cast<DType>(dtype)) == 0) throw cereal::Exception("a SharedArray names an unknown dtype");
      dtype_ = static_cast<DType>(dtype);
    }
    if (rank != 0xff) {
      if (rank > detail::kMaxRank) throw cereal::Exception("a SharedArray claims rank above 32");
      std::vector<std::size_t> shape(rank);
      for (auto& extent : shape) {
        std::uint64_t value = 0;
        ar(value);
        extent = static_cast<std::size_t>(value);
      }
      shape_ = std::move(shape);
    }
  }

  /// What this process has opened of the file; shared by copies, defined by the implementation.
  struct State;

 private:
  static SharedArray write_block(const std::filesystem::path& file, const std::string& dataset, DType dtype,
                                 std::span<const std::size_t> shape, const void* data, std::size_t nbytes);
  static std::shared_ptr<State> make_state();
  detail::OpenedArray open(DType dtype, MmapMode mode) const;
  State& state() const;

  std::string file_;
  std::string dataset_;
  std::optional<DType> dtype_;                     ///< as the handle was made with
  std::optional<std::vector<std::size_t>> shape_;  ///< as the handle was made with
  std::shared_ptr<State> state_;                   ///< what this process opened; shared by copies
};

}  // namespace joblet
