// libFuzzer target for the entry reader: whatever bytes an entry file holds, reading it must
// end in a CorruptEntry or SerializationError, never a crash, a hang or an allocation beyond the
// input's size (run with -malloc_limit_mb to enforce that). tools/fuzz runs it for a fixed time.
//
// The first input byte picks what is fuzzed:
//   0: the bytes as a whole entry file (checksums make most mutations stop at the header);
//   1: the bytes as metadata followed by a payload, framed by a valid header with correct
//      checksums, so that the metadata decoder and payload decoding are reached;
//   2: the bytes straight into the codec's decoder, as a few value types.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "entry_format.hpp"
#include "entry_framing.hpp"
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
      read_entry(joblet::testing::framed_entry(input.first(split), input.subspan(split)));
      break;
    }
    default:
      decode_as_values(input);
      break;
  }
  return 0;
}
