// The entry file format: round trip, and every truncation and every single bit flip detected;
// the key parts entries record, and entries written before they were.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "entry_format.hpp"
#include "fuzz/entry_framing.hpp"
#include "joblet/codec.hpp"
#include "support.hpp"

namespace {

using joblet::detail::CorruptEntry;

std::vector<std::byte> make_entry(const std::string& payload_text) {
  joblet::EntryMetadata metadata;
  metadata.function = "simulate";
  metadata.version = "2";
  metadata.arguments = "Params, int 3";
  metadata.result_type = "double";
  metadata.duration = std::chrono::milliseconds(12);
  metadata.created = std::chrono::system_clock::now();
  metadata.payload_size = payload_text.size();
  metadata.checksum = joblet::hash_bytes(payload_text.data(), payload_text.size());
  const std::string prefix = joblet::detail::encode_entry_prefix(metadata);
  std::vector<std::byte> file(prefix.size() + payload_text.size());
  std::memcpy(file.data(), prefix.data(), prefix.size());
  std::memcpy(file.data() + prefix.size(), payload_text.data(), payload_text.size());
  return file;
}

TEST(EntryFormat, RoundTrip) {
  const auto file = make_entry("the payload");
  const auto parsed = joblet::detail::parse_entry(file);
  EXPECT_EQ(parsed.payload_offset % joblet::detail::kPayloadAlignment, 0u);
  EXPECT_EQ(parsed.payload_offset + 11, file.size());
  EXPECT_EQ(parsed.metadata.function, "simulate");
  EXPECT_EQ(parsed.metadata.version, "2");
  EXPECT_EQ(parsed.metadata.arguments, "Params, int 3");
  EXPECT_EQ(parsed.metadata.duration, std::chrono::milliseconds(12));
  EXPECT_EQ(parsed.metadata.format_version, joblet::detail::kEntryFormatVersion);
  EXPECT_EQ(std::memcmp(file.data(), "JOBLETCE", 8), 0);
}

TEST(EntryFormat, EveryTruncationIsDetected) {
  const auto file = make_entry(std::string(300, 'p'));
  for (std::size_t length = 0; length < file.size(); ++length) {
    EXPECT_THROW(joblet::detail::parse_entry(std::span(file).first(length)), CorruptEntry) << length;
  }
}

TEST(EntryFormat, EveryBitFlipIsDetected) {
  const auto original = make_entry(std::string(100, 'p'));
  auto file = original;
  for (std::size_t byte = 0; byte < file.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      file[byte] ^= std::byte{static_cast<unsigned char>(1u << bit)};
      EXPECT_THROW(joblet::detail::parse_entry(file), CorruptEntry) << "byte " << byte << " bit " << bit;
      file[byte] = original[byte];
    }
  }
}

TEST(EntryFormat, HostileSizesAreRefusedBeforeAnyAllocation) {
  auto file = make_entry("x");
  const auto set64 = [&](std::size_t offset, std::uint64_t value) { std::memcpy(file.data() + offset, &value, 8); };
  set64(16, ~std::uint64_t{0});  // metadata size
  EXPECT_THROW(joblet::detail::parse_entry(file), CorruptEntry);
  file = make_entry("x");
  set64(32, ~std::uint64_t{0} - 10);  // payload size that would overflow offset + size
  EXPECT_THROW(joblet::detail::parse_entry(file), CorruptEntry);
  file = make_entry("x");
  const std::uint32_t future = 99;
  std::memcpy(file.data() + 8, &future, 4);
  try {
    joblet::detail::parse_entry(file);
    FAIL();
  } catch (const CorruptEntry& e) {
    EXPECT_NE(std::string(e.what()).find("format version 99"), std::string::npos) << e.what();
  }
}

// Entries record their key's parts; old readers see them as extra fields they ignore.
TEST(EntryFormat, KeyPartsRoundTrip) {
  joblet::EntryMetadata metadata;
  metadata.function = "simulate";
  metadata.checksum = joblet::hash_bytes("", 0);
  metadata.extra["host"] = "node07";
  metadata.key_parts = joblet::KeyParts{
      .version = "",
      .source_salt = "0123456789abcdef",
      .build_salt = "fedcba9876543210fedcba9876543210",
      .arguments = {{.ignored = false, .hash = joblet::hash_value(3)}, {.ignored = true}, {.ignored = false}}};
  const std::string prefix = joblet::detail::encode_entry_prefix(metadata);
  const auto parsed = joblet::detail::parse_entry(std::as_bytes(std::span<const char>(prefix.data(), prefix.size())));
  EXPECT_EQ(parsed.metadata.key_parts, metadata.key_parts);
  EXPECT_EQ(parsed.metadata.extra, metadata.extra);
  // No arguments is not the same as not recorded.
  metadata.key_parts->arguments.clear();
  const std::string none = joblet::detail::encode_entry_prefix(metadata);
  const auto parsed_none = joblet::detail::parse_entry(std::as_bytes(std::span<const char>(none.data(), none.size())));
  ASSERT_TRUE(parsed_none.metadata.key_parts.has_value());
  EXPECT_TRUE(parsed_none.metadata.key_parts->arguments.empty());
}

TEST(EntryFormat, AnEntryOfThePreviousJobletParsesWithoutKeyParts) {
  const std::string file = joblet::testing::previous_joblet_entry();
  const auto parsed = joblet::detail::parse_entry(std::as_bytes(std::span<const char>(file.data(), file.size())));
  EXPECT_EQ(parsed.metadata.format_version, 2u);
  EXPECT_EQ(parsed.metadata.key.hex(), joblet::testing::kPreviousJobletKey);
  EXPECT_EQ(parsed.metadata.arguments, "int 3, double 0.5");
  EXPECT_FALSE(parsed.metadata.key_parts.has_value());
  EXPECT_EQ(parsed.metadata.extra.at("host"), "vm");
}

// The metadata as the store encodes it (entry_format.cpp's record, field for field), so that
// tests can write what the store's encoder never would.
struct RawRecord {
  joblet::Hash128 key;
  std::string function = "f";
  std::string version;
  std::string arguments;
  std::string result_type;
  std::int64_t duration_ns = 0;
  std::int64_t created_ns = 0;
  std::uint64_t payload_size = 0;
  joblet::Hash128 checksum = joblet::hash_bytes("", 0);
  std::map<std::string, std::string> extra;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(key, function, version, arguments, result_type, duration_ns, created_ns, payload_size, checksum, extra);
  }
};

using joblet::testing::framed_entry;
using joblet::testing::rechecksummed;

// An entry file, with an empty payload and a correct header, holding `record`.
std::vector<std::byte> entry_holding(const RawRecord& record) {
  const std::string metadata = joblet::encode(record);
  return framed_entry(std::as_bytes(std::span(metadata)), {});
}

// The "joblet.key" field (see entry_format.hpp), written by hand.
struct KeyBlob {
  std::string bytes;
  KeyBlob& u32(std::uint32_t value) { return raw(&value, 4); }
  KeyBlob& u64(std::uint64_t value) { return raw(&value, 8); }
  KeyBlob& text(const std::string& value) {
    u32(static_cast<std::uint32_t>(value.size()));
    bytes += value;
    return *this;
  }
  KeyBlob& argument(char flag, joblet::Hash128 hash) {
    bytes += flag;
    return u64(hash.high).u64(hash.low);
  }
  KeyBlob& raw(const void* data, std::size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return *this;
  }
};

KeyBlob key_blob(std::uint32_t count) { return std::move(KeyBlob{}.text("1").text("").text("").u32(count)); }

TEST(EntryFormat, KeyPartsAreReadFromTheirField) {
  RawRecord record;
  record.extra = {{"joblet.key", key_blob(2).argument(0, joblet::hash_value(3)).argument(1, {}).bytes}, {"host", "h"}};
  const auto parsed = joblet::detail::parse_entry(entry_holding(record));
  ASSERT_TRUE(parsed.metadata.key_parts.has_value());
  EXPECT_EQ(parsed.metadata.key_parts->version, "1");
  ASSERT_EQ(parsed.metadata.key_parts->arguments.size(), 2u);
  EXPECT_EQ(parsed.metadata.key_parts->arguments[0].hash, joblet::hash_value(3));
  EXPECT_TRUE(parsed.metadata.key_parts->arguments[1].ignored);
  EXPECT_EQ(parsed.metadata.extra, (std::map<std::string, std::string>{{"host", "h"}}));
  // Fields of a later joblet that this one does not know are dropped, not refused.
  record.extra = {{"joblet.later", "x"}, {"host", "h"}, {"joblet.key.z", ""}};
  const auto later = joblet::detail::parse_entry(entry_holding(record));
  EXPECT_FALSE(later.metadata.key_parts.has_value());
  EXPECT_EQ(later.metadata.extra, (std::map<std::string, std::string>{{"host", "h"}}));
}

// Hostile or damaged key parts (with correct checksums: a writer meant them) make the entry
// corrupt, a miss, and never allocate more than a bounded list.
TEST(EntryFormat, MalformedKeyPartsMakeTheEntryCorrupt) {
  const auto corrupt = [](const std::string& blob, const std::string& what) {
    RawRecord record;
    record.extra = {{"joblet.key", blob}};
    EXPECT_THROW(joblet::detail::parse_entry(entry_holding(record)), CorruptEntry) << what;
  };
  const std::string valid = key_blob(2).argument(0, joblet::hash_value(3)).argument(1, {}).bytes;
  for (std::size_t length = 0; length < valid.size(); ++length) corrupt(valid.substr(0, length), "cut short");
  corrupt(valid + '\0', "a byte too many");
  corrupt(key_blob(1).argument(2, {}).bytes, "a flag that is neither 0 nor 1");
  corrupt(key_blob(1).argument(1, joblet::hash_value(3)).bytes, "an ignored argument with a hash");
  corrupt(key_blob(3).argument(0, {}).bytes, "fewer arguments than counted");
  corrupt(KeyBlob{}.u32(0xffffffff).bytes, "a version longer than the field");
  corrupt(KeyBlob{}.text("1").u32(0xfffffff0).bytes, "a salt longer than the field");
  KeyBlob too_many = key_blob(static_cast<std::uint32_t>(joblet::detail::kMaxKeyArguments + 1));
  for (std::size_t i = 0; i <= joblet::detail::kMaxKeyArguments; ++i) too_many.argument(1, {});
  corrupt(too_many.bytes, "more arguments than an entry records");
  corrupt(key_blob(0xffffffff).bytes, "a count that would allocate 100 GB");
  // The most arguments an entry records is fine.
  KeyBlob most = key_blob(static_cast<std::uint32_t>(joblet::detail::kMaxKeyArguments));
  for (std::size_t i = 0; i < joblet::detail::kMaxKeyArguments; ++i) most.argument(1, {});
  RawRecord record;
  record.extra = {{"joblet.key", most.bytes}};
  EXPECT_EQ(joblet::detail::parse_entry(entry_holding(record)).metadata.key_parts->arguments.size(),
            joblet::detail::kMaxKeyArguments);
}

// The reads that serve hits step over the key's parts, unread and unchecked: a hit never needs
// them. Inspecting reads them, and refuses malformed ones.
TEST(EntryFormat, HitsSkipTheKeyParts) {
  RawRecord record;
  record.extra = {{"joblet.key", key_blob(1).argument(0, joblet::hash_value(3)).bytes}, {"host", "h"}};
  const auto skipped = joblet::detail::parse_entry(entry_holding(record), joblet::detail::KeyPartsRead::skip);
  EXPECT_FALSE(skipped.metadata.key_parts.has_value());
  EXPECT_EQ(skipped.metadata.extra, (std::map<std::string, std::string>{{"host", "h"}}));
  record.extra["joblet.key"] = "malformed";
  EXPECT_NO_THROW(joblet::detail::parse_entry(entry_holding(record), joblet::detail::KeyPartsRead::skip));
  EXPECT_THROW(joblet::detail::parse_entry(entry_holding(record), joblet::detail::KeyPartsRead::read), CorruptEntry);
  // A field that claims more bytes than the metadata holds is refused either way.
  std::vector<std::byte> file = entry_holding(record);
  const std::string claimed = "joblet.key";
  const auto at = std::search(file.begin(), file.end(), claimed.begin(), claimed.end(),
                              [](std::byte b, char c) { return b == std::byte(c); });
  ASSERT_NE(at, file.end());
  const std::uint64_t huge = ~std::uint64_t{0} / 2;
  std::memcpy(&*(at + static_cast<std::ptrdiff_t>(claimed.size())), &huge, 8);  // the value's size
  EXPECT_THROW(joblet::detail::parse_entry(rechecksummed(file), joblet::detail::KeyPartsRead::skip), CorruptEntry);
}

TEST(EntryFormat, TheEncoderRefusesWhatReadersWouldNot) {
  joblet::EntryMetadata metadata;
  metadata.function = "f";
  metadata.extra["joblet.key.version"] = "1";
  EXPECT_THROW(joblet::detail::encode_entry_prefix(metadata), joblet::SerializationError);
  metadata.extra.clear();
  metadata.key_parts = joblet::KeyParts{};
  metadata.key_parts->arguments.resize(joblet::detail::kMaxKeyArguments + 1);
  EXPECT_THROW(joblet::detail::encode_entry_prefix(metadata), joblet::SerializationError);
}

}  // namespace
