// NDArray: shape, views, writability, and the codec (zero-copy encoding, one-pass hashing,
// std::vector bytes unchanged).

#include <gtest/gtest.h>

#include <cereal/archives/binary.hpp>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "joblet/hash.hpp"
#include "joblet/ndarray.hpp"

namespace {

using joblet::NDArray;

TEST(NDArray, ShapeStridesAndZeros) {
  NDArray<double> a({2, 3, 4});
  EXPECT_EQ(a.rank(), 3u);
  EXPECT_EQ(a.size(), 24u);
  EXPECT_EQ(a.nbytes(), 24u * sizeof(double));
  EXPECT_EQ(a.stride(0), 12u);
  EXPECT_EQ(a.stride(1), 4u);
  EXPECT_EQ(a.stride(2), 1u);
  EXPECT_TRUE(std::all_of(a.begin(), a.end(), [](double x) { return x == 0; }));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()) % 64, 0u);  // aligned for SIMD
  NDArray<int> scalar(NDArray<int>::Shape{});  // rank 0 (plain {} would also name the default array)
  EXPECT_EQ(scalar.rank(), 0u);
  EXPECT_EQ(scalar.size(), 1u);
  NDArray<float> empty;
  EXPECT_EQ(empty.shape(), std::vector<std::size_t>{0});
  EXPECT_TRUE(empty.empty());
}

TEST(NDArray, ElementAccessIsCOrder) {
  NDArray<int> a({2, 3});
  std::iota(a.mutable_span().begin(), a.mutable_span().end(), 0);
  EXPECT_EQ(a(1, 2), 5);
  EXPECT_EQ(a.at(0, 1), 1);
  a.mutable_at(1, 0) = 42;
  EXPECT_EQ(a.data()[3], 42);
  EXPECT_THROW((void)a.at(2, 0), std::out_of_range);
  EXPECT_THROW((void)a.at(0), std::out_of_range);  // one index for two axes
  EXPECT_THROW(a.mutable_at(0, 3), std::out_of_range);
}

TEST(NDArray, AdoptsAVectorWithoutCopying) {
  std::vector<double> values(6, 1.5);
  const double* storage = values.data();
  auto a = NDArray<double>::from(std::move(values), {3, 2});
  EXPECT_EQ(a.data(), storage);
  EXPECT_EQ(a.shape(), (std::vector<std::size_t>{3, 2}));
  EXPECT_THROW(NDArray<double>::from(std::vector<double>(5), {3, 2}), std::invalid_argument);
  // A shape of std::size_t elements cannot be mistaken for values.
  auto sizes = NDArray<std::size_t>::from({1, 2, 3});
  EXPECT_EQ(sizes.shape(), std::vector<std::size_t>{3});
  EXPECT_EQ(NDArray<std::size_t>({3}).size(), 3u);
}

TEST(NDArray, ViewsShareElementsAndCopiesDoNot) {
  auto a = NDArray<int>::from(std::vector<int>{0, 1, 2, 3, 4, 5}, {3, 2});
  NDArray<int> rows = a.slice(1, 3);
  EXPECT_EQ(rows.shape(), (std::vector<std::size_t>{2, 2}));
  EXPECT_EQ(rows(0, 0), 2);
  rows.mutable_at(0, 0) = 20;
  EXPECT_EQ(a(1, 0), 20);  // a view
  NDArray<int> flat = a.reshape({6});
  EXPECT_EQ(flat(2), 20);
  NDArray<int> copy = a.copy();
  copy.mutable_at(0, 0) = -1;
  EXPECT_EQ(a(0, 0), 0);
  EXPECT_THROW(a.reshape({4}), std::invalid_argument);
  EXPECT_THROW(a.slice(2, 4), std::out_of_range);
  EXPECT_EQ(a.to_vector(), (std::vector<int>{0, 1, 20, 3, 4, 5}));
}

TEST(NDArray, EqualityComparesShapeAndElements) {
  const auto a = NDArray<int>::from({1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(a, a.copy());
  EXPECT_NE(a, a.reshape({4}));
  EXPECT_NE(a, NDArray<int>::from({1, 2, 3, 5}, {2, 2}));
}

TEST(NDArray, ImpossibleShapesAreRefused) {
  EXPECT_THROW(NDArray<double>(std::vector<std::size_t>(33, 1)), std::invalid_argument);
  EXPECT_THROW(NDArray<double>({std::size_t{1} << 40, std::size_t{1} << 40}), std::invalid_argument);
}

#ifdef __cpp_lib_mdspan
TEST(NDArray, MdspanViewsTheSameElements) {
  NDArray<double> a({2, 3});
  a.mutable_mdspan<2>()[1, 2] = 7;
  EXPECT_EQ(a(1, 2), 7);
}
#endif

struct Sample {
  std::string name;
  NDArray<float> field;
  std::vector<std::int64_t> ids;
  std::map<std::string, NDArray<std::uint8_t>> masks;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(name, field, ids, masks);
  }
  bool operator==(const Sample&) const = default;
};

TEST(NDArrayCodec, RoundTripsEveryElementTypeAndRank) {
  const auto check = [](auto array) {
    using A = decltype(array);
    const A back = joblet::decode<A>(joblet::encode(array));
    EXPECT_EQ(back, array);
    EXPECT_EQ(back.shape(), array.shape());
  };
  check(NDArray<bool>({3}, true));
  check(NDArray<char>({2}, 'x'));
  check(NDArray<std::int8_t>({2, 2}, -3));
  check(NDArray<std::uint16_t>({5}, 65535));
  check(NDArray<std::int32_t>({1, 1, 1, 1}, -7));
  check(NDArray<std::uint64_t>({3}, ~std::uint64_t{0}));
  check(NDArray<float>({}, 2.5f));
  check(NDArray<double>({0, 3}));
  Sample sample{"s", NDArray<float>({2, 2}, 0.5f), {1, -2, 3}, {{"m", NDArray<std::uint8_t>({4}, 1)}}};
  EXPECT_EQ(joblet::decode<Sample>(joblet::encode(sample)), sample);
}

TEST(NDArrayCodec, EncodesItsElementsAsOneBlock) {
  NDArray<double> a({100});
  const std::string bytes = joblet::encode(a);
  // kind, dtype, rank, one extent, then the 800 bytes of elements.
  EXPECT_EQ(bytes.size(), 3 + 8 + 800u);
}

TEST(NDArrayCodec, WrongTypeOrDamagedBytesFailCleanly) {
  const std::string bytes = joblet::encode(NDArray<double>({4}, 1.0));
  EXPECT_THROW(joblet::decode<NDArray<float>>(bytes), joblet::SerializationError);
  EXPECT_THROW(joblet::decode<NDArray<double>>(bytes.substr(0, bytes.size() - 1)), joblet::SerializationError);
  std::string huge = bytes;
  const std::uint64_t claim = std::uint64_t{1} << 60;
  std::memcpy(huge.data() + 3, &claim, sizeof claim);  // the extent
  EXPECT_THROW(joblet::decode<NDArray<double>>(huge), joblet::SerializationError);
  std::string rank = bytes;
  rank[2] = 40;
  EXPECT_THROW(joblet::decode<NDArray<double>>(rank), joblet::SerializationError);
  // A reference to a file outside any load() is refused: bytes never make a reader open files.
  std::string reference = bytes.substr(0, 11);
  reference[0] = 1;
  const std::uint64_t length = 4;
  reference.append(reinterpret_cast<const char*>(&length), 8).append("/etc");
  EXPECT_THROW(joblet::decode<NDArray<double>>(reference), joblet::SerializationError);
}

TEST(NDArrayCodec, VectorsEncodeExactlyAsCerealDoes) {
  // Cache keys and stored entries of std::vector results must not change with arrays support.
  const std::vector<double> values{1.0, 2.0, 3.5};
  std::ostringstream cereal_bytes;
  {
    cereal::BinaryOutputArchive archive(cereal_bytes);
    archive(values);
  }
  EXPECT_EQ(joblet::encode(values), cereal_bytes.str());
  EXPECT_EQ(joblet::decode<std::vector<double>>(cereal_bytes.str()), values);
  EXPECT_THROW(joblet::decode<std::vector<double>>(cereal_bytes.str().substr(0, 20)), joblet::SerializationError);
}

TEST(NDArrayCodec, HashesByValueInOnePass) {
  NDArray<double> a({1000}, 0.25);
  NDArray<double> b = a.copy();
  EXPECT_EQ(joblet::hash_value(a), joblet::hash_value(b));
  b.mutable_at(999) = 0.5;
  EXPECT_NE(joblet::hash_value(a), joblet::hash_value(b));
  EXPECT_NE(joblet::hash_value(a), joblet::hash_value(a.reshape({10, 100})));  // the shape counts
  EXPECT_NE(joblet::hash_value(a), joblet::hash_value(a.to_vector()));         // and the type
}

}  // namespace
