// Hashing: golden values, equality of equal values (unordered containers included), distinct
// hashes for distinct types with the same bytes, and the one-block path for contiguous data.

#include <gtest/gtest.h>
#include <unistd.h>

#include <complex>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "joblet/hash.hpp"
#include "support.hpp"

namespace {

using joblet::Hash128;
using joblet::hash_value;

struct Point {
  double x = 0;
  double y = 0;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(x, y);
  }
};

// Golden values: a change here changes every cache key, so every user's cache goes cold.
// Only change them together with the key domain ("joblet.cache-key.v1") on purpose.
TEST(Hash, GoldenValuesAreStable) {
  EXPECT_EQ(hash_value(std::int32_t{42}).hex(), "cd7e61fe37f3c9f9e645af8030785e1c");
  EXPECT_EQ(hash_value(std::string("joblet")).hex(), "3624cc9095ad7a9dbbf90182fe4052ac");
  EXPECT_EQ(hash_value(std::vector<double>{1.0, 2.0, 3.0}).hex(), "2cc0af2f67ae6061e14346f8146dc480");
  EXPECT_EQ(hash_value(Point{1.5, -2.0}, std::map<std::string, int>{{"a", 1}, {"b", 2}}).hex(),
            "4a7bcf3dd8ebf8e1aeca10b8e82cb616");
  EXPECT_EQ(hash_value(std::unordered_set<int>{3, 1, 2}).hex(), "b60142eac757c37dd209fd659dda4db7");
}

TEST(Hash, SameInAnotherProcess) {
  const Hash128 here = hash_value(Point{3, 4}, std::vector<std::int64_t>{1, 2, 3}, std::string("x"));
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = joblet::testing::fork_child([&] {
    const Hash128 there = hash_value(Point{3, 4}, std::vector<std::int64_t>{1, 2, 3}, std::string("x"));
    const std::string hex = there.hex();
    return write(pipe_fds[1], hex.data(), hex.size()) == 32 ? 0 : 1;
  });
  close(pipe_fds[1]);
  char buffer[32];
  ASSERT_EQ(read(pipe_fds[0], buffer, 32), 32);
  close(pipe_fds[0]);
  EXPECT_EQ(joblet::testing::wait_child(child), 0);
  EXPECT_EQ(std::string(buffer, 32), here.hex());
}

TEST(Hash, EqualValuesHashEqual) {
  EXPECT_EQ(hash_value(std::vector<int>{1, 2, 3}), hash_value(std::vector<int>{1, 2, 3}));
  EXPECT_NE(hash_value(std::vector<int>{1, 2, 3}), hash_value(std::vector<int>{3, 2, 1}));
  EXPECT_EQ(hash_value(Point{1, 2}), hash_value(Point{1, 2}));
  EXPECT_NE(hash_value(Point{1, 2}), hash_value(Point{2, 1}));
}

TEST(Hash, UnorderedContainersAreCanonical) {
  std::unordered_map<std::string, int> forward;
  std::unordered_map<std::string, int> backward(1000);  // another bucket count, another order
  for (int i = 0; i < 200; ++i) forward.emplace("k" + std::to_string(i), i);
  for (int i = 199; i >= 0; --i) backward.emplace("k" + std::to_string(i), i);
  ASSERT_EQ(forward, backward);
  EXPECT_EQ(hash_value(forward), hash_value(backward));
  backward["k7"] = -1;
  EXPECT_NE(hash_value(forward), hash_value(backward));

  std::unordered_set<int> a{1, 2, 3, 4, 5};
  std::unordered_set<int> b(64);
  for (int i = 5; i >= 1; --i) b.insert(i);
  EXPECT_EQ(hash_value(a), hash_value(b));

  // Multisets keep their multiplicities.
  EXPECT_EQ(hash_value(std::unordered_multiset<int>{1, 1, 2}), hash_value(std::unordered_multiset<int>{2, 1, 1}));
  EXPECT_NE(hash_value(std::unordered_multiset<int>{1, 1, 2}), hash_value(std::unordered_multiset<int>{1, 2, 2}));

  // Nested: unordered inside unordered, and inside ordered containers.
  std::unordered_map<int, std::unordered_set<std::string>> nested_a{{1, {"x", "y", "z"}}, {2, {"p"}}};
  std::unordered_map<int, std::unordered_set<std::string>> nested_b(50);
  nested_b[2] = {"p"};
  nested_b[1].rehash(100);
  for (const char* s : {"z", "x", "y"}) nested_b[1].insert(s);
  EXPECT_EQ(hash_value(nested_a), hash_value(nested_b));
  EXPECT_EQ(hash_value(std::vector{a}), hash_value(std::vector{b}));

  // Keys and values are not interchangeable.
  EXPECT_NE(hash_value(std::unordered_map<int, int>{{1, 2}}), hash_value(std::unordered_map<int, int>{{2, 1}}));
}

TEST(Hash, DifferentTypesWithTheSameBytesDiffer) {
  float one = 1.0f;
  std::int32_t same_bits = 0;
  std::memcpy(&same_bits, &one, sizeof one);
  EXPECT_NE(hash_value(one), hash_value(same_bits));
  EXPECT_NE(hash_value(std::vector<float>{one}), hash_value(std::vector<std::int32_t>{same_bits}));
  EXPECT_NE(hash_value(std::string("ab")), hash_value(std::vector<char>{'a', 'b'}));
  EXPECT_NE(hash_value(std::int64_t{7}), hash_value(std::uint64_t{7}));
  EXPECT_NE(hash_value(std::pair<int, int>{1, 2}), hash_value(std::tuple<int, int>{1, 2}));
  // Argument boundaries are part of the hash.
  EXPECT_NE(hash_value(std::string("ab"), std::string("c")), hash_value(std::string("a"), std::string("bc")));
}

TEST(Hash, ComplexNumbersNeedNoExtraInclude) {
  using Z = std::complex<double>;
  EXPECT_EQ(hash_value(Z(1, 2)), hash_value(Z(1, 2)));
  EXPECT_NE(hash_value(Z(1, 2)), hash_value(Z(2, 1)));
  EXPECT_NE(hash_value(Z(1, 2)), hash_value(std::complex<float>(1, 2)));
  EXPECT_NE(hash_value(std::vector<Z>{{1, 2}}), hash_value(std::vector<double>{1, 2}));
  // A vector of them is one block of bytes, in the order cereal writes a complex: real, imaginary.
  const std::vector<Z> values{{1, 2}, {-3, 0.5}};
  const std::string bytes = joblet::encode(values);
  ASSERT_EQ(bytes.size(), 8u + 2 * sizeof(Z));
  double parts[4];
  std::memcpy(parts, bytes.data() + 8, sizeof parts);
  EXPECT_EQ(parts[0], 1);
  EXPECT_EQ(parts[1], 2);
  EXPECT_EQ(parts[3], 0.5);
  EXPECT_EQ(joblet::decode<std::vector<Z>>(bytes), values);
  EXPECT_EQ(joblet::decode<Z>(joblet::encode(Z(4, -5))), Z(4, -5));
}

TEST(Hash, NamedValuesEncodeAsCerealEncodesThem) {
  // Maps with string keys and lists of (name, value) pairs tell a dump file their names; their
  // bytes (and so every cache key) stay cereal's: the count, then each name and value.
  const std::string listed = joblet::encode(std::vector<std::pair<std::string, int>>{{"a", 1}, {"bc", 2}});
  EXPECT_EQ(listed, joblet::encode(std::make_tuple(std::uint64_t{2}, std::string("a"), 1, std::string("bc"), 2)));
  const std::string mapped = joblet::encode(std::map<std::string, int>{{"bc", 2}, {"a", 1}});
  EXPECT_EQ(mapped, listed);
}

TEST(Hash, ContiguousDataIsHashedAsOneBlock) {
  std::vector<double> values(1000);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<double>(i) * 0.5;
  // What the hasher is fed for a vector of doubles: type identity, size, then the raw bytes.
  joblet::Hasher manual;
  manual.update_text(typeid(std::vector<double>).name());
  const std::uint64_t size = values.size();
  manual.update_bytes(&size, sizeof size);
  manual.update_bytes(values.data(), values.size() * sizeof(double));
  EXPECT_EQ(hash_value(values), manual.digest());

  // A span of the same data hashes its bytes the same way (only the type identity differs).
  joblet::Hasher span_manual;
  span_manual.update_text(typeid(std::span<const double>).name());
  span_manual.update_bytes(&size, sizeof size);
  span_manual.update_bytes(values.data(), values.size() * sizeof(double));
  EXPECT_EQ(hash_value(std::span<const double>(values)), span_manual.digest());
}

TEST(Hash, StreamingEqualsOneShot) {
  std::vector<unsigned char> bytes(100'000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 31);
  joblet::Hasher pieces;
  for (std::size_t at = 0; at < bytes.size(); at += 777) {
    pieces.update_bytes(bytes.data() + at, std::min<std::size_t>(777, bytes.size() - at));
  }
  EXPECT_EQ(pieces.digest(), joblet::hash_bytes(bytes.data(), bytes.size()));
  // A copied hasher continues independently.
  joblet::Hasher prefix;
  prefix.update_text("prefix");
  joblet::Hasher copy = prefix;
  copy.update_text("more");
  EXPECT_NE(copy.digest(), prefix.digest());
  prefix.update_text("more");
  EXPECT_EQ(copy.digest(), prefix.digest());
}

TEST(Hash, HexRoundTrips) {
  const Hash128 hash = hash_value(std::string("hex"));
  const std::string hex = hash.hex();
  EXPECT_EQ(hex.size(), 32u);
  EXPECT_EQ(Hash128::from_hex(hex), hash);
  EXPECT_FALSE(Hash128::from_hex(hex.substr(1)));
  EXPECT_FALSE(Hash128::from_hex(hex.substr(0, 31) + "g"));
  EXPECT_EQ((Hash128{0x0123456789abcdefULL, 0xfedcba9876543210ULL}).hex(), "0123456789abcdeffedcba9876543210");
}

TEST(Codec, UnorderedContainersRoundTrip) {
  const std::unordered_map<std::string, std::vector<int>> map{{"a", {1, 2}}, {"b", {}}, {"c", {3}}};
  EXPECT_EQ(joblet::decode<std::remove_const_t<decltype(map)>>(joblet::encode(map)), map);
  const std::unordered_set<std::int64_t> set{5, 7, 11};
  EXPECT_EQ(joblet::decode<std::remove_const_t<decltype(set)>>(joblet::encode(set)), set);
  const std::unordered_multimap<int, int> multimap{{1, 1}, {1, 2}, {2, 3}};
  EXPECT_EQ(joblet::decode<std::remove_const_t<decltype(multimap)>>(joblet::encode(multimap)), multimap);
}

TEST(Codec, NumbersAreTheirBytesAndRefuseAnyOtherLength) {
  // A number skips the archive (the per-task path between processes): the bytes must still be
  // exactly those of the archive, and a wrong length still an error.
  const std::int64_t number = -123456789012345;
  const std::string bytes = joblet::encode(number);
  ASSERT_EQ(bytes.size(), sizeof number);
  EXPECT_EQ(bytes, joblet::encode(std::tuple<std::int64_t>(number)));
  EXPECT_EQ(joblet::decode<std::int64_t>(bytes), number);
  EXPECT_EQ(joblet::decode<double>(joblet::encode(0.25)), 0.25);
  EXPECT_THROW(joblet::decode<std::int64_t>(bytes.substr(0, 7)), joblet::SerializationError);
  EXPECT_THROW(joblet::decode<std::int64_t>(bytes + "x"), joblet::SerializationError);
  EXPECT_THROW(joblet::decode<std::int32_t>(std::string_view()), joblet::SerializationError);
}

}  // namespace
