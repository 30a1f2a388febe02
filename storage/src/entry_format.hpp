#pragma once
// The bytes of one entry file (format version 2). All integers little-endian.
//
//   offset  size  field
//        0     8  magic "JOBLETCE" (joblet cache entry)
//        8     4  format version (2; version 1 had no key in its metadata)
//       12     4  header size (64); a later version may grow the header
//       16     8  metadata size M (at most 1 MiB)
//       24     8  payload offset P: 64 + M rounded up to a multiple of 64, so that a payload
//                 holding raw array data can be memory-mapped aligned
//       32     8  payload size S; the file is exactly P + S bytes long
//       40     4  payload kind (PayloadKind)
//       44     4  reserved, 0
//       48     8  header checksum: XXH3-64 of bytes 0..47 followed by the M metadata bytes
//       56     8  reserved, 0
//       64     M  metadata: the codec's encoding of MetadataRecord, which carries the entry's
//                 key and the payload's XXH3-128 checksum
//   64 + M   pad  zeros up to P
//        P     S  payload
//
// Fields added since format 2 live in the metadata's extension map under keys starting with
// "joblet.", which every format 2 reader ignores: a cache shared by programs built with joblets
// of different ages keeps serving all of their entries, where a format bump would make older
// readers recompute and replace every newer entry. Entries written before a field was added
// lack it. The fields (integers little-endian, strings as a u32 length and their bytes):
//   joblet.key  the key's parts (EntryMetadata::key_parts): the explicit version, the
//               source-text salt and the build-id salt as strings (empty when absent), a u32
//               count of arguments (at most kMaxKeyArguments), then per argument 17 bytes: 1 if
//               it is ignored, else 0, and its hash's high and low u64 halves (zeros if ignored).
//               It must hold exactly that: anything else makes the entry corrupt.
//
// Two checksums so that listing and `joblet cache ls` can verify an entry's metadata without
// reading a payload that may be gigabytes. A reader checks the magic, the version, every size
// against the file's real size (so a truncated file is caught before any checksum), then both
// checksums. Nothing in the file can make a reader allocate more than the file holds.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include "joblet/store.hpp"

namespace joblet::detail {

inline constexpr std::array<char, 8> kEntryMagic{'J', 'O', 'B', 'L', 'E', 'T', 'C', 'E'};
inline constexpr std::uint32_t kEntryFormatVersion = 2;
inline constexpr std::size_t kEntryHeaderSize = 64;
inline constexpr std::size_t kPayloadAlignment = 64;
inline constexpr std::uint64_t kMaxMetadataSize = std::uint64_t{1} << 20;
// More arguments than any compiler takes: a bound on what a hostile entry makes a reader allocate.
inline constexpr std::size_t kMaxKeyArguments = 1024;

// An entry that cannot be used. Internal: the store turns it into LoadStatus::corrupt.
class CorruptEntry : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct EntryHeader {
  std::uint32_t format_version = 0;
  std::uint64_t metadata_size = 0;
  std::uint64_t payload_offset = 0;
  std::uint64_t payload_size = 0;
  std::uint32_t payload_kind = 0;
  std::uint64_t header_checksum = 0;
};

// Everything before the payload: header, metadata, padding. `metadata` must already carry the
// payload's size and checksum.
std::string encode_entry_prefix(const EntryMetadata& metadata);

// Whether a read decodes the key's parts (EntryMetadata::key_parts) or steps over them. The
// reads that serve hits skip them: a hit never needs them, and decoding them would cost every
// hit an allocation and copies of its metadata that are larger.
enum class KeyPartsRead { read, skip };

// Checks the first 64 bytes of a file of `file_size` bytes; throws CorruptEntry.
EntryHeader parse_entry_header(std::span<const std::byte> first_bytes, std::uint64_t file_size);
// Checks the header checksum and decodes the metadata; throws CorruptEntry. Skipped key parts
// are stepped over unchecked.
EntryMetadata parse_entry_metadata(const EntryHeader& header, std::span<const std::byte> header_bytes,
                                   std::span<const std::byte> metadata_bytes,
                                   KeyPartsRead key_parts = KeyPartsRead::read);

struct ParsedEntry {
  EntryMetadata metadata;
  std::size_t payload_offset = 0;
};
// Verifies a whole entry file held in memory, payload checksum included; throws CorruptEntry.
ParsedEntry parse_entry(std::span<const std::byte> file, KeyPartsRead key_parts = KeyPartsRead::read);

}  // namespace joblet::detail
