#pragma once
// cereal archives over joblet's own sinks and sources. One traversal serves every use:
// encoding into a buffer, and (with a hashing sink) computing a cache key without an
// intermediate copy. Contiguous arithmetic data (vectors, arrays) goes through BinaryData
// as one block — no per-element work.
//
// An archive may carry an array context (as cereal's UserDataAdapter carries user data): the
// writer that puts large arrays outside the encoded bytes, or the reader that resolves the
// references it left (detail/array_io.hpp). Every save and load function reaches the context
// through the archive it is given, so nested and concurrent encodings never see each other's.

#include <cereal/cereal.hpp>

#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

namespace joblet::detail {

class ArrayWriter;
class ArrayReader;

// A sink receives the encoded bytes: void write(const void* data, std::size_t size).
struct StringSink {
  std::string* out;
  void write(const void* data, std::size_t size) { out->append(static_cast<const char*>(data), size); }
};

template <class Sink>
class SinkOutputArchive : public cereal::OutputArchive<SinkOutputArchive<Sink>, cereal::AllowEmptyClassElision> {
 public:
  explicit SinkOutputArchive(Sink& sink, ArrayWriter* arrays = nullptr)
      : cereal::OutputArchive<SinkOutputArchive<Sink>, cereal::AllowEmptyClassElision>(this),
        sink_(sink),
        arrays_(arrays) {}
  void save_bytes(const void* data, std::size_t size) { sink_.write(data, size); }
  // Lets a container's save function tell the sink what it is about to write (hashers use it
  // to keep unordered containers order-independent).
  Sink& sink() noexcept { return sink_; }
  // Where large arrays go instead of the bytes; null: every array encodes inline.
  ArrayWriter* arrays() const noexcept { return arrays_; }

 private:
  Sink& sink_;
  ArrayWriter* arrays_;
};

// Decodes from a byte span and refuses to go past its end. Container sizes read from the
// bytes are checked against what is left before anything is allocated, so corrupt or hostile
// input yields an error instead of a giant allocation.
class SpanInputArchive : public cereal::InputArchive<SpanInputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit SpanInputArchive(std::span<const std::byte> bytes, ArrayReader* arrays = nullptr)
      : cereal::InputArchive<SpanInputArchive, cereal::AllowEmptyClassElision>(this), bytes_(bytes), arrays_(arrays) {}

  void load_bytes(void* data, std::size_t size) {
    const std::span<const std::byte> taken = take(size);
    // An empty vector's data() may be null, and memcpy with a null pointer is undefined even
    // for zero bytes (found by the entry reader's fuzzer).
    if (size != 0) std::memcpy(data, taken.data(), size);
  }
  // The next `size` bytes, in place, and past them: for a reader that parses a field itself, or
  // skips it, without copying it first.
  std::span<const std::byte> take(std::size_t size) {
    if (size > bytes_.size() - position_) {
      throw cereal::Exception("input ends after " + std::to_string(bytes_.size()) + " bytes; " + std::to_string(size) +
                              " more were expected at offset " + std::to_string(position_));
    }
    const std::span<const std::byte> taken = bytes_.subspan(position_, size);
    position_ += size;
    return taken;
  }
  // Every element takes at least one byte, so a count above the bytes left is corrupt.
  void check_count(std::uint64_t count) const {
    if (count > bytes_.size() - position_) {
      throw cereal::Exception("a container claims " + std::to_string(count) + " elements but only " +
                              std::to_string(bytes_.size() - position_) + " bytes are left");
    }
  }
  std::size_t remaining() const noexcept { return bytes_.size() - position_; }
  // What resolves array references in these bytes; null: references are refused, so bytes
  // from anywhere else cannot make a decode open a file.
  ArrayReader* arrays() const noexcept { return arrays_; }

 private:
  std::span<const std::byte> bytes_;
  std::size_t position_ = 0;
  ArrayReader* arrays_;
};

// --- the primitive save/load functions cereal dispatches to ---------------------------------

template <class Sink, class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const T& value) {
  ar.save_bytes(std::addressof(value), sizeof(T));
}
template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, T& value) {
  ar.load_bytes(std::addressof(value), sizeof(T));
}

template <class Sink, class T>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const cereal::BinaryData<T>& data) {
  ar.save_bytes(data.data, static_cast<std::size_t>(data.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, cereal::BinaryData<T>& data) {
  ar.load_bytes(data.data, static_cast<std::size_t>(data.size));
}

// Names are for text archives; binary ones write only the value.
template <class Sink, class T>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const cereal::NameValuePair<T>& pair) {
  ar(pair.value);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, cereal::NameValuePair<T>& pair) {
  ar(pair.value);
}

// Sizes travel as fixed 64-bit integers whatever the platform's size_type.
template <class Sink, class T>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const cereal::SizeTag<T>& tag) {
  const auto size = static_cast<std::uint64_t>(tag.size);
  ar.save_bytes(&size, sizeof size);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, cereal::SizeTag<T>& tag) {
  std::uint64_t size = 0;
  ar.load_bytes(&size, sizeof size);
  ar.check_count(size);
  tag.size = static_cast<std::remove_reference_t<T>>(size);
}

}  // namespace joblet::detail

namespace cereal::traits::detail {
template <>
struct get_output_from_input<joblet::detail::SpanInputArchive> {
  using type = joblet::detail::SinkOutputArchive<joblet::detail::StringSink>;
};
template <class Sink>
struct get_input_from_output<joblet::detail::SinkOutputArchive<Sink>> {
  using type = joblet::detail::SpanInputArchive;
};
}  // namespace cereal::traits::detail
