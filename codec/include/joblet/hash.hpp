#pragma once
/// @file
/// Hashing values: XXH3-128 over the codec's own traversal, streamed straight into the hasher
/// (no intermediate buffer, so hashing a 1 GiB vector costs what reading it costs). This is what
/// cache keys are made of (joblib.hash's role).
///
/// @code
///   joblet::Hash128 h = joblet::hash_value(params, std::vector<double>(n));
///   std::string name = h.hex();   // 32 lowercase hex digits
/// @endcode
///
/// Guarantees:
/// - Equal values hash equal, in every process and run on the same platform and compiler ABI:
///   unordered containers are hashed in a canonical (order-independent) form.
/// - Different types with the same bytes hash differently: every value is preceded by its type's
///   identity (the ABI's mangled type name, stable for one compiler ABI, e.g. GCC and Clang on
///   Linux agree).
/// - Values are hashed as they encode: a type is hashable when the codec can encode it (cereal
///   serialize/save functions); std::span of contiguous data is hashable too.

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>

#include "joblet/codec.hpp"

namespace joblet {

/// A 128-bit digest. hex() prints the high half first, like XXH128's canonical form.
struct Hash128 {
  std::uint64_t high = 0;  ///< the high 64 bits
  std::uint64_t low = 0;   ///< the low 64 bits

  /// The digest as 32 lowercase hex digits, high half first (the names of cache entries).
  std::string hex() const;
  /// Writes the 32 digits of hex() at `out` (no terminating NUL): for names built in place.
  void write_hex(char* out) const noexcept;
  /// The digest named by exactly 32 hex digits; nullopt for anything else.
  static std::optional<Hash128> from_hex(std::string_view text);

  /// Orders digests by the high half, then the low one (so that they can key a std::map).
  friend auto operator<=>(const Hash128&, const Hash128&) = default;

  /// cereal serialization: the high half, then the low one.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(high, low);
  }
};

class Hasher;

namespace detail {
/// The codec sink that feeds a Hasher. It is a DigestingSink, so unordered containers reach it
/// in canonical form (see detail/containers.hpp).
class HashSink {
 public:
  using Digest = Hash128;
  explicit HashSink(Hasher& target) noexcept : target_(&target) {}
  void write(const void* data, std::size_t size);
  HashSink fresh() const;
  Hash128 take_digest();

 private:
  explicit HashSink(std::unique_ptr<Hasher> owned);
  std::unique_ptr<Hasher> owned_;
  Hasher* target_;
};
}  // namespace detail

/// A type hash_value() and Hasher::update() accept: one the codec can save (a cereal serialize()
/// or save()). Unlike Encodable it needs no load(), so std::span of contiguous data qualifies.
template <class T>
concept Hashable = cereal::traits::is_output_serializable<T, detail::SinkOutputArchive<detail::HashSink>>::value;

/// Streaming XXH3-128 (seed 0). Copyable: a hasher fed a common prefix can be copied and
/// continued, which is how a cached function avoids rehashing its own identity on every call.
class Hasher {
 public:
  /// A hasher that has been fed nothing.
  Hasher() noexcept;
  /// A hasher in the same state as `other`: fed the same, both give the same digest.
  Hasher(const Hasher& other) noexcept;
  /// Takes the state of `other`, dropping what this one was fed.
  Hasher& operator=(const Hasher& other) noexcept;
  ~Hasher() = default;

  /// Feeds raw bytes, exactly as given.
  Hasher& update_bytes(const void* data, std::size_t size) noexcept;
  /// Feeds the text's length, then its bytes: adjacent texts cannot run into each other.
  Hasher& update_text(std::string_view text) noexcept;
  /// Feeds the identity of T, then the value as the codec encodes it. Throws SerializationError
  /// when cereal refuses the value.
  template <Hashable T>
  Hasher& update(const T& value) {
    update_text(typeid(T).name());
    detail::HashSink sink(*this);
    try {
      detail::SinkOutputArchive<detail::HashSink> archive(sink);
      archive(value);
    } catch (const cereal::Exception& e) {
      throw SerializationError(std::string("cannot hash a value of type ") + detail::demangle(typeid(T).name()) + ": " +
                               e.what());
    }
    return *this;
  }

  /// The digest of everything fed so far. The hasher is unchanged and can be fed more.
  Hash128 digest() const noexcept;
  /// Forgets everything fed: the hasher is as new.
  void reset() noexcept;

 private:
  /// An XXH3_state_t, kept opaque so that xxhash.h stays out of joblet's public headers
  /// (hash.cpp checks that it fits). No allocation per hasher.
  static constexpr std::size_t kStateSize = 640;
  alignas(64) unsigned char state_[kStateSize];
};

/// The hash of one or more values, each with its type's identity.
template <Hashable... T>
Hash128 hash_value(const T&... values) {
  Hasher hasher;
  (hasher.update(values), ...);
  return hasher.digest();
}

/// The XXH3-128 of plain bytes, with nothing added (for checksums).
Hash128 hash_bytes(const void* data, std::size_t size) noexcept;

}  // namespace joblet
