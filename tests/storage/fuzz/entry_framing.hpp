#pragma once
// Entry files made by hand, for the white-box tests and the fuzzer: a header that is valid for
// whatever metadata and payload bytes it frames, so that those bytes reach the decoders.

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "entry_format.hpp"

namespace joblet::testing {

// `file` with its header checksum (over the header's first 48 bytes and the metadata) made right
// again, after a test changed some of those bytes.
inline std::vector<std::byte> rechecksummed(std::vector<std::byte> file) {
  std::uint64_t metadata_size = 0;
  std::memcpy(&metadata_size, file.data() + 16, 8);
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, file.data(), 48);
  XXH3_64bits_update(&state, file.data() + 64, metadata_size);
  const std::uint64_t checksum = XXH3_64bits_digest(&state);
  std::memcpy(file.data() + 48, &checksum, 8);
  return file;
}

// An entry file holding `metadata` (its encoded record, or any bytes) and `payload`, behind a
// header that is valid for them. The payload's checksum is the metadata's business: not set here.
inline std::vector<std::byte> framed_entry(std::span<const std::byte> metadata, std::span<const std::byte> payload) {
  const std::uint64_t metadata_size = metadata.size();
  const std::uint64_t payload_offset = (64 + metadata_size + 63) / 64 * 64;
  const std::uint64_t payload_size = payload.size();
  std::vector<std::byte> file(payload_offset + payload_size, std::byte{0});
  std::memcpy(file.data(), detail::kEntryMagic.data(), 8);
  const std::uint32_t version = detail::kEntryFormatVersion;
  const std::uint32_t header_size = 64;
  std::memcpy(file.data() + 8, &version, 4);
  std::memcpy(file.data() + 12, &header_size, 4);
  std::memcpy(file.data() + 16, &metadata_size, 8);
  std::memcpy(file.data() + 24, &payload_offset, 8);
  std::memcpy(file.data() + 32, &payload_size, 8);
  if (!metadata.empty()) std::memcpy(file.data() + 64, metadata.data(), metadata.size());
  if (!payload.empty()) std::memcpy(file.data() + payload_offset, payload.data(), payload.size());
  return rechecksummed(std::move(file));
}

}  // namespace joblet::testing
