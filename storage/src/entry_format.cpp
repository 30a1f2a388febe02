#include "entry_format.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <optional>
#include <string_view>
#include <type_traits>

#include "joblet/codec.hpp"

namespace joblet::detail {
namespace {

constexpr std::string_view kReservedPrefix = "joblet.";
constexpr std::string_view kKeyPartsField = "joblet.key";  // short enough to need no allocation
constexpr std::size_t kArgumentSize = 17;                  // an ignored flag, then the hash's high and low halves

struct NoKeyParts {};

void append_u32(std::string& out, std::uint32_t value) { out.append(reinterpret_cast<const char*>(&value), 4); }
void append_u64(std::string& out, std::uint64_t value) { out.append(reinterpret_cast<const char*>(&value), 8); }
void append_text(std::string& out, const std::string& text) {
  append_u32(out, static_cast<std::uint32_t>(text.size()));
  out += text;
}

// The "joblet.key" field (see entry_format.hpp).
std::string encode_key_parts(const KeyParts& parts) {
  if (parts.arguments.size() > kMaxKeyArguments) {
    throw SerializationError("the entry's key has " + std::to_string(parts.arguments.size()) +
                             " argument parts, more than the " + std::to_string(kMaxKeyArguments) +
                             " an entry records");
  }
  std::string out;
  out.reserve(16 + parts.version.size() + parts.source_salt.size() + parts.build_salt.size() +
              kArgumentSize * parts.arguments.size());
  append_text(out, parts.version);
  append_text(out, parts.source_salt);
  append_text(out, parts.build_salt);
  append_u32(out, static_cast<std::uint32_t>(parts.arguments.size()));
  for (const ArgumentHash& argument : parts.arguments) {
    out += argument.ignored ? '\1' : '\0';
    append_u64(out, argument.ignored ? 0 : argument.hash.high);
    append_u64(out, argument.ignored ? 0 : argument.hash.low);
  }
  return out;
}

KeyParts decode_key_parts(std::span<const std::byte> bytes) {
  std::size_t at = 0;
  const auto take_u32 = [&] {
    if (bytes.size() - at < 4) throw CorruptEntry("the entry's key parts are cut short");
    std::uint32_t value;
    std::memcpy(&value, bytes.data() + at, 4);
    at += 4;
    return value;
  };
  const auto take_text = [&](std::string& text) {
    const std::uint32_t size = take_u32();
    if (size > bytes.size() - at) throw CorruptEntry("the entry's key parts are cut short");
    text.assign(reinterpret_cast<const char*>(bytes.data() + at), size);
    at += size;
  };
  KeyParts parts;
  take_text(parts.version);
  take_text(parts.source_salt);
  take_text(parts.build_salt);
  const std::uint32_t count = take_u32();
  if (count > kMaxKeyArguments) throw CorruptEntry("the entry records too many argument hashes");
  if (bytes.size() - at != count * kArgumentSize) {
    throw CorruptEntry("the entry's argument hashes do not fill its key parts exactly");
  }
  parts.arguments.resize(count);
  for (ArgumentHash& argument : parts.arguments) {
    const auto flag = static_cast<unsigned char>(bytes[at]);
    std::memcpy(&argument.hash.high, bytes.data() + at + 1, 8);
    std::memcpy(&argument.hash.low, bytes.data() + at + 9, 8);
    at += kArgumentSize;
    if (flag > 1) throw CorruptEntry("the entry's argument hashes are malformed");
    argument.ignored = flag == 1;
    if (argument.ignored && argument.hash != Hash128{}) {
      throw CorruptEntry("the entry's argument hashes are malformed");
    }
  }
  return parts;
}

// The metadata as it is encoded. `extra` holds fields added by later minor revisions (a
// companion file's name for a later payload kind, say) without a format version bump: readers
// ignore keys they do not know. Format 2 added the key, so that an entry copied or renamed
// under another key can be told from the real one. Loading takes the store's own fields out of
// `extra` (and drops the "joblet." fields of a later joblet); the key's parts are decoded only
// when With is KeyPartsRead::read: a hit never needs them, and stepping over them costs it
// next to nothing.
template <KeyPartsRead With>
struct MetadataRecord {
  Hash128 key;
  std::string function;
  std::string version;
  std::string arguments;
  std::string result_type;
  std::int64_t duration_ns = 0;
  std::int64_t created_ns = 0;
  std::uint64_t payload_size = 0;
  Hash128 checksum;
  std::map<std::string, std::string> extra;  // with the store's own fields when saved, without when loaded
  // Loaded from extra["joblet.key"]; not even a member when skipped.
  [[no_unique_address]] std::conditional_t<With == KeyPartsRead::read, std::optional<KeyParts>, NoKeyParts> key_parts;

  template <class Archive>
  void save(Archive& ar) const {
    ar(key, function, version, arguments, result_type, duration_ns, created_ns, payload_size, checksum, extra);
  }

  // What cereal's loading of the map does, with the store's fields taken out on the way.
  void load(SpanInputArchive& ar) {
    ar(key, function, version, arguments, result_type, duration_ns, created_ns, payload_size, checksum);
    std::uint64_t count = 0;
    ar(cereal::make_size_tag(count));
    bool seen_key_parts = false;
    for (std::uint64_t i = 0; i < count; ++i) {
      std::string name;
      ar(name);
      if (name == kKeyPartsField) {
        if (seen_key_parts) throw CorruptEntry("the entry records its key's parts twice");
        seen_key_parts = true;
        std::uint64_t size = 0;
        ar(cereal::make_size_tag(size));  // checked against the bytes left
        const std::span<const std::byte> bytes = ar.take(static_cast<std::size_t>(size));
        if constexpr (With == KeyPartsRead::read) key_parts = decode_key_parts(bytes);
        continue;
      }
      std::string value;
      ar(value);
      if (!name.starts_with(kReservedPrefix)) extra.emplace_hint(extra.end(), std::move(name), std::move(value));
    }
  }
};

std::map<std::string, std::string> encoded_extra(const EntryMetadata& metadata) {
  for (const auto& [name, value] : metadata.extra) {
    if (name.starts_with(kReservedPrefix)) {
      throw SerializationError("the entry's extra field '" + name +
                               "' starts with 'joblet.', which the store keeps for its own fields; rename it");
    }
  }
  std::map<std::string, std::string> extra = metadata.extra;
  if (metadata.key_parts) extra.emplace(std::string(kKeyPartsField), encode_key_parts(*metadata.key_parts));
  return extra;
}

template <class T>
void put(std::string& out, std::size_t offset, T value) {
  static_assert(std::endian::native == std::endian::little, "entry files are little-endian");
  std::memcpy(out.data() + offset, &value, sizeof value);
}

template <class T>
T get(std::span<const std::byte> bytes, std::size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof value);
  return value;
}

std::uint64_t header_checksum(std::span<const std::byte> header, std::span<const std::byte> metadata) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header.data(), 48);
  XXH3_64bits_update(&state, metadata.data(), metadata.size());
  return XXH3_64bits_digest(&state);
}

std::uint64_t aligned_payload_offset(std::uint64_t metadata_size) {
  const std::uint64_t end = kEntryHeaderSize + metadata_size;
  return (end + kPayloadAlignment - 1) / kPayloadAlignment * kPayloadAlignment;
}

}  // namespace

std::string encode_entry_prefix(const EntryMetadata& metadata) {
  MetadataRecord<KeyPartsRead::read> record{
      metadata.key,
      metadata.function,
      metadata.version,
      metadata.arguments,
      metadata.result_type,
      std::chrono::duration_cast<std::chrono::nanoseconds>(metadata.duration).count(),
      std::chrono::duration_cast<std::chrono::nanoseconds>(metadata.created.time_since_epoch()).count(),
      metadata.payload_size,
      metadata.checksum,
      encoded_extra(metadata),
      std::nullopt};
  // Room for all of it up front: growing the string as the fields are appended would copy it
  // several times per write.
  std::size_t estimate =
      128 + record.function.size() + record.version.size() + record.arguments.size() + record.result_type.size();
  for (const auto& [name, value] : record.extra) estimate += 16 + name.size() + value.size();
  std::string out;
  out.reserve(aligned_payload_offset(estimate));
  out.resize(kEntryHeaderSize);
  encode(record, out);
  const std::uint64_t metadata_size = out.size() - kEntryHeaderSize;
  if (metadata_size > kMaxMetadataSize) {
    throw SerializationError(
        "the entry's metadata takes " + std::to_string(metadata_size) +
        " bytes, more than the 1 MiB an entry allows; shorten the metadata's version, arguments or "
        "extra fields");
  }
  const std::uint64_t payload_offset = aligned_payload_offset(metadata_size);
  std::memcpy(out.data(), kEntryMagic.data(), kEntryMagic.size());
  put<std::uint32_t>(out, 8, kEntryFormatVersion);
  put<std::uint32_t>(out, 12, static_cast<std::uint32_t>(kEntryHeaderSize));
  put<std::uint64_t>(out, 16, metadata_size);
  put<std::uint64_t>(out, 24, payload_offset);
  put<std::uint64_t>(out, 32, metadata.payload_size);
  put<std::uint32_t>(out, 40, static_cast<std::uint32_t>(metadata.payload_kind));
  const auto bytes = std::as_bytes(std::span<const char>(out.data(), out.size()));
  put<std::uint64_t>(out, 48, header_checksum(bytes.first(kEntryHeaderSize), bytes.subspan(kEntryHeaderSize)));
  out.resize(payload_offset, '\0');
  return out;
}

EntryHeader parse_entry_header(std::span<const std::byte> first_bytes, std::uint64_t file_size) {
  if (first_bytes.size() < kEntryHeaderSize || file_size < kEntryHeaderSize) {
    throw CorruptEntry("the file has " + std::to_string(file_size) + " bytes, fewer than an entry's header");
  }
  if (std::memcmp(first_bytes.data(), kEntryMagic.data(), kEntryMagic.size()) != 0) {
    throw CorruptEntry("the file does not start like a joblet cache entry");
  }
  EntryHeader header;
  header.format_version = get<std::uint32_t>(first_bytes, 8);
  if (header.format_version != kEntryFormatVersion) {
    throw CorruptEntry("the entry has format version " + std::to_string(header.format_version) +
                       "; this joblet reads version " + std::to_string(kEntryFormatVersion) +
                       (header.format_version < kEntryFormatVersion ? " (it is recomputed and replaced)"
                                                                    : " (written by a newer joblet)"));
  }
  if (get<std::uint32_t>(first_bytes, 12) != kEntryHeaderSize) throw CorruptEntry("the entry's header size is wrong");
  header.metadata_size = get<std::uint64_t>(first_bytes, 16);
  header.payload_offset = get<std::uint64_t>(first_bytes, 24);
  header.payload_size = get<std::uint64_t>(first_bytes, 32);
  header.payload_kind = get<std::uint32_t>(first_bytes, 40);
  header.header_checksum = get<std::uint64_t>(first_bytes, 48);
  if (get<std::uint64_t>(first_bytes, 56) != 0) throw CorruptEntry("the entry's reserved header bytes are not zero");
  if (header.metadata_size > kMaxMetadataSize) throw CorruptEntry("the entry claims oversized metadata");
  if (header.payload_offset != aligned_payload_offset(header.metadata_size)) {
    throw CorruptEntry("the entry's payload offset does not follow its metadata");
  }
  // Compared by subtraction: a hostile size cannot overflow the sum.
  if (header.payload_offset > file_size || header.payload_size != file_size - header.payload_offset) {
    throw CorruptEntry("the file has " + std::to_string(file_size) + " bytes but its header describes " +
                       std::to_string(header.payload_offset) + " + " + std::to_string(header.payload_size) +
                       " (truncated or overwritten)");
  }
  if (header.payload_kind != static_cast<std::uint32_t>(PayloadKind::inline_codec) &&
      header.payload_kind != static_cast<std::uint32_t>(PayloadKind::hdf5_companion)) {
    throw CorruptEntry("the entry has payload kind " + std::to_string(header.payload_kind) +
                       ", which this joblet does not know");
  }
  return header;
}

namespace {
template <KeyPartsRead With>
EntryMetadata metadata_from(const EntryHeader& header, std::span<const std::byte> metadata_bytes) {
  MetadataRecord<With> record = [&] {
    try {
      return decode<MetadataRecord<With>>(metadata_bytes);
    } catch (const SerializationError& e) {
      throw CorruptEntry("the entry's metadata cannot be decoded: " + e.message());
    }
  }();
  if (record.payload_size != header.payload_size) throw CorruptEntry("the entry's metadata and header disagree");
  EntryMetadata metadata;
  metadata.key = record.key;
  metadata.function = std::move(record.function);
  metadata.version = std::move(record.version);
  metadata.arguments = std::move(record.arguments);
  metadata.result_type = std::move(record.result_type);
  metadata.duration = std::chrono::nanoseconds(record.duration_ns);
  metadata.created = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(record.created_ns)));
  metadata.payload_size = record.payload_size;
  metadata.format_version = header.format_version;
  metadata.checksum = record.checksum;
  metadata.payload_kind = static_cast<PayloadKind>(header.payload_kind);
  if constexpr (With == KeyPartsRead::read) metadata.key_parts = std::move(record.key_parts);
  metadata.extra = std::move(record.extra);
  return metadata;
}
}  // namespace

EntryMetadata parse_entry_metadata(const EntryHeader& header, std::span<const std::byte> header_bytes,
                                   std::span<const std::byte> metadata_bytes, KeyPartsRead key_parts) {
  if (metadata_bytes.size() != header.metadata_size) throw CorruptEntry("the entry's metadata is cut short");
  if (header_checksum(header_bytes, metadata_bytes) != header.header_checksum) {
    throw CorruptEntry("the checksum of the entry's header and metadata does not match");
  }
  return key_parts == KeyPartsRead::read ? metadata_from<KeyPartsRead::read>(header, metadata_bytes)
                                         : metadata_from<KeyPartsRead::skip>(header, metadata_bytes);
}

ParsedEntry parse_entry(std::span<const std::byte> file, KeyPartsRead key_parts) {
  const EntryHeader header = parse_entry_header(file, file.size());
  ParsedEntry parsed{parse_entry_metadata(header, file.first(kEntryHeaderSize),
                                          file.subspan(kEntryHeaderSize, header.metadata_size), key_parts),
                     header.payload_offset};
  // The padding is outside both checksums: requiring zeros there leaves no byte of the file
  // whose corruption goes unnoticed.
  const auto padding = file.subspan(kEntryHeaderSize + header.metadata_size,
                                    header.payload_offset - kEntryHeaderSize - header.metadata_size);
  if (std::any_of(padding.begin(), padding.end(), [](std::byte b) { return b != std::byte{0}; })) {
    throw CorruptEntry("the padding before the entry's payload is not zero");
  }
  const auto payload = file.subspan(header.payload_offset);
  if (hash_bytes(payload.data(), payload.size()) != parsed.metadata.checksum) {
    throw CorruptEntry("the checksum of the entry's payload does not match");
  }
  return parsed;
}

}  // namespace joblet::detail
