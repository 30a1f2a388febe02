// libFuzzer target for the entry reader: whatever bytes an entry file holds, reading it must
// end in a CorruptEntry or SerializationError, never a crash, a hang or an allocation beyond the
// input's size (run with -malloc_limit_mb to enforce that). tools/fuzz runs it for a fixed time.
//
// The first input byte picks what is fuzzed:
//   0: the bytes as a whole entry file (checksums make most mutations stop at the header);
//   1: the bytes as metadata followed by a payload, framed by a valid header with correct
//      checksums, so that the metadata decoder and payload decoding are reached;
//   2: the bytes straight into the codec's decoder, as a few value types.

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "entry_format.hpp"
#include "joblet/codec.hpp"
#include "joblet/hash.hpp"

namespace {

void decode_as_values(std::span<const std::byte> bytes) {
  try {
    joblet::decode<std::map<std::string, std::vector<double>>>(bytes);
  } catch (const joblet::SerializationError&) {
  }
  try {
    joblet::decode<std::vector<std::string>>(bytes);
  } catch (const joblet::SerializationError&) {
  }
  try {
    joblet::decode<std::unordered_map<std::int64_t, std::vector<std::vector<float>>>>(bytes);
  } catch (const joblet::SerializationError&) {
  }
}

void read_entry(std::span<const std::byte> file) {
  // As a hit reads it (the key's parts stepped over), and as inspecting reads it.
  for (const auto key_parts : {joblet::detail::KeyPartsRead::skip, joblet::detail::KeyPartsRead::read}) {
    try {
      const auto parsed = joblet::detail::parse_entry(file, key_parts);
      decode_as_values(file.subspan(parsed.payload_offset));
    } catch (const joblet::detail::CorruptEntry&) {
    }
  }
  // The metadata-only path that listings use.
  try {
    const auto header = joblet::detail::parse_entry_header(file, file.size());
    joblet::detail::parse_entry_metadata(header, file.first(joblet::detail::kEntryHeaderSize),
                                         file.subspan(joblet::detail::kEntryHeaderSize, header.metadata_size));
  } catch (const joblet::detail::CorruptEntry&) {
  }
}

// A file whose header is valid for `metadata` and `payload`, so mutations reach the decoders.
std::vector<std::byte> framed(std::span<const std::byte> metadata, std::span<const std::byte> payload) {
  const std::uint64_t metadata_size = metadata.size();
  const std::uint64_t payload_offset = (64 + metadata_size + 63) / 64 * 64;
  const std::uint64_t payload_size = payload.size();
  std::vector<std::byte> file(payload_offset + payload_size, std::byte{0});
  std::memcpy(file.data(), joblet::detail::kEntryMagic.data(), 8);
  const std::uint32_t version = joblet::detail::kEntryFormatVersion;
  const std::uint32_t header_size = 64;
  std::memcpy(file.data() + 8, &version, 4);
  std::memcpy(file.data() + 12, &header_size, 4);
  std::memcpy(file.data() + 16, &metadata_size, 8);
  std::memcpy(file.data() + 24, &payload_offset, 8);
  std::memcpy(file.data() + 32, &payload_size, 8);
  if (!metadata.empty()) std::memcpy(file.data() + 64, metadata.data(), metadata.size());
  if (!payload.empty()) std::memcpy(file.data() + payload_offset, payload.data(), payload.size());
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, file.data(), 48);
  XXH3_64bits_update(&state, metadata.data(), metadata.size());
  const std::uint64_t checksum = XXH3_64bits_digest(&state);
  std::memcpy(file.data() + 48, &checksum, 8);
  return file;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto input = std::as_bytes(std::span<const std::uint8_t>(data + 1, size - 1));
  switch (data[0] % 3) {
    case 0:
      read_entry(input);
      break;
    case 1: {
      // Split the input: the first half is metadata, the rest payload.
      const std::size_t split = input.size() / 2;
      read_entry(framed(input.first(split), input.subspan(split)));
      break;
    }
    default:
      decode_as_values(input);
      break;
  }
  return 0;
}
