// The entry file format: round trip, and every truncation and every single bit flip detected.

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "entry_format.hpp"

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

}  // namespace
