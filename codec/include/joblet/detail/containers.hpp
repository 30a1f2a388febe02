#pragma once
// The codec's unordered containers and spans.
//
// Unordered containers iterate in an order that depends on their insertion history and bucket
// count, so two equal containers can encode to different bytes. For storage that is harmless
// (decoding gives an equal container), but a cache key must not depend on it. A sink that hashes
// (one that models DigestingSink) therefore receives an unordered container as its size followed
// by the sorted digests of its elements, each element hashed on its own: equal containers give
// equal bytes, whatever their order. Every other sink gets the iteration-order encoding that
// cereal's own load functions decode.
//
// Why our own save functions rather than cereal's headers: cereal declares a save for these
// containers for any archive (cereal/types/unordered_*.hpp, and the pair-associative one that
// map.hpp brings in, which matches std::unordered_map too). Ours are declared for
// SinkOutputArchive only, so overload resolution prefers them and cereal still sees exactly
// one save per type (two equally good ones would fail its static_assert). They live in
// joblet::detail so that argument-dependent lookup on the archive finds them from inside cereal.
//
// std::span can be saved (hashed, or encoded as the bytes of the equal std::vector) but not
// loaded: it owns nothing to load into.

#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "joblet/detail/archive.hpp"
#include "joblet/detail/array_io.hpp"

namespace joblet::detail {

// A sink that digests what it receives instead of keeping it.
//   fresh():       an independent sink of the same kind, for one element at a time;
//   take_digest(): the digest of what was written since the last call, and a restart.
template <class Sink>
concept DigestingSink = requires(Sink& sink, const Sink& const_sink) {
  typename Sink::Digest;
  { const_sink.fresh() } -> std::same_as<Sink>;
  { sink.take_digest() } -> std::same_as<typename Sink::Digest>;
}
&&std::is_trivially_copyable_v<typename Sink::Digest>&& std::totally_ordered<typename Sink::Digest>;

template <class Sink, class Container, class WriteElement>
void save_unordered(SinkOutputArchive<Sink>& ar, const Container& container, WriteElement write_element) {
  ar(cereal::make_size_tag(static_cast<cereal::size_type>(container.size())));
  if constexpr (DigestingSink<Sink>) {
    using Digest = typename Sink::Digest;
    std::vector<Digest> digests;
    digests.reserve(container.size());
    Sink element_sink = ar.sink().fresh();
    for (const auto& element : container) {
      SinkOutputArchive<Sink> element_archive(element_sink);
      write_element(element_archive, element);
      digests.push_back(element_sink.take_digest());
    }
    // Sorting the digests (not the elements) needs no operator< on the element type and keeps
    // duplicates of a multiset/multimap, so equal multisets give equal bytes.
    std::sort(digests.begin(), digests.end());
    ar.save_bytes(digests.data(), digests.size() * sizeof(Digest));
  } else {
    for (const auto& element : container) write_element(ar, element);
  }
}

// Keys and values as cereal's map load expects them: key, then value.
struct WriteMapItem {
  template <class Archive, class Item>
  void operator()(Archive& ar, const Item& item) const {
    ar(cereal::make_map_item(item.first, item.second));
  }
};
struct WriteSetItem {
  template <class Archive, class Item>
  void operator()(Archive& ar, const Item& item) const {
    ar(item);
  }
};

template <class Sink, class K, class V, class H, class E, class A>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const std::unordered_map<K, V, H, E, A>& map) {
  save_unordered(ar, map, WriteMapItem{});
}
template <class Sink, class K, class V, class H, class E, class A>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const std::unordered_multimap<K, V, H, E, A>& map) {
  save_unordered(ar, map, WriteMapItem{});
}
template <class Sink, class K, class H, class E, class A>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const std::unordered_set<K, H, E, A>& set) {
  save_unordered(ar, set, WriteSetItem{});
}
template <class Sink, class K, class H, class E, class A>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const std::unordered_multiset<K, H, E, A>& set) {
  save_unordered(ar, set, WriteSetItem{});
}

// A map with string keys, and a list of (name, value) pairs, tell an archive's array writer the
// name of each value (a dump file's named datasets); the bytes are cereal's own, so keys and
// hashes do not change.
template <class Sink, class Items, class WriteItem>
void save_named(SinkOutputArchive<Sink>& ar, const Items& items, WriteItem write_item) {
  ar(cereal::make_size_tag(static_cast<cereal::size_type>(items.size())));
  ArrayWriter* names = nullptr;
  if constexpr (std::is_same_v<Sink, StringSink>) names = ar.arrays();
  for (const auto& item : items) {
    if (names == nullptr) {
      write_item(ar, item);
      continue;
    }
    using V = std::remove_cvref_t<decltype(item.second)>;
    if constexpr (std::is_same_v<V, std::string>) {
      names->name_text(item.first, item.second);
    } else if constexpr (Element<V>) {
      names->name_number(item.first, dtype_of<V>, &item.second);
    }
    names->enter_name(item.first);
    write_item(ar, item);
    names->leave_name();
  }
}

struct WritePair {
  template <class Archive, class Item>
  void operator()(Archive& ar, const Item& item) const {
    ar(item);
  }
};

template <class Sink, class V, class C, class A>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const std::map<std::string, V, C, A>& map) {
  save_named(ar, map, WriteMapItem{});
}

template <class Sink, class V, class A>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const std::vector<std::pair<std::string, V>, A>& pairs) {
  save_named(ar, pairs, WritePair{});
}

// A span encodes exactly like the std::vector holding the same elements: contiguous arithmetic
// data goes to the sink as one block.
template <class Sink, class T, std::size_t Extent>
void CEREAL_SAVE_FUNCTION_NAME(SinkOutputArchive<Sink>& ar, const std::span<T, Extent>& span) {
  ar(cereal::make_size_tag(static_cast<cereal::size_type>(span.size())));
  if constexpr (std::is_arithmetic_v<std::remove_cv_t<T>> && !std::is_same_v<std::remove_cv_t<T>, bool>) {
    ar.save_bytes(span.data(), span.size_bytes());
  } else {
    for (const auto& element : span) ar(element);
  }
}

}  // namespace joblet::detail
