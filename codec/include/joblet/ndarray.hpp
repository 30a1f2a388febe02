#pragma once
/// @file
/// NDArray<T>: an n-dimensional array of an Element type (dtype.hpp) in C order, like numpy's
/// ndarray. Its elements live in memory it owns, in an adopted std::vector, or in a memory-mapped
/// region of a file (load() with an mmap mode, SharedArray, large results of the processes
/// backend).
///
/// @code
///   joblet::NDArray<double> a({2, 3});            // zeros, shape (2, 3)
///   a.mutable_at(1, 2) = 5.0;                      // checked write
///   double x = a(1, 2);                            // unchecked read
///   std::span<const double> all = a.span();        // every element, no copy
///   auto b = joblet::NDArray<double>::from(std::vector<double>(6, 1.0), {3, 2});  // adopts the vector
/// @endcode
///
/// A handle, like numpy's ndarray and std::shared_ptr: copies, slice() and reshape() share the
/// elements; copy() makes an independent array. A const handle does not make the elements
/// const (a copy of it could write them); whether they can be written is writable(): false for
/// arrays mapped read-only from a file. Reads never check it; writes go through mutable_data(),
/// mutable_span() or mutable_at(), which throw StorageError on a read-only array instead of
/// crashing on the protected page.
///
/// With the codec, an array encodes as its shape and one block of bytes (no per-element work),
/// hashes in one streaming pass, and becomes a dataset of its own in dump() files.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>
#if __has_include(<mdspan>)
#include <mdspan>
#endif

#include "joblet/codec.hpp"
#include "joblet/dtype.hpp"
#include "joblet/error.hpp"

namespace joblet {

namespace detail {
template <class T>
class VectorBuffer final : public ArrayBuffer {
 public:
  explicit VectorBuffer(std::vector<T> values) noexcept : values_(std::move(values)) {}
  T* data() noexcept { return values_.data(); }

 private:
  std::vector<T> values_;
};

[[noreturn]] void throw_read_only_array(std::string_view mapped_file);
/// std::invalid_argument: `elements` elements do not make an array of `shape`.
[[noreturn]] void throw_count_mismatch(std::span<const std::size_t> shape, std::size_t elements);
/// std::invalid_argument: a rank above 32, or more elements than any memory holds.
[[noreturn]] void throw_impossible_shape(std::span<const std::size_t> shape);
[[noreturn]] void throw_array_index_error(std::span<const std::size_t> shape, std::span<const std::size_t> index);
}  // namespace detail

/// An n-dimensional array of T in C order: a handle whose copies share the elements (see
/// ndarray.hpp for where they live and who may write them). Like std::shared_ptr, separate
/// handles may be used from separate threads; writes to the shared elements need the caller's
/// synchronisation.
///
/// The constructors and factories that take a shape throw std::invalid_argument for a rank above
/// 32 or more elements than any memory holds, and StorageError when the memory cannot be had.
template <Element T>
class NDArray {
 public:
  using value_type = T;                    ///< the element type
  using Shape = std::vector<std::size_t>;  ///< the extent of each axis, first axis first

  /// An empty one-dimensional array.
  NDArray() : shape_{0} {}
  /// Zeros of this shape (numpy.zeros). Large arrays get fresh pages, zero until touched.
  explicit NDArray(Shape shape) : NDArray(allocate(std::move(shape), /*zero=*/true)) {}
  /// Every element `value` (numpy.full).
  NDArray(Shape shape, T value) : NDArray(allocate(std::move(shape), false)) { std::fill_n(data_, size_, value); }
  /// Takes over the vector's storage, no copy, seen in `shape` (default: one dimension); the
  /// element count must match. (A factory, not a constructor: NDArray<std::size_t> would not
  /// know a vector of values from a shape.)
  static NDArray from(std::vector<T> values, Shape shape = {}) {
    if (shape.empty()) shape = {values.size()};
    const std::size_t count = count_of(shape);
    if (count != values.size()) detail::throw_count_mismatch(shape, values.size());
    auto buffer = std::make_shared<detail::VectorBuffer<T>>(std::move(values));
    T* data = buffer->data();
    return NDArray(std::move(buffer), data, std::move(shape), true);
  }
  /// A copy of these values, seen in `shape` (default: one dimension); the count must match.
  static NDArray copy_of(std::span<const T> values, Shape shape = {}) {
    if (shape.empty()) shape = {values.size()};
    NDArray array(allocate(std::move(shape), false));
    if (values.size() != array.size_) detail::throw_count_mismatch(array.shape_, values.size());
    if (array.size_ != 0) std::memcpy(array.data_, values.data(), array.nbytes());
    return array;
  }
  /// Memory for this shape, not initialised (numpy.empty): for arrays about to be overwritten.
  static NDArray uninitialized(Shape shape) { return NDArray(allocate(std::move(shape), false)); }

  /// Elements kept alive by `buffer` (how readers of files make mapped arrays).
  NDArray(std::shared_ptr<const detail::ArrayBuffer> buffer, T* data, Shape shape, bool writable)
      : buffer_(std::move(buffer)),
        data_(data),
        shape_(std::move(shape)),
        size_(count_of(shape_)),
        writable_(writable) {}

  // --- shape ---------------------------------------------------------------------------------
  /// The number of axes.
  std::size_t rank() const noexcept { return shape_.size(); }
  /// The extent of each axis.
  const Shape& shape() const noexcept { return shape_; }
  /// The extent of one axis; std::out_of_range when `axis` is not below rank().
  std::size_t extent(std::size_t axis) const { return shape_.at(axis); }
  /// Elements between neighbours along `axis` (C order: the last axis is contiguous);
  /// std::out_of_range when `axis` is not below rank().
  std::size_t stride(std::size_t axis) const {
    std::size_t stride = 1;
    for (std::size_t d = shape_.size(); d-- > axis + 1;) stride *= shape_[d];
    if (axis >= shape_.size()) throw std::out_of_range("NDArray::stride: axis out of range");
    return stride;
  }
  /// The number of elements: the product of the extents (1 for rank 0).
  std::size_t size() const noexcept { return size_; }
  /// The bytes the elements take: size() * sizeof(T).
  std::size_t nbytes() const noexcept { return size_ * sizeof(T); }
  /// Whether there are no elements (an extent is 0).
  bool empty() const noexcept { return size_ == 0; }

  // --- where the elements are ----------------------------------------------------------------
  /// Whether the elements may be written: false for arrays mapped read-only from a file.
  bool writable() const noexcept { return writable_; }
  /// Whether the elements are memory-mapped from a file (mapped_file() names it).
  bool is_mapped() const noexcept { return buffer_ && !buffer_->mapped_file().empty(); }
  /// The file the elements are mapped from; empty for arrays in memory.
  std::string_view mapped_file() const noexcept { return buffer_ ? buffer_->mapped_file() : std::string_view{}; }

  // --- reading (never checked for writability) -----------------------------------------------
  /// The first element; the others follow it in C order.
  const T* data() const noexcept { return data_; }
  /// Every element in C order, no copy.
  std::span<const T> span() const noexcept { return {data_, size_}; }
  /// The first element, for iterating over every element in C order.
  const T* begin() const noexcept { return data_; }
  /// Past the last element.
  const T* end() const noexcept { return data_ + size_; }
  /// The element at this index (one per axis), unchecked like std::mdspan's.
  template <std::integral... I>
  const T& operator()(I... index) const noexcept {
    const std::size_t indices[] = {static_cast<std::size_t>(index)..., 0};
    return data_[offset_of(indices)];
  }
  /// The same, with the index count and every index checked (std::out_of_range).
  template <std::integral... I>
  const T& at(I... index) const {
    return data_[checked_offset({static_cast<std::size_t>(index)...})];
  }

  // --- writing (StorageError on a read-only array) -------------------------------------------
  /// The first element, for writing; StorageError when the array is not writable().
  T* mutable_data() {
    require_writable();
    return data_;
  }
  /// Every element in C order, for writing; StorageError when the array is not writable().
  std::span<T> mutable_span() {
    require_writable();
    return {data_, size_};
  }
  /// The element at this index (one per axis), for writing, with the index count and every
  /// index checked (std::out_of_range); StorageError when the array is not writable().
  template <std::integral... I>
  T& mutable_at(I... index) {
    require_writable();
    return data_[checked_offset({static_cast<std::size_t>(index)...})];
  }

  // --- views and copies ----------------------------------------------------------------------
  /// Rows [begin, end) along the first axis, sharing the elements; std::out_of_range when they are
  /// not rows of the array.
  NDArray slice(std::size_t begin, std::size_t end) const {
    if (shape_.empty() || begin > end || end > shape_[0]) {
      throw std::out_of_range("NDArray::slice(" + std::to_string(begin) + ", " + std::to_string(end) +
                              ") of an array of shape " + detail::describe_shape(shape_));
    }
    Shape shape = shape_;
    shape[0] = end - begin;
    const std::size_t row = shape_[0] == 0 ? 0 : size_ / shape_[0];
    return NDArray(buffer_, data_ + begin * row, std::move(shape), writable_);
  }
  /// The same elements in another shape, sharing them; std::invalid_argument when the element
  /// counts differ.
  NDArray reshape(Shape shape) const {
    if (count_of(shape) != size_) detail::throw_count_mismatch(shape, size_);
    return NDArray(buffer_, data_, std::move(shape), writable_);
  }
  /// An independent, writable copy in memory.
  NDArray copy() const { return copy_of(span(), shape_); }
  /// A copy of the elements in C order, as a std::vector.
  std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }

#ifdef __cpp_lib_mdspan
  /// A read-only std::mdspan of the elements, with the array's extents; std::invalid_argument when
  /// `Rank` is not rank().
  template <std::size_t Rank>
  std::mdspan<const T, std::dextents<std::size_t, Rank>> mdspan() const {
    return {data_, extents<Rank>()};
  }
  /// The same, for writing; StorageError when the array is not writable().
  template <std::size_t Rank>
  std::mdspan<T, std::dextents<std::size_t, Rank>> mutable_mdspan() {
    return {mutable_data(), extents<Rank>()};
  }
#endif

  /// Equal shapes and equal elements (numpy.array_equal).
  friend bool operator==(const NDArray& a, const NDArray& b) {
    return a.shape_ == b.shape_ && std::equal(a.begin(), a.end(), b.begin());
  }

 private:
  struct Allocated {  // not an aggregate: `NDArray({0})` must mean a shape
    Allocated(std::shared_ptr<const detail::ArrayBuffer> b, T* d, Shape s)
        : buffer(std::move(b)), data(d), shape(std::move(s)) {}
    std::shared_ptr<const detail::ArrayBuffer> buffer;
    T* data;
    Shape shape;
  };
  static Allocated allocate(Shape shape, bool zero) {
    const std::size_t count = count_of(shape);
    if (count > (std::size_t{1} << 62) / sizeof(T)) detail::throw_impossible_shape(shape);
    void* data = nullptr;
    std::shared_ptr<const detail::ArrayBuffer> buffer = detail::allocate_array_buffer(count * sizeof(T), data, zero);
    return Allocated(std::move(buffer), static_cast<T*>(data), std::move(shape));
  }
  explicit NDArray(Allocated allocated)
      : buffer_(std::move(allocated.buffer)),
        data_(allocated.data),
        shape_(std::move(allocated.shape)),
        size_(count_of(shape_)) {}

  static std::size_t count_of(const Shape& shape) {
    if (shape.size() > detail::kMaxRank) detail::throw_impossible_shape(shape);
    std::size_t count = 1;
    for (std::size_t extent : shape) {
      if (extent != 0 && count > ~std::size_t{0} / extent) detail::throw_impossible_shape(shape);
      count *= extent;
    }
    return count;
  }
  std::size_t offset_of(const std::size_t* index) const noexcept {
    std::size_t offset = 0;
    for (std::size_t d = 0; d < shape_.size(); ++d) offset = offset * shape_[d] + index[d];
    return offset;
  }
  std::size_t checked_offset(std::initializer_list<std::size_t> index) const {
    const std::span<const std::size_t> indices(index.begin(), index.size());
    bool ok = indices.size() == shape_.size();
    for (std::size_t d = 0; ok && d < indices.size(); ++d) ok = indices[d] < shape_[d];
    if (!ok) detail::throw_array_index_error(shape_, indices);
    return offset_of(indices.data());
  }
  void require_writable() const {
    if (!writable_) detail::throw_read_only_array(mapped_file());
  }
#ifdef __cpp_lib_mdspan
  template <std::size_t Rank>
  std::dextents<std::size_t, Rank> extents() const {
    if (Rank != shape_.size())
      throw std::invalid_argument("NDArray: an mdspan of rank " + std::to_string(Rank) + " for an array of rank " +
                                  std::to_string(shape_.size()));
    std::array<std::size_t, Rank> e{};
    std::copy(shape_.begin(), shape_.end(), e.begin());
    return std::dextents<std::size_t, Rank>(e);
  }
#endif

  std::shared_ptr<const detail::ArrayBuffer> buffer_;
  T* data_ = nullptr;
  Shape shape_;
  std::size_t size_ = 0;
  bool writable_ = true;
};

// --- the codec (see detail/array_io.hpp for the encoding) -------------------------------------

/// Encodes an array (cereal's save()): its dtype and shape, then its elements as one block of
/// bytes, or a reference to where they were stored when the archive takes large arrays.
template <class Sink, Element T>
void CEREAL_SAVE_FUNCTION_NAME(detail::SinkOutputArchive<Sink>& ar, const NDArray<T>& array) {
  detail::save_array(ar, dtype_of<T>, array.shape(), array.data(), array.nbytes());
}

/// Decodes an array (cereal's load()): inline elements are copied into new memory; a reference is
/// resolved by the archive's reader, which may map the elements from a file. decode() throws
/// SerializationError when the bytes hold another dtype or are too short for the shape they claim.
template <Element T>
void CEREAL_LOAD_FUNCTION_NAME(detail::SpanInputArchive& ar, NDArray<T>& array) {
  detail::ArrayHeader header = detail::load_array_header(ar, dtype_of<T>);
  if (header.inline_data) {
    // The header checked that the bytes are there before anything is allocated.
    NDArray<T> loaded = NDArray<T>::uninitialized(std::move(header.shape));
    ar.load_bytes(loaded.mutable_data(), header.nbytes);
    array = std::move(loaded);
  } else {
    detail::OpenedArray opened = detail::open_array_reference(ar, dtype_of<T>, header);
    array =
        NDArray<T>(std::move(opened.buffer), static_cast<T*>(opened.data), std::move(header.shape), opened.writable);
  }
}

}  // namespace joblet
