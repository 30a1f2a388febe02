#pragma once
// The one codec: every value that crosses a process boundary or lands on disk is encoded
// here, with cereal's serialization functions over joblet's binary archives. A type is
// encodable when cereal can serialize it: arithmetic types, the standard containers whose
// cereal/types/*.hpp header is included, and classes with a serialize()/save()/load() member
// or free function. Byte order is the machine's (every HPC platform we target is little-endian).

#include <cereal/types/array.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "joblet/detail/archive.hpp"
#include "joblet/detail/array_io.hpp"
#include "joblet/detail/containers.hpp"
#include "joblet/error.hpp"

namespace cereal {
// The codec's representation of "no value": a task returning void, an empty alternative.
template <class Archive>
void serialize(Archive&, std::monostate&) {}
}  // namespace cereal

namespace joblet {

template <class T>
concept Encodable = cereal::traits::is_output_serializable<T, detail::SinkOutputArchive<detail::StringSink>>::value &&
    cereal::traits::is_input_serializable<T, detail::SpanInputArchive>::value;

namespace detail {

// encode() and decode() with an array context: `arrays` takes (or resolves) the large arrays
// of this one value; null keeps every array inline (and refuses references).
template <Encodable T>
void encode_into(const T& value, std::string& out, ArrayWriter* arrays) {
  if constexpr (std::is_arithmetic_v<T>) {
    // The bytes cereal would write, without making an archive (its bookkeeping costs more than
    // a number's encoding: this is the per-task cost of tiny results between processes).
    out.append(reinterpret_cast<const char*>(std::addressof(value)), sizeof(T));
  } else {
    StringSink sink{&out};
    try {
      SinkOutputArchive<StringSink> archive(sink, arrays);
      archive(value);
    } catch (const cereal::Exception& e) {
      throw SerializationError(std::string("cannot encode a value: ") + e.what());
    }
  }
}

template <Encodable T>
T decode_from(std::span<const std::byte> bytes, ArrayReader* arrays) {
  T value{};
  if constexpr (std::is_arithmetic_v<T>) {
    if (bytes.size() == sizeof(T)) {
      std::memcpy(&value, bytes.data(), sizeof(T));
      return value;
    }
  }
  std::size_t left = 0;
  try {
    SpanInputArchive archive(bytes, arrays);
    archive(value);
    left = archive.remaining();
  } catch (const cereal::Exception& e) {
    throw SerializationError(std::string("cannot decode a value: ") + e.what());
  } catch (const std::length_error& e) {
    throw SerializationError(std::string("cannot decode a value: ") + e.what());
  }
  if (left != 0) {
    throw SerializationError("cannot decode a value: " + std::to_string(left) +
                             " bytes are left over, so the bytes do not hold this type");
  }
  return value;
}

}  // namespace detail

// Appends the encoding of `value` to `out`.
template <Encodable T>
void encode(const T& value, std::string& out) {
  detail::encode_into(value, out, nullptr);
}

template <Encodable T>
std::string encode(const T& value) {
  std::string out;
  encode(value, out);
  return out;
}

// Decodes a T from exactly `bytes`. Throws SerializationError when the bytes are truncated,
// carry trailing garbage, or describe more elements than they can hold.
template <Encodable T>
T decode(std::span<const std::byte> bytes) {
  return detail::decode_from<T>(bytes, nullptr);
}

template <Encodable T>
T decode(std::string_view bytes) {
  return decode<T>(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

}  // namespace joblet
