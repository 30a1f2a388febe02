#pragma once
/// @file
/// The one codec: every value that crosses a process boundary or lands on disk is encoded
/// here, with cereal's serialization functions over joblet's binary archives. A type is
/// encodable when cereal can serialize it: arithmetic types, the standard containers whose
/// cereal/types/*.hpp header is included, and classes with a serialize()/save()/load() member
/// or free function. Byte order is the machine's (every HPC platform we target is little-endian).

#include <cereal/types/array.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <array>
#include <complex>
#include <cstddef>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "joblet/detail/archive.hpp"
#include "joblet/detail/array_io.hpp"
#include "joblet/detail/containers.hpp"
#include "joblet/error.hpp"

namespace cereal {
/// Encodes std::monostate, the codec's "no value" (a task returning void, an empty alternative),
/// as nothing.
template <class Archive>
void serialize(Archive&, std::monostate&) {}
}  // namespace cereal

namespace joblet {

namespace detail {

template <class T>
concept HasSerialization = cereal::traits::is_output_serializable<T, SinkOutputArchive<StringSink>>::value &&
    cereal::traits::is_input_serializable<T, SpanInputArchive>::value;

/// cereal declares the functions of a standard container for any element type, so its traits
/// accept std::vector<Particle> whatever Particle is, and the static_assert that says otherwise
/// fires only deep inside an instantiation. The codec looks inside the containers it knows, so
/// that a result type is encodable exactly when all of it is.
template <class T>
struct EncodableParts : std::true_type {};
template <class T>
inline constexpr bool kEncodable = HasSerialization<T>&& EncodableParts<T>::value;

template <class T, class A>
struct EncodableParts<std::vector<T, A>> : std::bool_constant<kEncodable<T>> {};
template <class T, std::size_t N>
struct EncodableParts<std::array<T, N>> : std::bool_constant<kEncodable<T>> {};
template <class T>
struct EncodableParts<std::optional<T>> : std::bool_constant<kEncodable<T>> {};
template <class K, class V>
struct EncodableParts<std::pair<K, V>> : std::bool_constant<kEncodable<K> && kEncodable<V>> {};
template <class... T>
struct EncodableParts<std::tuple<T...>> : std::bool_constant<(kEncodable<T> && ...)> {};
template <class... T>
struct EncodableParts<std::variant<T...>> : std::bool_constant<(kEncodable<T> && ...)> {};
template <class K, class V, class C, class A>
struct EncodableParts<std::map<K, V, C, A>> : std::bool_constant<kEncodable<K> && kEncodable<V>> {};
template <class K, class V, class C, class A>
struct EncodableParts<std::multimap<K, V, C, A>> : std::bool_constant<kEncodable<K> && kEncodable<V>> {};
template <class K, class V, class H, class E, class A>
struct EncodableParts<std::unordered_map<K, V, H, E, A>> : std::bool_constant<kEncodable<K> && kEncodable<V>> {};
template <class K, class V, class H, class E, class A>
struct EncodableParts<std::unordered_multimap<K, V, H, E, A>> : std::bool_constant<kEncodable<K> && kEncodable<V>> {};
template <class T, class A>
struct EncodableParts<std::deque<T, A>> : std::bool_constant<kEncodable<T>> {};
template <class T, class A>
struct EncodableParts<std::list<T, A>> : std::bool_constant<kEncodable<T>> {};
template <class K, class C, class A>
struct EncodableParts<std::set<K, C, A>> : std::bool_constant<kEncodable<K>> {};
template <class K, class C, class A>
struct EncodableParts<std::multiset<K, C, A>> : std::bool_constant<kEncodable<K>> {};
template <class K, class H, class E, class A>
struct EncodableParts<std::unordered_set<K, H, E, A>> : std::bool_constant<kEncodable<K>> {};
template <class K, class H, class E, class A>
struct EncodableParts<std::unordered_multiset<K, H, E, A>> : std::bool_constant<kEncodable<K>> {};

}  // namespace detail

/// A type the codec can encode and decode, all of it: arithmetic types, std::complex, strings,
/// the standard containers of encodable elements (vector, array, map, multimap, the unordered
/// maps and sets, optional, pair, tuple and variant here; deque, list, set and others once their
/// cereal/types header is included), and classes with a cereal serialize() (or save() and
/// load()), whose members cereal checks when they are encoded.
template <class T>
concept Encodable = detail::kEncodable<T>;

namespace detail {
/// Stops the build of a dump(), load() or cached result of a type that is not encodable, with
/// the fix; the compiler shows the type (T = ...) and the caller's line below the message.
template <class T>
consteval void require_encodable() {
  static_assert(Encodable<T>,
                "this type cannot be encoded (T = ... below): give the class a cereal serialize() member or "
                "free function (or save() and load()), and every class it holds too, or hold the values in "
                "standard types the codec knows (std::vector, array, map, unordered_map, optional, pair, "
                "tuple, variant, string, complex); Parallel on backend \"threads\" needs none of this");
}
}  // namespace detail

namespace detail {

/// encode() with an array context: `arrays` takes the large arrays of this one value; null keeps
/// every array inline.
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

/// decode() with an array context: `arrays` resolves the arrays the bytes refer to; null refuses
/// references (a SerializationError).
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

/// Appends the encoding of `value` to `out`. Throws SerializationError when cereal refuses it.
template <Encodable T>
void encode(const T& value, std::string& out) {
  detail::encode_into(value, out, nullptr);
}

/// The encoding of `value`, as a new string. Throws SerializationError when cereal refuses it.
template <Encodable T>
std::string encode(const T& value) {
  std::string out;
  encode(value, out);
  return out;
}

/// Decodes a T from exactly `bytes`. Throws SerializationError when the bytes are truncated,
/// carry trailing garbage, or describe more elements than they can hold.
template <Encodable T>
T decode(std::span<const std::byte> bytes) {
  return detail::decode_from<T>(bytes, nullptr);
}

/// Decodes a T from exactly the characters of `bytes`, as decode() of a byte span does.
template <Encodable T>
T decode(std::string_view bytes) {
  return decode<T>(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

}  // namespace joblet
