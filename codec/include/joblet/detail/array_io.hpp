#pragma once
// How the codec lets arrays live outside the encoded bytes.
//
// Arrays (NDArray, and std::vector of an Element type) normally encode inline: a header, then
// their bytes as one block. When the archive carries an ArrayWriter, arrays at least as large
// as its threshold are handed to it instead. It puts them somewhere else (a dataset of a dump
// file, a file in a call's result folder) and the encoding carries a short reference. The
// ArrayReader given to the decode of exactly those bytes turns each reference back into an
// array: mapped from the file, or read into memory.
//
// References are honoured only by a decode given a reader: bytes decoded without one that
// claim a reference fail to decode, so a hostile cache entry cannot make a reader open a file.
//
// The encodings (all integers little-endian):
//   NDArray:      u8 kind (0 inline, 1 reference), u8 dtype, u8 rank, u64 extent × rank, then
//                 kind 0: the elements in C order; kind 1: u64 length + the reference's bytes.
//   std::vector:  exactly cereal's (u64 size + the elements), or, for a reference,
//                 u64 kArrayReferenceMarker, u8 dtype, u64 size, u64 length + the reference.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "joblet/detail/archive.hpp"
#include "joblet/dtype.hpp"

namespace joblet::detail {

static_assert(sizeof(std::size_t) == 8, "joblet's array encodings assume a 64-bit platform");

inline constexpr std::size_t kMaxRank = 32;  // numpy's and HDF5's limit
// A vector's size field saying "a reference follows": no vector can have that many elements.
inline constexpr std::uint64_t kArrayReferenceMarker = ~std::uint64_t{0};
inline constexpr std::uint8_t kInlineArray = 0;
inline constexpr std::uint8_t kReferencedArray = 1;

// What keeps an array's elements alive: memory it owns, an adopted std::vector, or a mapping
// of a file. Shared by every view of the array.
class ArrayBuffer {
 public:
  virtual ~ArrayBuffer() = default;
  // The file the elements are mapped from; empty for memory.
  virtual std::string_view mapped_file() const noexcept { return {}; }
};

// Aligned (64 bytes) memory for `bytes` bytes, zeroed when asked; large buffers come straight
// from the kernel (mmap), so their pages cost nothing until touched and go back when freed.
// Throws StorageError when the memory cannot be had.
std::shared_ptr<ArrayBuffer> allocate_array_buffer(std::size_t bytes, void*& data, bool zero);

// An array as the codec hands it to a writer.
struct ArrayBlock {
  DType dtype{};
  std::span<const std::size_t> shape{};
  const void* data = nullptr;
  std::size_t nbytes = 0;
};

// An array a reader found for a reference.
struct OpenedArray {
  std::shared_ptr<const ArrayBuffer> buffer;
  void* data = nullptr;
  bool writable = false;
};

class ArrayWriter {
 public:
  // Takes the arrays of at least `threshold` bytes.
  explicit ArrayWriter(std::size_t threshold) noexcept : threshold_(threshold) {}
  virtual ~ArrayWriter() = default;
  ArrayWriter(const ArrayWriter&) = delete;
  ArrayWriter& operator=(const ArrayWriter&) = delete;

  // Stores the array elsewhere and returns the reference to encode in its place; nullopt
  // encodes it inline after all (the writer could not store it, and said why in the log).
  virtual std::optional<std::string> store(const ArrayBlock& block) = 0;

  // The names a value gives its parts (the keys of a std::map<std::string, V>), for writers
  // that show them (a dump file's named datasets): the arrays stored between enter_name(key)
  // and leave_name() are part of `key`; a number or a string under a key is told as it is.
  virtual void enter_name(std::string_view /*key*/) {}
  virtual void leave_name() {}
  virtual void name_number(std::string_view /*key*/, DType /*dtype*/, const void* /*value*/) {}
  virtual void name_text(std::string_view /*key*/, std::string_view /*text*/) {}

  std::size_t threshold() const noexcept { return threshold_; }

 private:
  std::size_t threshold_;
};

class ArrayReader {
 public:
  ArrayReader() = default;
  virtual ~ArrayReader() = default;
  ArrayReader(const ArrayReader&) = delete;
  ArrayReader& operator=(const ArrayReader&) = delete;

  // The array a reference names, checked against the dtype and shape its encoding claims.
  // Throws StorageError (the file is gone, does not match) or SerializationError.
  virtual OpenedArray open(std::string_view reference, DType dtype, std::span<const std::size_t> shape,
                           std::size_t nbytes) = 0;
  // Reads the array a reference names into memory from `destination` (for std::vector),
  // called only once the reference was checked, so a corrupt one allocates nothing.
  struct Destination {
    void* (*allocate)(void* context, std::size_t count);
    void* context;
  };
  virtual void read(std::string_view reference, DType dtype, std::span<const std::size_t> shape, std::size_t nbytes,
                    Destination destination) = 0;
};

// The archive's writer when it takes an array of `nbytes`; null when the array encodes inline.
template <class Sink>
ArrayWriter* writer_taking(const SinkOutputArchive<Sink>& ar, std::size_t nbytes) noexcept {
  ArrayWriter* writer = ar.arrays();
  return writer != nullptr && nbytes >= writer->threshold() ? writer : nullptr;
}

// The element count of `shape`, and its bytes with elements of `element_size`; throws
// cereal::Exception on overflow.
std::size_t checked_array_bytes(std::span<const std::size_t> shape, std::size_t element_size);

// "(2, 3)", as numpy prints shapes.
std::string describe_shape(std::span<const std::size_t> shape);

// --- encoding ------------------------------------------------------------------------------

template <class Sink>
void save_reference(SinkOutputArchive<Sink>& ar, const std::string& reference) {
  const std::uint64_t length = reference.size();
  ar.save_bytes(&length, sizeof length);
  ar.save_bytes(reference.data(), reference.size());
}

template <class Sink>
void save_array(SinkOutputArchive<Sink>& ar, DType dtype, std::span<const std::size_t> shape, const void* data,
                std::size_t nbytes) {
  std::uint8_t header[3] = {kInlineArray, static_cast<std::uint8_t>(dtype), static_cast<std::uint8_t>(shape.size())};
  if constexpr (std::is_same_v<Sink, StringSink>) {
    if (ArrayWriter* writer = writer_taking(ar, nbytes)) {
      if (auto reference = writer->store({dtype, shape, data, nbytes})) {
        header[0] = kReferencedArray;
        ar.save_bytes(header, sizeof header);
        ar.save_bytes(shape.data(), shape.size_bytes());
        save_reference(ar, *reference);
        return;
      }
    }
  }
  ar.save_bytes(header, sizeof header);
  ar.save_bytes(shape.data(), shape.size_bytes());
  ar.save_bytes(data, nbytes);
}

// The header of an NDArray's encoding, checked against the element type asked for. nbytes is
// checked against the bytes left for inline arrays, so the caller may allocate it.
struct ArrayHeader {
  bool inline_data = true;
  std::vector<std::size_t> shape;
  std::size_t nbytes = 0;
};
ArrayHeader load_array_header(SpanInputArchive& ar, DType expected);
// For a referenced array (after its header): reads the reference and asks the archive's reader.
OpenedArray open_array_reference(SpanInputArchive& ar, DType dtype, const ArrayHeader& header);
// For a referenced vector (after the marker): reads it into memory from `destination`.
void read_vector_reference(SpanInputArchive& ar, DType expected, std::size_t element_size,
                           ArrayReader::Destination destination);

// std::vector of an Element type (bool excepted: std::vector<bool> packs its bits) encodes as
// cereal encodes it, so hashes and stored bytes stay the same; only an active writer changes it.
// Declared for joblet's archives only, which makes these more specialised than cereal's own
// vector functions, so overload resolution picks them (as detail/containers.hpp explains).
template <class Sink, Element T, class A>
requires(!std::is_same_v<T, bool>) void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar,
                                                                  const std::vector<T, A>& vector) {
  const std::size_t nbytes = vector.size() * sizeof(T);
  if constexpr (std::is_same_v<Sink, StringSink>) {
    if (ArrayWriter* writer = writer_taking(ar, nbytes)) {
      const std::size_t shape[1] = {vector.size()};
      if (auto reference = writer->store({dtype_of<T>, shape, vector.data(), nbytes})) {
        const std::uint64_t marker = kArrayReferenceMarker;
        const auto dtype = static_cast<std::uint8_t>(dtype_of<T>);
        const std::uint64_t size = vector.size();
        ar.save_bytes(&marker, sizeof marker);
        ar.save_bytes(&dtype, sizeof dtype);
        ar.save_bytes(&size, sizeof size);
        save_reference(ar, *reference);
        return;
      }
    }
  }
  const std::uint64_t size = vector.size();
  ar.save_bytes(&size, sizeof size);
  ar.save_bytes(vector.data(), nbytes);
}

template <Element T, class A>
requires(!std::is_same_v<T, bool>) void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, std::vector<T, A>& vector) {
  std::uint64_t size = 0;
  ar.load_bytes(&size, sizeof size);
  if (size == kArrayReferenceMarker) {
    const auto allocate = [](void* target, std::size_t count) -> void* {
      auto& v = *static_cast<std::vector<T, A>*>(target);
      v.resize(count);
      return v.data();
    };
    read_vector_reference(ar, dtype_of<T>, sizeof(T), {allocate, &vector});
    return;
  }
  // Every element takes sizeof(T) bytes, so a size above what is left is corrupt.
  if (size > ar.remaining() / sizeof(T)) {
    throw cereal::Exception("a vector claims " + std::to_string(size) + " elements of " + std::to_string(sizeof(T)) +
                            " bytes but only " + std::to_string(ar.remaining()) + " bytes are left");
  }
  vector.resize(static_cast<std::size_t>(size));
  ar.load_bytes(vector.data(), static_cast<std::size_t>(size) * sizeof(T));
}

}  // namespace joblet::detail
