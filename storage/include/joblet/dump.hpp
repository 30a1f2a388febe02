#pragma once
/// @file
/// dump() and load(): any encodable value to an HDF5 file and back (joblib.dump / joblib.load).
///
/// @code
///   joblet::dump(result, "result.h5");                                // arrays uncompressed
///   joblet::dump(result, "result.h5z", {.compress = 3});              // deflate level 3
///   auto r = joblet::load<Result>("result.h5");                       // read into memory
///   auto m = joblet::load<Result>("result.h5", {.mmap_mode = joblet::MmapMode::read_only});
/// @endcode
///
/// Every array of the value (each NDArray, and each std::vector of an Element type) becomes a
/// dataset `/arrays/<n>`, numbered in the order the value encodes them; the rest of the value is
/// the dataset /value, the codec's bytes with references to those datasets.
///
/// Values in a std::map<std::string, V> (or a std::vector<std::pair<std::string, V>>, a list of
/// named values) are also found by their keys, for h5py and notebooks:
/// an array under key "field" is the dataset /field too (a second name for `/arrays/<n>`, no copy);
/// several arrays under one key are /field/0, /field/1, ...; a map inside a map makes groups
/// (/run1/field); a number or string under a key is an attribute of the group holding the key
/// (the root's: f.attrs["temperature"]). Keys that cannot be names (empty, with '/', ".", "..",
/// "value" and "arrays" at the root, "joblet_..." attributes, or taken twice) are left unnamed,
/// with a log message; the value round-trips either way. h5py, h5dump and
/// any HDF5 reader see the arrays as ordinary datasets (attribute joblet_dtype names the dtype);
/// the root's attributes name the format (joblet_format = "joblet.dump", joblet_format_version)
/// and the C++ type (joblet_type).
///
/// Uncompressed arrays are contiguous and 64-byte aligned in the file, so load() with an mmap
/// mode maps them in O(1) without reading them. Compressed arrays are chunked (about 1 MiB per
/// chunk) and filtered: deflate levels 1-9 with byte shuffling (chunks are compressed on every
/// CPU the process may use, then handed to HDF5), or szip (compress > 0 with Compressor::szip;
/// HDF5's own, faster per CPU than deflate). Mapping a compressed file is not possible: load()
/// warns and reads it into memory.
///
/// load<T>() checks everything it reads before it allocates: the HDF5 signature; a footer joblet
/// appends after HDF5's bytes, whose checksum covers all of the file but the array data and is
/// checked before HDF5 parses anything (HDF5 can crash on damaged metadata); the format name and
/// version; T against the type the file was written as; every dataset's dtype and shape against
/// what T's encoding expects; every size against the file's real size. A damaged, truncated,
/// foreign or mismatched file is a StorageError naming the problem, never a crash or a huge
/// allocation. (A file edited by another program, h5py in "r+" mode say, loses the footer and is
/// refused: dump it again.) dump() writes a hidden temporary file next to the path and renames
/// it into place, so a reader never sees half a file.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "joblet/codec.hpp"
#include "joblet/error.hpp"
#include "joblet/mmap_mode.hpp"
#include "joblet/ndarray.hpp"

namespace joblet {

/// The filter that compresses arrays when DumpOptions::compress is above 0.
enum class Compressor {
  deflate,  ///< zlib, levels 1 (fastest) to 9 (smallest), what h5py calls "gzip"
  szip,     ///< HDF5's built-in szip (libaec): no levels; fast on smooth scientific data
};

/// How dump() writes a file. Invalid options make it throw ConfigError.
struct DumpOptions {
  /// joblib's compress: 0 writes arrays uncompressed (contiguous and memory-mappable); 1 to 9
  /// compresses them with `compressor` at that level.
  int compress = 0;
  /// The filter compressed arrays go through; szip ignores the level. dump() throws ConfigError
  /// for szip when this HDF5 library cannot encode it.
  Compressor compressor = Compressor::deflate;
  /// Byte-shuffle elements before deflating (HDF5's shuffle filter): faster and smaller for
  /// numbers, whose high bytes vary slowly. (szip codes whole values and is never shuffled.)
  bool shuffle = true;
  /// An XXH3-128 checksum per uncompressed array (attribute joblet_xxh3_128), checked by load()
  /// with LoadOptions::verify; and HDF5's Fletcher-32 per szip chunk (deflate chunks carry
  /// zlib's Adler-32 anyway), checked on every read.
  bool checksum = true;
  /// fsync the file before publishing it, so that a crash of the machine cannot leave a
  /// published file whose data never reached the disk. Off, as in joblib.
  bool fsync = false;
};

/// How load() reads a file.
struct LoadOptions {
  /// Read the arrays into memory, or map them (uncompressed arrays only: compressed ones are read
  /// into memory, with a warning).
  MmapMode mmap_mode = MmapMode::none;
  /// Check each uncompressed array's checksum while reading it (for mapped arrays this reads
  /// them once). Compressed chunks are always checked by HDF5.
  bool verify = false;
};

namespace detail {

/// A file that is not there, or no longer the one that was named (a cache companion bound to
/// another entry): the benign race of files replaced by rename, which a reader answers by
/// looking again, not by calling anything damaged.
class FileReplaced : public StorageError {
  using StorageError::StorageError;
};

/// Who a file is read for: messages advise what the reader can do about it.
enum class FileUse {
  user_file,       ///< load() and SharedArray: the user's own files
  cache_companion  ///< a cache entry's companion: never followed through a link, recomputed when damaged
};

/// Collects the arrays of a value while it is encoded, then writes them and the encoding.
class DumpWriter final : public ArrayWriter {
 public:
  explicit DumpWriter(std::size_t threshold) noexcept : ArrayWriter(threshold) {}
  std::optional<std::string> store(const ArrayBlock& block) override;
  void enter_name(std::string_view key) override;
  void leave_name() override;
  void name_number(std::string_view key, DType dtype, const void* value) override;
  void name_text(std::string_view key, std::string_view text) override;
  std::size_t array_count() const noexcept { return arrays_.size(); }
  /// Writes the file at `path`: the arrays, `encoding` and the root attributes; `binding`, when
  /// given, is recorded so a reader can tell this file from another written for the same name.
  /// `describe_errno`, when given, words a failed write's cause and fix for the caller (Memory's
  /// advice differs from dump()'s). Returns the file's size.
  std::uint64_t write(const std::filesystem::path& path, std::string_view encoding, std::string_view type_name,
                      const DumpOptions& options, std::string_view binding = {},
                      std::string (*describe_errno)(int error) = nullptr) const;

 private:
  struct Array {
    DType dtype;
    std::vector<std::size_t> shape;
    const void* data;
    std::size_t nbytes;
    std::string scope;  // the names it was stored under, "a/b"; empty: none
  };
  /// A number or string under a key of a named scope: an attribute of that scope's group.
  struct NamedValue {
    std::string scope;
    std::string key;
    DType dtype{};
    std::string bytes;  ///< the number's bytes, or the text
    bool text = false;
  };
  /// The scope's name for arrays and values stored now; empty when unnamed (or a key could not
  /// be a name: with a '/', say).
  std::string current_scope() const;
  void name_value(std::string_view key, DType dtype, std::string_view bytes, bool text);
  void write_names(class ArrayFileWriter& file) const;

  std::vector<Array> arrays_;
  std::vector<NamedValue> values_;
  std::vector<std::string> scope_;  ///< keys entered and not left; "" for a key that names nothing
};

/// A dump file opened and checked for a value of type `type_name` (any type when empty), and
/// `binding`, when given: throws FileReplaced when the file is bound to another entry.
/// `opened_as`, when given, is the name the file is opened by (see StoredEntry::companion);
/// `path` is what messages and mapped arrays show.
class DumpFile {
 public:
  DumpFile(const std::filesystem::path& path, const LoadOptions& options, std::string_view type_name,
           std::string_view binding = {}, FileUse use = FileUse::user_file,
           const std::filesystem::path& opened_as = {});
  ~DumpFile();
  DumpFile(const DumpFile&) = delete;
  DumpFile& operator=(const DumpFile&) = delete;
  /// The value's encoding (what the DumpReader resolves references in).
  std::span<const std::byte> encoding() const noexcept;
  [[noreturn]] void fail_decode(const SerializationError& error) const;

  struct Impl;
  Impl& impl() noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

class DumpReader final : public ArrayReader {
 public:
  explicit DumpReader(DumpFile& file) noexcept : file_(file) {}
  OpenedArray open(std::string_view reference, DType dtype, std::span<const std::size_t> shape,
                   std::size_t nbytes) override;
  void read(std::string_view reference, DType dtype, std::span<const std::size_t> shape, std::size_t nbytes,
            Destination destination) override;

 private:
  DumpFile& file_;
};

template <class T>
std::string dump_type_name() {
  return demangle(typeid(T).name());
}

}  // namespace detail

/// Writes `value` to the HDF5 file `path` (replacing it). Throws StorageError (cannot write),
/// SerializationError (cannot encode), ConfigError (invalid options).
template <class T>
void dump(const T& value, const std::filesystem::path& path, const DumpOptions& options = {}) {
  detail::require_encodable<T>();
  std::string encoding;
  detail::DumpWriter writer(0);
  detail::encode_into(value, encoding, &writer);
  writer.write(path, encoding, detail::dump_type_name<T>(), options);
}

/// Reads the value dump() wrote to `path`. Throws StorageError when the file cannot be read or
/// does not hold a T.
template <class T>
T load(const std::filesystem::path& path, const LoadOptions& options = {}) {
  detail::require_encodable<T>();
  detail::DumpFile file(path, options, detail::dump_type_name<T>());
  detail::DumpReader reader(file);
  try {
    return detail::decode_from<T>(file.encoding(), &reader);
  } catch (const SerializationError& e) {
    file.fail_decode(e);
  }
}

}  // namespace joblet
