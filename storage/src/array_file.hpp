#pragma once
// HDF5 files of arrays, as dump(), Memory's companion files, SharedArray and the processes
// backend's result files use them. The format (which datasets and attributes a dump file has)
// lives in dump.cpp; this is the machinery:
//
// - ArrayFileWriter makes a new file under a hidden temporary name next to its destination and
//   renames it into place once complete, so a reader sees the old file, the new one, or none.
//   Uncompressed arrays become contiguous datasets allocated at creation (64-byte aligned, no
//   fill), and joblet writes their bytes itself after HDF5 closed the file: HDF5 holds its lock
//   only for metadata. Compressed arrays become chunked datasets written by HDF5's filters.
// - ArrayFileReader opens a file, describes its datasets, and reads them (pread at the offset
//   HDF5 gives, or HDF5's own read for chunked data) or maps the whole file once.
//
// Every size a file claims is checked against the file's real size (or, for compressed data,
// against what its compressed size can expand to) before anything is allocated.
//
// The footer. HDF5 trusts its metadata: a damaged byte in it can crash the library (found by
// fuzzing single bytes). So every file joblet writes ends with a footer, after the bytes HDF5
// uses (HDF5 and h5py ignore what lies past the end HDF5 recorded):
//
//   u64 offset, u64 size   × n   the raw data regions: contiguous arrays and compressed chunks
//   u64 n, u64 end                end: where HDF5's bytes end (the footer starts there)
//   u64 × 2                       XXH3-128 of bytes [0, end) outside the regions, then of the table
//   8 bytes "JOBLETH5", u32 version (1), u32 0
//
// A reader checks it before HDF5 parses anything: metadata and padding must be intact. Raw
// data is left out (it would make opening O(size)); it has checksums of its own (joblet_xxh3_128
// attributes, zlib's Adler-32, Fletcher-32 for szip). Files of other programs have no footer.

#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hdf5_util.hpp"
#include "joblet/detail/array_io.hpp"
#include "joblet/dtype.hpp"
#include "joblet/dump.hpp"
#include "joblet/hash.hpp"
#include "joblet/mmap_mode.hpp"

namespace joblet::detail {

enum class FileCompressor { deflate, szip };

// Why a path cannot be written or read, from an errno, with the fix as dump()'s caller needs it.
std::string describe_file_errno(int error);
// A path as messages show it: in single quotes.
std::string quoted(const std::filesystem::path& path);

struct ArrayFileSettings {
  int compress = 0;  // 0: contiguous; 1-9: chunked with the compressor (its level, for deflate)
  FileCompressor compressor = FileCompressor::deflate;
  bool shuffle = true;
  bool checksum = true;  // XXH3-128 of each contiguous array, as attribute joblet_xxh3_128
  bool fsync = false;
  // The cause and fix of a failed write, in the words of whoever asked for the file: a cache
  // gives other advice (bytes_limit, prune) than dump() does.
  std::string (*describe_errno)(int error) = describe_file_errno;
};

inline constexpr const char* kChecksumAttribute = "joblet_xxh3_128";

// Raw data bytes of a file, left out of its footer's checksum.
struct DataRegion {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  friend auto operator<=>(const DataRegion&, const DataRegion&) = default;
};
inline constexpr const char* kDtypeAttribute = "joblet_dtype";

class ArrayFileWriter {
 public:
  // Creates the temporary file now; nothing appears at `path` before finish().
  ArrayFileWriter(std::filesystem::path path, ArrayFileSettings settings);
  ~ArrayFileWriter();  // removes the temporary file unless finish() published it
  ArrayFileWriter(const ArrayFileWriter&) = delete;
  ArrayFileWriter& operator=(const ArrayFileWriter&) = delete;

  void set_root_attribute(const char* name, std::string_view value);
  void set_root_attribute(const char* name, std::uint32_t value);
  // A dataset for the array (groups in `name` are created). `block.data` must stay valid until
  // finish(), which writes the bytes of uncompressed arrays.
  void add_array(const std::string& name, const ArrayBlock& block);
  // A one-dimensional uint8 dataset holding `bytes` (written now).
  void add_bytes(const std::string& name, std::string_view bytes, std::string_view description);
  // Another name for array `array_index`'s dataset (a hard link; groups in `name` are created).
  // False, with nothing changed, when the name is taken.
  bool add_name(const std::string& name, std::size_t array_index);
  // An attribute of group `group` ("" for the root; created with its parents when missing):
  // a number of `dtype`, or a string. False, with nothing changed, when the name is taken.
  bool add_attribute(const std::string& group, const std::string& name, DType dtype, const void* value);
  bool add_attribute(const std::string& group, const std::string& name, std::string_view text);
  // Writes the arrays' bytes and checksums, syncs if asked, publishes the file at its path.
  // Returns the file's size.
  std::uint64_t finish();
  // Where an uncompressed array's bytes start in the file (after add_array), for readers that
  // map it without HDF5.
  std::uint64_t offset_of(std::size_t array_index) const;

 private:
  struct Array {
    std::string name;
    ArrayBlock block;
    std::vector<std::size_t> shape;
    std::uint64_t offset = 0;  // for contiguous data written by joblet
    bool written_by_hdf5 = false;
    bool checksum_pending = false;  // hashed while finish() writes it, then recorded
  };
  // Group `path` (the root when empty), created with its parents when missing; null when a
  // part of the path is something else. With the HDF5 lock held.
  h5::Id group(const std::string& path);
  // The group at `group_path` when it has no attribute `name` yet; null otherwise. Lock held.
  h5::Id holder_of_new_attribute(const std::string& group_path, const std::string& name);
  // Reopens the closed file: records the pending checksums and adds the chunks' regions.
  void finish_in_hdf5(const std::vector<Hash128>& checksums, std::vector<DataRegion>& regions);

  std::filesystem::path path_;
  std::filesystem::path temporary_;
  ArrayFileSettings settings_;
  h5::Id file_;
  std::vector<Array> arrays_;
  bool published_ = false;
};

struct DatasetInfo {
  DType dtype{};
  std::vector<std::size_t> shape;
  std::size_t nbytes = 0;
  // Contiguous data at a known offset: joblet reads or maps it itself.
  std::optional<std::uint64_t> offset;
  bool compressed = false;
  std::optional<Hash128> checksum;
};

// A mapping of a whole file, shared by every array mapped from it.
class FileMapping final : public ArrayBuffer {
 public:
  FileMapping(int fd, std::uint64_t size, bool copy_on_write, std::string path);
  ~FileMapping() override;
  std::string_view mapped_file() const noexcept override { return path_; }
  std::byte* data() const noexcept { return static_cast<std::byte*>(data_); }
  bool copy_on_write() const noexcept { return copy_on_write_; }

 private:
  void* data_ = nullptr;
  std::uint64_t size_ = 0;
  bool copy_on_write_ = false;
  std::string path_;
};

class ArrayFileReader {
 public:
  // Opens an HDF5 file; StorageError naming the cause when it is not HDF5, truncated, not a
  // regular file (never waiting on a FIFO), or has a joblet footer that does not match it;
  // FileReplaced when it is not there. With `require_footer`, a file without one (another
  // program's, or a joblet file cut short) is refused before HDF5 reads it. A cache companion is
  // never followed through a symbolic link nor read when hard-linked, and its messages carry no
  // advice meant for dump() and load() callers (the cache recomputes what it cannot read).
  // `opened_as`, when given, is the name opened instead of `path` (which messages and mapped
  // arrays show).
  explicit ArrayFileReader(std::filesystem::path path, bool require_footer = false, FileUse use = FileUse::user_file,
                           const std::filesystem::path& opened_as = {});
  ~ArrayFileReader();
  ArrayFileReader(const ArrayFileReader&) = delete;
  ArrayFileReader& operator=(const ArrayFileReader&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  std::uint64_t file_size() const noexcept { return file_size_; }

  std::optional<std::string> root_string(const char* name, std::size_t max_size = 4096) const;
  std::optional<std::uint64_t> root_uint(const char* name) const;
  // Describes a dataset of an Element type; StorageError when it is missing, of another
  // type, stored where joblet does not read (external files, virtual datasets), or claims
  // more bytes than the file can hold.
  DatasetInfo dataset(const std::string& name) const;
  // The bytes of a one-dimensional uint8 dataset of at most `max_size` bytes.
  std::string read_bytes(const std::string& name, std::size_t max_size) const;
  // Reads a dataset into `destination` (info.nbytes bytes); with `verify`, checks its checksum.
  void read(const std::string& name, const DatasetInfo& info, void* destination, bool verify) const;
  // --- for describing a file (`joblet show`) ---
  // Every dataset by its paths: a dataset with several names (hard links) appears once, with
  // its names in HDF5's order (by name).
  std::vector<std::vector<std::string>> dataset_names() const;
  // How a dataset's chunks are compressed ("deflate level 4, shuffled", "szip"); empty: not.
  std::string compression_of(const std::string& name) const;
  // The attributes of the group at `path` ("" for the root) whose names do not start with
  // "joblet_", with their values as text; a value joblet cannot read is described instead.
  std::vector<std::pair<std::string, std::string>> attributes_of(const std::string& path) const;
  // Every group's path ("" for the root first).
  std::vector<std::string> group_names() const;

  // The whole file mapped (once; later calls return the same mapping).
  std::shared_ptr<const FileMapping> map(bool copy_on_write);
  // A dataset's array (info from dataset()): mapped in place when `mode` asks for it and the
  // data lies contiguous and aligned for its dtype, otherwise read into new memory. With
  // `verify`, its checksum is checked either way (a mapped array is read once for it).
  OpenedArray open_array(const std::string& name, const DatasetInfo& info, MmapMode mode, bool verify);

 private:
  std::filesystem::path path_;
  FileUse use_ = FileUse::user_file;
  h5::Id file_;
  int fd_ = -1;                  // the file checked and parsed (HDF5's is checked to be the same file)
  std::uint64_t file_size_ = 0;  // the bytes HDF5 uses (without the footer)
  std::shared_ptr<const FileMapping> mapping_;
};

// Replaces the footer of an HDF5 file by one for its current contents (its data regions found
// with HDF5): for tests that stand in for other writers, and tools that edit joblet files.
void seal_hdf5_file(const std::filesystem::path& path);

}  // namespace joblet::detail
