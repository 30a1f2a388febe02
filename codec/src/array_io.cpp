// The codec's array support: buffers, resolving references through the archive's reader, and the checks
// every array header passes before anything is allocated (see detail/array_io.hpp).
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "joblet/ndarray.hpp"

namespace joblet {

std::string_view dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::boolean:
      return "bool";
    case DType::int8:
      return "int8";
    case DType::int16:
      return "int16";
    case DType::int32:
      return "int32";
    case DType::int64:
      return "int64";
    case DType::uint8:
      return "uint8";
    case DType::uint16:
      return "uint16";
    case DType::uint32:
      return "uint32";
    case DType::uint64:
      return "uint64";
    case DType::float32:
      return "float32";
    case DType::float64:
      return "float64";
    case DType::complex64:
      return "complex64";
    case DType::complex128:
      return "complex128";
  }
  return "unknown";
}

std::size_t dtype_size(DType dtype) noexcept {
  switch (dtype) {
    case DType::boolean:
    case DType::int8:
    case DType::uint8:
      return 1;
    case DType::int16:
    case DType::uint16:
      return 2;
    case DType::int32:
    case DType::uint32:
    case DType::float32:
      return 4;
    case DType::int64:
    case DType::uint64:
    case DType::float64:
    case DType::complex64:
      return 8;
    case DType::complex128:
      return 16;
  }
  return 0;
}

namespace detail {
namespace {

// Below this, memory comes from the allocator; above, from mmap (glibc would mmap such sizes
// too, but without the alignment, and a huge-page-friendly start is free here).
constexpr std::size_t kMappedAllocation = std::size_t{1} << 20;
constexpr std::size_t kAlignment = 64;
constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kHugeBuffer = std::size_t{4} << 20;

class HeapBuffer final : public ArrayBuffer {
 public:
  explicit HeapBuffer(std::size_t bytes)
      : data_(::operator new (std::max<std::size_t>(bytes, 1), std::align_val_t{kAlignment})) {}
  ~HeapBuffer() override { ::operator delete (data_, std::align_val_t{kAlignment}); }
  void* data() const noexcept { return data_; }

 private:
  void* data_;
};

class AnonymousBuffer final : public ArrayBuffer {
 public:
  explicit AnonymousBuffer(std::size_t bytes) : bytes_(bytes) {
    // Large buffers start on a huge-page boundary and ask for transparent huge pages (as numpy
    // does): touching fresh memory costs one fault per 2 MiB instead of per 4 KiB, which on a
    // VM is the difference between about 2 and 8 GB/s for a load.
    const bool huge = bytes >= kHugeBuffer;
    const std::size_t mapped = huge ? bytes + kHugePage : bytes;
    void* start = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (start == MAP_FAILED) {
      throw StorageError("cannot allocate " + std::to_string(bytes) + " bytes for an array: " + std::strerror(errno) +
                         " (is the array's shape what you meant? free memory, or load it with an mmap mode)");
    }
    data_ = start;
    if (huge) {
      const auto address = reinterpret_cast<std::uintptr_t>(start);
      const std::uintptr_t aligned = (address + kHugePage - 1) & ~(kHugePage - 1);
      const std::size_t head = aligned - address;
      if (head > 0) munmap(start, head);
      if (kHugePage - head > 0) munmap(reinterpret_cast<void*>(aligned + bytes), kHugePage - head);
      data_ = reinterpret_cast<void*>(aligned);
      madvise(data_, bytes, MADV_HUGEPAGE);  // best effort: refused where THP is off
    }
  }
  ~AnonymousBuffer() override { munmap(data_, bytes_); }
  void* data() const noexcept { return data_; }

 private:
  std::size_t bytes_;
  void* data_;
};

std::string reference_text(std::string_view reference) {
  std::string shown;
  for (char c : reference.substr(0, 120)) shown += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return shown;
}

[[noreturn]] void no_reader(std::string_view reference) {
  throw cereal::Exception("the bytes refer to an array stored outside them (\"" + reference_text(reference) +
                          "\"), which only the load() or the call that wrote them can resolve");
}

std::string read_reference(SpanInputArchive& ar) {
  std::uint64_t length = 0;
  ar.load_bytes(&length, sizeof length);
  // References are names of datasets or files, never long.
  if (length > 4096 || length > ar.remaining()) {
    throw cereal::Exception("an array reference claims " + std::to_string(length) + " bytes");
  }
  std::string reference(static_cast<std::size_t>(length), '\0');
  ar.load_bytes(reference.data(), reference.size());
  return reference;
}

}  // namespace

std::shared_ptr<ArrayBuffer> allocate_array_buffer(std::size_t bytes, void*& data, bool zero) {
  if (bytes >= kMappedAllocation) {
    auto buffer = std::make_shared<AnonymousBuffer>(bytes);  // zero already
    data = buffer->data();
    return buffer;
  }
  std::shared_ptr<HeapBuffer> buffer;
  try {
    buffer = std::make_shared<HeapBuffer>(bytes);
  } catch (const std::bad_alloc&) {
    throw StorageError("cannot allocate " + std::to_string(bytes) + " bytes for an array");
  }
  data = buffer->data();
  if (zero && bytes != 0) std::memset(data, 0, bytes);
  return buffer;
}

std::size_t checked_array_bytes(std::span<const std::size_t> shape, std::size_t element_size) {
  std::size_t bytes = element_size;
  for (std::size_t extent : shape) {
    if (extent != 0 && bytes > ~std::size_t{0} / extent) {
      throw cereal::Exception("an array of shape " + describe_shape(shape) + " is larger than any memory");
    }
    bytes *= extent;
  }
  return bytes;
}

ArrayHeader load_array_header(SpanInputArchive& ar, DType expected) {
  std::uint8_t header[3] = {};
  ar.load_bytes(header, sizeof header);
  if (header[0] != kInlineArray && header[0] != kReferencedArray) {
    throw cereal::Exception("an array's header is corrupt (storage kind " + std::to_string(header[0]) + ")");
  }
  if (header[1] != static_cast<std::uint8_t>(expected)) {
    throw cereal::Exception("the bytes hold an array of " + std::string(dtype_name(static_cast<DType>(header[1]))) +
                            ", not of " + std::string(dtype_name(expected)));
  }
  if (header[2] > kMaxRank) {
    throw cereal::Exception("an array claims rank " + std::to_string(header[2]) + " (at most 32)");
  }
  ArrayHeader result;
  result.inline_data = header[0] == kInlineArray;
  result.shape.resize(header[2]);
  ar.load_bytes(result.shape.data(), result.shape.size() * sizeof(std::size_t));
  result.nbytes = checked_array_bytes(result.shape, dtype_size(expected));
  if (result.inline_data && result.nbytes > ar.remaining()) {
    throw cereal::Exception("an array of shape " + describe_shape(result.shape) + " needs " +
                            std::to_string(result.nbytes) + " bytes but only " + std::to_string(ar.remaining()) +
                            " are left");
  }
  return result;
}

OpenedArray open_array_reference(SpanInputArchive& ar, DType dtype, const ArrayHeader& header) {
  const std::string reference = read_reference(ar);
  ArrayReader* reader = ar.arrays();
  if (reader == nullptr) no_reader(reference);
  return reader->open(reference, dtype, header.shape, header.nbytes);
}

void read_vector_reference(SpanInputArchive& ar, DType expected, std::size_t element_size,
                           ArrayReader::Destination destination) {
  std::uint8_t dtype = 0;
  std::uint64_t size = 0;
  ar.load_bytes(&dtype, sizeof dtype);
  ar.load_bytes(&size, sizeof size);
  if (dtype != static_cast<std::uint8_t>(expected)) {
    throw cereal::Exception("the bytes hold a vector of " + std::string(dtype_name(static_cast<DType>(dtype))) +
                            ", not of " + std::string(dtype_name(expected)));
  }
  const std::string reference = read_reference(ar);
  ArrayReader* reader = ar.arrays();
  if (reader == nullptr) no_reader(reference);
  const std::size_t shape[1] = {static_cast<std::size_t>(size)};
  const std::size_t nbytes = checked_array_bytes(shape, element_size);
  reader->read(reference, expected, shape, nbytes, destination);
}

std::string describe_shape(std::span<const std::size_t> shape) {
  std::string text = "(";
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (d > 0) text += ", ";
    text += std::to_string(shape[d]);
  }
  if (shape.size() == 1) text += ",";
  return text + ")";
}

void throw_read_only_array(std::string_view mapped_file) {
  throw StorageError("this array is a read-only memory map of " + std::string(mapped_file) +
                     "; load it with MmapMode::copy_on_write (private, writable pages) or write to a copy()");
}

void throw_count_mismatch(std::span<const std::size_t> shape, std::size_t elements) {
  throw std::invalid_argument("NDArray: " + std::to_string(elements) + " elements do not make an array of shape " +
                              describe_shape(shape));
}

void throw_impossible_shape(std::span<const std::size_t> shape) {
  throw std::invalid_argument("NDArray: shape " + describe_shape(shape) +
                              " is not possible (a rank above 32, or more elements than any memory holds)");
}

void throw_array_index_error(std::span<const std::size_t> shape, std::span<const std::size_t> index) {
  throw std::out_of_range("NDArray: index " + describe_shape(index) + " is outside shape " + describe_shape(shape));
}

}  // namespace detail
}  // namespace joblet
