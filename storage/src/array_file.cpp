#include "array_file.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <type_traits>

#include "beneath.hpp"
#include "io.hpp"
#include "joblet/error.hpp"

namespace joblet::detail {
namespace {

// Bytes moved per read or write call: large enough that system calls cost nothing, small
// enough that a piece just hashed is still in cache when the kernel copies it.
constexpr std::size_t kPiece = std::size_t{4} << 20;
// Chunks of compressed datasets hold about this much.
constexpr std::size_t kChunkBytes = std::size_t{1} << 20;
// Uncompressed blobs up to this size live in the dataset's header (HDF5's compact layout).
constexpr std::size_t kCompactLimit = 60 * 1024;
// Arrays up to this size are hashed when added, so their checksum is written with the file;
// larger ones are hashed piece by piece as finish() writes them (no second pass over memory),
// and their checksums recorded by reopening the file (a fraction of a millisecond).
constexpr std::size_t kHashFirst = std::size_t{16} << 20;
// deflate cannot expand data more than about 1032 times; a claim beyond that is corrupt.
constexpr std::uint64_t kMaxDeflateRatio = 1100;

constexpr unsigned char kHdf5Signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

// ---- the footer (see array_file.hpp) ----
constexpr char kFooterMagic[8] = {'J', 'O', 'B', 'L', 'E', 'T', 'H', '5'};
constexpr std::uint32_t kFooterVersion = 1;
struct FooterTail {
  std::uint64_t region_count;
  std::uint64_t end;
  std::uint64_t checksum_high;
  std::uint64_t checksum_low;
  char magic[8];
  std::uint32_t version;
  std::uint32_t reserved;
};
static_assert(sizeof(FooterTail) == 48, "the footer's layout is fixed");
using Region = DataRegion;
static_assert(sizeof(Region) == 16 && std::is_trivially_copyable_v<Region>, "regions are stored as they are");

// io.hpp's read_fully_at, under the name this file's readers call it by.
int read_at(int fd, std::byte* data, std::size_t size, std::uint64_t offset) {
  return read_fully_at(fd, data, size, offset);
}

// XXH3-128 of the bytes [0, end) outside `regions` (sorted, disjoint, inside [0, end)), then of
// the region table and `end`. 0 or an errno.
int footer_checksum(int fd, std::uint64_t end, const std::vector<Region>& regions, Hash128& checksum) {
  Hasher hasher;
  std::vector<std::byte> buffer;
  const auto hash_range = [&](std::uint64_t from, std::uint64_t to) {
    while (from < to) {
      const std::size_t size = static_cast<std::size_t>(std::min<std::uint64_t>(to - from, kPiece));
      buffer.resize(size);
      if (const int error = read_at(fd, buffer.data(), size, from); error != 0) return error;
      hasher.update_bytes(buffer.data(), size);
      from += size;
    }
    return 0;
  };
  std::uint64_t at = 0;
  for (const Region& region : regions) {
    if (const int error = hash_range(at, region.offset); error != 0) return error;
    at = region.offset + region.size;
  }
  if (const int error = hash_range(at, end); error != 0) return error;
  hasher.update_bytes(regions.data(), regions.size() * sizeof(Region));
  hasher.update_bytes(&end, sizeof end);
  checksum = hasher.digest();
  return 0;
}

bool valid_regions(std::vector<Region>& regions, std::uint64_t end);
int write_at(int fd, const std::byte* data, std::size_t size, std::uint64_t offset);

// Writes the footer for the HDF5 bytes [0, end) of `fd` at `end`. 0 or an errno (EINVAL for
// regions that overlap or leave the file).
int append_footer(int fd, std::uint64_t end, std::vector<Region> regions) {
  if (!valid_regions(regions, end)) return EINVAL;
  Hash128 checksum;
  if (const int error = footer_checksum(fd, end, regions, checksum); error != 0) return error;
  FooterTail tail{regions.size(), end, checksum.high, checksum.low, {}, kFooterVersion, 0};
  std::memcpy(tail.magic, kFooterMagic, sizeof tail.magic);
  const std::size_t table_bytes = regions.size() * sizeof(Region);
  if (const int error = write_at(fd, reinterpret_cast<const std::byte*>(regions.data()), table_bytes, end);
      error != 0) {
    return error;
  }
  return write_at(fd, reinterpret_cast<const std::byte*>(&tail), sizeof tail, end + table_bytes);
}

// Sorted, inside [0, end), not overlapping.
bool valid_regions(std::vector<Region>& regions, std::uint64_t end) {
  std::sort(regions.begin(), regions.end());
  std::uint64_t at = 0;
  for (const Region& region : regions) {
    if (region.offset < at || region.offset > end || region.size > end - region.offset) return false;
    at = region.offset + region.size;
  }
  return true;
}

std::uint64_t physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  return pages > 0 && page_size > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size)
                                    : ~std::uint64_t{0};
}

int write_at(int fd, const std::byte* data, std::size_t size, std::uint64_t offset) {
  while (size > 0) {
    const ssize_t written = ::pwrite(fd, data, size, static_cast<off_t>(offset));
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (written == 0) return EIO;
    data += written;
    size -= static_cast<std::size_t>(written);
    offset += static_cast<std::uint64_t>(written);
  }
  return 0;
}

std::vector<hsize_t> dims_of(std::span<const std::size_t> shape) {
  return std::vector<hsize_t>(shape.begin(), shape.end());
}

// Chunk dimensions of about kChunkBytes: whole along the last axes, part of one axis (the
// split axis), 1 along the axes before it. In C order every chunk is then one contiguous run of
// the array's memory (padded with zeros where the split axis ends inside the last chunk).
std::vector<hsize_t> chunk_dims(std::span<const std::size_t> shape, std::size_t element_size) {
  std::vector<hsize_t> chunk(shape.size(), 1);
  std::size_t budget = std::max<std::size_t>(kChunkBytes / element_size, 1);
  for (std::size_t d = shape.size(); d-- > 0;) {
    const std::size_t take = std::min(shape[d], budget);
    chunk[d] = std::max<std::size_t>(take, 1);
    budget = std::max<std::size_t>(budget / std::max<std::size_t>(take, 1), 1);
    if (take < shape[d]) break;
  }
  return chunk;
}

// Appends where a chunked dataset's chunks lie: compressed chunks are raw data too, left out of
// the footer's checksum. False (HDF5's error pending) when HDF5 cannot say.
bool add_chunk_regions(hid_t dataset, hid_t space, std::vector<Region>& regions) {
  hsize_t chunks = 0;
  if (H5Dget_num_chunks(dataset, space, &chunks) < 0) return false;
  std::vector<hsize_t> origin(static_cast<std::size_t>(std::max(H5Sget_simple_extent_ndims(space), 1)));
  for (hsize_t i = 0; i < chunks; ++i) {
    unsigned mask = 0;
    haddr_t address = HADDR_UNDEF;
    hsize_t size = 0;
    if (H5Dget_chunk_info(dataset, space, i, origin.data(), &mask, &address, &size) < 0) return false;
    if (address != HADDR_UNDEF && size > 0) regions.push_back({address, size});
  }
  return true;
}

// How many bytes of a chunked dataset's elements its written chunks cover (each chunk holds a
// whole chunk's elements, whatever its stored, compressed, size). Chunks that were never
// written read as fill values.
std::uint64_t written_chunk_bytes(hid_t dataset, hid_t dcpl, const DatasetInfo& info) {
  const int rank = static_cast<int>(info.shape.size());
  std::vector<hsize_t> chunk(static_cast<std::size_t>(std::max(rank, 1)), 1);
  if (rank > 0 && H5Pget_chunk(dcpl, rank, chunk.data()) != rank) {
    H5Eclear2(H5E_DEFAULT);
    return 0;
  }
  std::uint64_t chunk_bytes = dtype_size(info.dtype);
  for (int d = 0; d < rank; ++d) {
    if (chunk[static_cast<std::size_t>(d)] != 0 &&
        chunk_bytes > ~std::uint64_t{0} / chunk[static_cast<std::size_t>(d)]) {
      return ~std::uint64_t{0};  // chunks larger than any memory: the nbytes bound decides
    }
    chunk_bytes *= chunk[static_cast<std::size_t>(d)];
  }
  h5::Id space(H5Dget_space(dataset), H5Sclose);
  hsize_t chunks = 0;
  if (!space || H5Dget_num_chunks(dataset, space.get(), &chunks) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return 0;
  }
  return chunks > ~std::uint64_t{0} / std::max<std::uint64_t>(chunk_bytes, 1) ? ~std::uint64_t{0}
                                                                              : chunks * chunk_bytes;
}

// The message for array bytes that do not match the checksum written with them.
std::string checksum_mismatch(const std::string& where) {
  return where + " does not match its checksum: the file is damaged; write it again";
}

std::size_t usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<std::size_t>(std::max(CPU_COUNT(&set), 1));
}

// HDF5's shuffle filter: byte j of element i goes to j * elements + i.
void shuffle_bytes(const std::byte* in, std::byte* out, std::size_t bytes, std::size_t element_size) {
  const std::size_t elements = bytes / element_size;
  for (std::size_t i = 0; i < elements; ++i) {
    for (std::size_t j = 0; j < element_size; ++j) out[j * elements + i] = in[i * element_size + j];
  }
  std::memcpy(out + elements * element_size, in + elements * element_size, bytes - elements * element_size);
}

// Compresses a chunked dataset's chunks on every usable CPU, outside the HDF5 lock, with the
// dataset's own filter pipeline (shuffle when asked, then deflate as HDF5's filter calls zlib),
// and hands each to HDF5 as raw chunk bytes (H5Dwrite_chunk) under the lock. The file is the
// same as H5Dwrite would make; only the compression runs in parallel.
void write_deflated_chunks(hid_t dataset, const ArrayBlock& block, std::span<const hsize_t> chunk, int level,
                           bool shuffle, const std::string& what) {
  const std::span<const std::size_t> shape = block.shape;
  const std::size_t element_size = dtype_size(block.dtype);
  // The axis chunks cut: the last one a chunk does not cover whole (0 when one chunk holds
  // everything). Chunks are 1 wide before it and whole after it (see chunk_dims).
  std::size_t split = 0;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (chunk[d] < shape[d]) split = d;
  }
  std::size_t trailing = 1;  // elements per index of the split axis
  for (std::size_t d = split + 1; d < shape.size(); ++d) trailing *= shape[d];
  std::size_t prefix = 1;  // chunks along the axes before the split axis
  for (std::size_t d = 0; d < split; ++d) prefix *= shape[d];
  const std::size_t along = (shape[split] + chunk[split] - 1) / chunk[split];
  const std::size_t chunk_elements = static_cast<std::size_t>(chunk[split]) * trailing;
  const std::size_t chunk_bytes = chunk_elements * element_size;
  const std::size_t total = prefix * along;
  const auto* data = static_cast<const std::byte*>(block.data);

  std::atomic<std::size_t> next{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;
  auto work = [&] {
    std::vector<std::byte> padded, shuffled(shuffle ? chunk_bytes : 0);
    std::vector<Bytef> compressed(compressBound(static_cast<uLong>(chunk_bytes)));
    std::vector<hsize_t> offset(shape.size(), 0);
    try {
      for (std::size_t c = next.fetch_add(1); c < total; c = next.fetch_add(1)) {
        {
          std::lock_guard lock(failure_mutex);
          if (failure) return;
        }
        const std::size_t p = c / along, j = c % along;
        const std::size_t rows = std::min<std::size_t>(chunk[split], shape[split] - j * chunk[split]);
        const std::byte* source = data + (p * shape[split] * trailing + j * chunk[split] * trailing) * element_size;
        if (rows < chunk[split]) {  // the last chunk along the split axis: pad to a whole chunk
          padded.assign(chunk_bytes, std::byte{0});
          std::memcpy(padded.data(), source, rows * trailing * element_size);
          source = padded.data();
        }
        if (shuffle) {
          shuffle_bytes(source, shuffled.data(), chunk_bytes, element_size);
          source = shuffled.data();
        }
        uLongf size = static_cast<uLongf>(compressed.size());
        if (compress2(compressed.data(), &size, reinterpret_cast<const Bytef*>(source), static_cast<uLong>(chunk_bytes),
                      level) != Z_OK) {
          throw StorageError(what + ": zlib could not compress a chunk");
        }
        for (std::size_t d = split, rest = p; d-- > 0;) {  // the chunk's first element
          offset[d] = rest % shape[d];
          rest /= shape[d];
        }
        offset[split] = j * chunk[split];
        auto lock = h5::lock();
        h5::check(H5Dwrite_chunk(dataset, H5P_DEFAULT, 0, offset.data(), size, compressed.data()), what);
      }
    } catch (...) {
      std::lock_guard lock(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
  };
  const std::size_t threads = std::min({usable_cpus(), total, std::size_t{16}});
  std::vector<std::thread> helpers;
  for (std::size_t t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
  for (auto& helper : helpers) helper.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

std::string describe_file_errno(int error) {
  std::string text = std::strerror(error);
  switch (error) {
    case ENOSPC:
    case EDQUOT:
      return text + "; free space or write somewhere else";
    case EROFS:
      return text + "; the filesystem is read-only: write somewhere else";
    case EACCES:
    case EPERM:
      return text + "; check the permissions of the file and its directory";
    case ENOENT:
      return text + "; check the path (dump() does not create directories)";
    default:
      return text;
  }
}

std::string quoted(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

// ---- writing ---------------------------------------------------------------------------------

ArrayFileWriter::ArrayFileWriter(std::filesystem::path path, ArrayFileSettings settings)
    : path_(std::move(path)), settings_(settings) {
  if (path_.empty()) throw StorageError("cannot write an HDF5 file at an empty path");
  if (settings_.compress < 0 || settings_.compress > 9) {
    throw ConfigError("compress = " + std::to_string(settings_.compress) +
                      " is not valid: use 0 (none, memory-mappable) or a level from 1 (fastest) to 9 (smallest)");
  }
  const std::filesystem::path directory = path_.has_parent_path() ? path_.parent_path() : ".";
  struct stat info {};
  // Read errno only when stat failed: after a stat that succeeded it is whatever came before.
  const int directory_error = stat(directory.c_str(), &info) != 0 ? errno : S_ISDIR(info.st_mode) ? 0 : ENOTDIR;
  if (directory_error != 0) {
    throw StorageError(
        "cannot write " + quoted(path_) + ": its directory " + quoted(directory) +
        (directory_error == ENOENT ? " does not exist (create it first)" : " is not a usable directory"));
  }
  temporary_ = directory / temporary_name(path_.filename().string());
  auto lock = h5::lock();
  h5::Id fapl = h5::file_access();
  const hid_t file = H5Fcreate(temporary_.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get());
  if (file < 0) {
    const std::string why = h5::error_text();
    const int error = access(directory.c_str(), W_OK) != 0 ? errno : 0;
    throw StorageError("cannot create " + quoted(path_) + ": " + (error != 0 ? settings_.describe_errno(error) : why));
  }
  file_ = h5::Id(file, H5Fclose);
}

ArrayFileWriter::~ArrayFileWriter() {
  if (file_) {
    auto lock = h5::lock();
    file_.reset();
  }
  if (!published_ && !temporary_.empty()) ::unlink(temporary_.c_str());
}

void ArrayFileWriter::set_root_attribute(const char* name, std::string_view value) {
  auto lock = h5::lock();
  h5::write_string_attribute(file_.get(), name, value);
}

void ArrayFileWriter::set_root_attribute(const char* name, std::uint32_t value) {
  auto lock = h5::lock();
  h5::write_uint_attribute(file_.get(), name, value);
}

void ArrayFileWriter::add_array(const std::string& name, const ArrayBlock& block) {
  const std::string what = "cannot write dataset '" + name + "' of " + quoted(path_);
  Array array{name, block, std::vector<std::size_t>(block.shape.begin(), block.shape.end()), 0, false};
  array.block.shape = array.shape;
  const std::size_t element_size = dtype_size(block.dtype);
  bool compressed = settings_.compress > 0 && !array.shape.empty() && block.nbytes > 0;
  std::vector<hsize_t> chunk;
  unsigned szip_pixels = 0;
  if (compressed) {
    chunk = chunk_dims(array.shape, element_size);
    if (settings_.compressor == FileCompressor::szip) {
      // szip codes blocks of an even number of elements, at most 32, within one chunk.
      hsize_t elements = 1;
      for (hsize_t extent : chunk) elements *= extent;
      szip_pixels = static_cast<unsigned>(std::min<hsize_t>(32, elements & ~hsize_t{1}));
      compressed = szip_pixels >= 2;  // a one-element array stays as it is
    }
  }

  std::optional<Hash128> checksum;
  if (settings_.checksum && !compressed && block.nbytes > 0 && block.nbytes <= kHashFirst) {
    checksum = hash_bytes(block.data, block.nbytes);
  }
  auto lock = h5::lock();
  const std::vector<hsize_t> dims = dims_of(array.shape);
  h5::Id space = array.shape.empty()
                     ? h5::make(H5Screate(H5S_SCALAR), H5Sclose, what)
                     : h5::make(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose, what);
  h5::Id dcpl = h5::make(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, what);
  if (compressed) {
    h5::check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), what);
    if (settings_.compressor == FileCompressor::szip) {
      unsigned config = 0;
      if (H5Zget_filter_info(H5Z_FILTER_SZIP, &config) < 0 || (config & H5Z_FILTER_CONFIG_ENCODE_ENABLED) == 0) {
        throw ConfigError("this HDF5 library cannot encode szip; use Compressor::deflate");
      }
      // No shuffle: szip's nearest-neighbour coding works on whole values (and does worse
      // on shuffled bytes).
      h5::check(H5Pset_szip(dcpl.get(), H5_SZIP_NN_OPTION_MASK, szip_pixels), what + " (szip)");
    } else {
      if (settings_.shuffle && element_size > 1) h5::check(H5Pset_shuffle(dcpl.get()), what);
      h5::check(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(settings_.compress)), what);
    }
    // Per-chunk checksums, checked on every read: zlib's own Adler-32 for deflate, HDF5's
    // Fletcher-32 for szip (which has none).
    if (settings_.checksum && settings_.compressor == FileCompressor::szip) {
      h5::check(H5Pset_fletcher32(dcpl.get()), what);
    }
  } else {
    h5::check(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS), what);
    // Space now, at an offset joblet can write to and map; no fill values written first.
    h5::check(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY), what);
    h5::check(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), what);
  }
  h5::Id lcpl = h5::make(H5Pcreate(H5P_LINK_CREATE), H5Pclose, what);
  h5::check(H5Pset_create_intermediate_group(lcpl.get(), 1), what);
  h5::Id type = h5::file_type(block.dtype);
  h5::Id dataset =
      h5::make(H5Dcreate2(file_.get(), name.c_str(), type.get(), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
               H5Dclose, what);
  h5::write_string_attribute(dataset.get(), kDtypeAttribute, dtype_name(block.dtype));
  if (compressed && settings_.compressor == FileCompressor::deflate) {
    lock.unlock();  // compression runs in parallel, outside the lock; chunks are written under it
    try {
      write_deflated_chunks(dataset.get(), array.block, chunk, settings_.compress,
                            settings_.shuffle && element_size > 1, what);
    } catch (...) {
      lock.lock();  // the identifiers are closed under the lock
      throw;
    }
    lock.lock();
    array.written_by_hdf5 = true;
  } else if (compressed) {
    h5::check(H5Dwrite(dataset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, block.data), what);
    array.written_by_hdf5 = true;
  } else if (block.nbytes > 0) {
    const haddr_t offset = H5Dget_offset(dataset.get());
    if (offset == HADDR_UNDEF) h5::fail(what + " (no offset for its data)");
    array.offset = offset;
    if (checksum) {
      h5::write_string_attribute(dataset.get(), kChecksumAttribute, checksum->hex());
    } else if (settings_.checksum) {
      // Filled in by finish() once the bytes are written and hashed.
      h5::write_string_attribute(dataset.get(), kChecksumAttribute, std::string(32, '0'));
      array.checksum_pending = true;
    }
  }
  arrays_.push_back(std::move(array));
}

void ArrayFileWriter::add_bytes(const std::string& name, std::string_view bytes, std::string_view description) {
  const std::string what = "cannot write dataset '" + name + "' of " + quoted(path_);
  auto lock = h5::lock();
  const hsize_t size = bytes.size();
  h5::Id space = h5::make(H5Screate_simple(1, &size, nullptr), H5Sclose, what);
  h5::Id dcpl = h5::make(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, what);
  h5::check(H5Pset_layout(dcpl.get(), bytes.size() <= kCompactLimit ? H5D_COMPACT : H5D_CONTIGUOUS), what);
  h5::Id dataset =
      h5::make(H5Dcreate2(file_.get(), name.c_str(), H5T_STD_U8LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
               H5Dclose, what);
  if (!description.empty()) h5::write_string_attribute(dataset.get(), "joblet_description", description);
  if (!bytes.empty()) {
    h5::check(H5Dwrite(dataset.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), what);
  }
}

h5::Id ArrayFileWriter::group(const std::string& path) {
  h5::Id current(H5Gopen2(file_.get(), "/", H5P_DEFAULT), H5Gclose);
  std::size_t start = 0;
  while (current && start < path.size()) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    const std::string part = path.substr(start, end - start);
    start = end + 1;
    const htri_t exists = H5Lexists(current.get(), part.c_str(), H5P_DEFAULT);
    if (exists > 0) {
      H5O_info_t info{};
      if (H5Oget_info_by_name2(current.get(), part.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0 ||
          info.type != H5O_TYPE_GROUP) {
        H5Eclear2(H5E_DEFAULT);
        return {};
      }
      current = h5::Id(H5Gopen2(current.get(), part.c_str(), H5P_DEFAULT), H5Gclose);
    } else {
      current = h5::Id(H5Gcreate2(current.get(), part.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    }
  }
  if (!current) H5Eclear2(H5E_DEFAULT);
  return current;
}

bool ArrayFileWriter::add_name(const std::string& name, std::size_t array_index) {
  const std::string what = "cannot name dataset '" + arrays_.at(array_index).name + "' of " + quoted(path_);
  auto lock = h5::lock();
  const std::size_t slash = name.rfind('/');
  h5::Id parent = group(slash == std::string::npos ? std::string() : name.substr(0, slash));
  const std::string leaf = slash == std::string::npos ? name : name.substr(slash + 1);
  if (!parent || H5Lexists(parent.get(), leaf.c_str(), H5P_DEFAULT) != 0) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  h5::check(H5Lcreate_hard(file_.get(), arrays_[array_index].name.c_str(), parent.get(), leaf.c_str(), H5P_DEFAULT,
                           H5P_DEFAULT),
            what);
  return true;
}

h5::Id ArrayFileWriter::holder_of_new_attribute(const std::string& group_path, const std::string& name) {
  h5::Id holder = group(group_path);
  if (!holder || H5Aexists(holder.get(), name.c_str()) != 0) {
    H5Eclear2(H5E_DEFAULT);
    return {};
  }
  return holder;
}

bool ArrayFileWriter::add_attribute(const std::string& group_path, const std::string& name, DType dtype,
                                    const void* value) {
  const std::string what = "cannot write attribute '" + name + "' of " + quoted(path_);
  auto lock = h5::lock();
  h5::Id holder = holder_of_new_attribute(group_path, name);
  if (!holder) return false;
  h5::Id type = h5::file_type(dtype);
  h5::Id space = h5::make(H5Screate(H5S_SCALAR), H5Sclose, what);
  h5::Id attribute = h5::make(H5Acreate2(holder.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                              H5Aclose, what);
  // The file's types are the little-endian ones of the machines joblet runs on: the bytes as they are.
  h5::check(H5Awrite(attribute.get(), type.get(), value), what);
  return true;
}

bool ArrayFileWriter::add_attribute(const std::string& group_path, const std::string& name, std::string_view text) {
  auto lock = h5::lock();
  h5::Id holder = holder_of_new_attribute(group_path, name);
  if (!holder) return false;
  h5::write_string_attribute(holder.get(), name.c_str(), text);
  return true;
}

std::uint64_t ArrayFileWriter::offset_of(std::size_t array_index) const { return arrays_.at(array_index).offset; }

std::uint64_t ArrayFileWriter::finish() {
  {
    auto lock = h5::lock();
    if (!file_.close()) h5::fail("cannot write " + quoted(path_));
  }
  const int fd = ::open(temporary_.c_str(), O_RDWR | O_CLOEXEC);  // read too: the footer hashes what HDF5 wrote
  if (fd < 0) throw StorageError("cannot write " + quoted(path_) + ": " + settings_.describe_errno(errno));
  const auto fail = [&](int error, const char* what) {
    ::close(fd);
    throw StorageError(std::string("cannot ") + what + " " + quoted(path_) + ": " + settings_.describe_errno(error));
  };
  // Where tests make the disk full (io.hpp), to reach the messages below.
  if (const int error = injected_fault(IoStep::write); error != 0) fail(error, "write");
  std::vector<Hash128> checksums;
  std::vector<Region> regions;
  bool any_chunked = false;
  for (const Array& array : arrays_) {
    any_chunked = any_chunked || array.written_by_hdf5;
    if (array.written_by_hdf5 || array.block.nbytes == 0) continue;
    regions.push_back({array.offset, array.block.nbytes});
    const auto* data = static_cast<const std::byte*>(array.block.data);
    Hasher hasher;
    for (std::size_t done = 0; done < array.block.nbytes; done += kPiece) {
      const std::size_t size = std::min(kPiece, array.block.nbytes - done);
      if (array.checksum_pending) hasher.update_bytes(data + done, size);
      if (const int error = write_at(fd, data + done, size, array.offset + done); error != 0) fail(error, "write");
    }
    if (array.checksum_pending) checksums.push_back(hasher.digest());
  }
  if (!checksums.empty() || any_chunked) {
    try {
      finish_in_hdf5(checksums, regions);
    } catch (...) {
      ::close(fd);
      throw;
    }
  }
  // The footer, after the last byte HDF5 wrote.
  struct stat info {};
  if (fstat(fd, &info) != 0) fail(errno, "examine");
  if (const int error = append_footer(fd, static_cast<std::uint64_t>(info.st_size), regions); error != 0) {
    fail(error, "write");
  }
  if (settings_.fsync && ::fsync(fd) != 0) fail(errno, "flush");
  if (fstat(fd, &info) != 0) fail(errno, "examine");
  if (::close(fd) != 0) throw StorageError("cannot write " + quoted(path_) + ": " + settings_.describe_errno(errno));
  if (::rename(temporary_.c_str(), path_.c_str()) != 0) {
    throw StorageError("cannot publish " + quoted(path_) + ": " + settings_.describe_errno(errno));
  }
  published_ = true;
  return static_cast<std::uint64_t>(info.st_size);
}

void ArrayFileWriter::finish_in_hdf5(const std::vector<Hash128>& checksums, std::vector<Region>& regions) {
  const std::string what = "cannot finish " + quoted(path_);
  auto lock = h5::lock();
  h5::Id fapl = h5::file_access();
  h5::Id file = h5::make(H5Fopen(temporary_.c_str(), checksums.empty() ? H5F_ACC_RDONLY : H5F_ACC_RDWR, fapl.get()),
                         H5Fclose, what);
  std::size_t next = 0;
  for (const Array& array : arrays_) {
    if (!array.checksum_pending && !array.written_by_hdf5) continue;
    h5::Id dataset = h5::make(H5Dopen2(file.get(), array.name.c_str(), H5P_DEFAULT), H5Dclose, what);
    if (array.checksum_pending) {
      h5::Id attribute = h5::make(H5Aopen(dataset.get(), kChecksumAttribute, H5P_DEFAULT), H5Aclose, what);
      h5::Id type = h5::make(H5Aget_type(attribute.get()), H5Tclose, what);
      const std::string hex = checksums[next++].hex();
      h5::check(H5Awrite(attribute.get(), type.get(), hex.c_str()), what);
    }
    if (array.written_by_hdf5) {
      h5::Id space = h5::make(H5Dget_space(dataset.get()), H5Sclose, what);
      if (!add_chunk_regions(dataset.get(), space.get(), regions)) h5::fail(what);
    }
  }
  if (!file.close()) h5::fail(what);
}

namespace {
herr_t collect_regions(hid_t group, const char* name, const H5O_info_t* info, void* data) {
  if (info->type != H5O_TYPE_DATASET) return 0;
  auto& regions = *static_cast<std::vector<Region>*>(data);
  h5::Id dataset(H5Dopen2(group, name, H5P_DEFAULT), H5Dclose);
  if (!dataset) return -1;
  h5::Id space(H5Dget_space(dataset.get()), H5Sclose);
  h5::Id dcpl(H5Dget_create_plist(dataset.get()), H5Pclose);
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  const hsize_t stored = H5Dget_storage_size(dataset.get());
  if (layout == H5D_CONTIGUOUS && H5Dget_offset(dataset.get()) != HADDR_UNDEF && stored > 0) {
    regions.push_back({H5Dget_offset(dataset.get()), stored});
  } else if (layout == H5D_CHUNKED) {
    // Chunks HDF5 cannot place stay inside the checksum: the footer still matches the file.
    add_chunk_regions(dataset.get(), space.get(), regions);
  }
  H5Eclear2(H5E_DEFAULT);
  return 0;
}
}  // namespace

void seal_hdf5_file(const std::filesystem::path& path) {
  const std::string what = "cannot seal " + quoted(path);
  std::vector<Region> regions;
  {
    auto lock = h5::lock();
    h5::Id fapl = h5::file_access();
    h5::Id file = h5::make(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get()), H5Fclose, what);  // drops a footer
    h5::check(H5Ovisit2(file.get(), H5_INDEX_NAME, H5_ITER_NATIVE, collect_regions, &regions, H5O_INFO_BASIC), what);
    if (!file.close()) h5::fail(what);
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  struct stat info {};
  const int error = fd < 0 || fstat(fd, &info) != 0
                        ? errno
                        : append_footer(fd, static_cast<std::uint64_t>(info.st_size), std::move(regions));
  if (fd >= 0) ::close(fd);
  if (error != 0) throw StorageError(what + ": " + std::strerror(error));
}

// ---- reading ---------------------------------------------------------------------------------

FileMapping::FileMapping(int fd, std::uint64_t size, bool copy_on_write, std::string path)
    : size_(size), copy_on_write_(copy_on_write), path_(std::move(path)) {
  data_ = mmap(nullptr, size, copy_on_write ? PROT_READ | PROT_WRITE : PROT_READ,
               copy_on_write ? MAP_PRIVATE : MAP_SHARED, fd, 0);
  if (data_ == MAP_FAILED) {
    data_ = nullptr;
    throw StorageError("cannot memory-map '" + path_ + "': " + std::strerror(errno) +
                       " (load it without an mmap mode, or raise the address-space limit)");
  }
}

FileMapping::~FileMapping() {
  if (data_ != nullptr) munmap(data_, size_);
}

ArrayFileReader::ArrayFileReader(std::filesystem::path path, bool require_footer, FileUse use,
                                 const std::filesystem::path& opened_as)
    : path_(std::move(path)), use_(use) {
  const bool for_user = use_ == FileUse::user_file;
  // What the reader of a user's file can do about it; the cache recomputes what it cannot read.
  const auto advice = [&](const char* text) { return for_user ? std::string(text) : std::string(); };
  // Plain checks first, so a missing or foreign file gets a plain answer rather than HDF5's,
  // and a damaged one is refused before HDF5 parses it. O_NONBLOCK: a FIFO given as the file
  // is refused below instead of blocking the open until a writer appears.
  fd_ = ::open((opened_as.empty() ? path_ : opened_as).c_str(),
               O_RDONLY | O_CLOEXEC | O_NONBLOCK | (for_user ? 0 : O_NOFOLLOW));
  if (fd_ < 0) {
    const int error = errno;
    const std::string why = for_user ? describe_file_errno(error) : std::string(std::strerror(error));
    if (error == ENOENT) throw FileReplaced("cannot open " + quoted(path_) + ": " + why);
    if (error == ELOOP && !for_user)
      throw StorageError(quoted(path_) + " is a symbolic link, which the cache never follows");
    throw StorageError("cannot open " + quoted(path_) + ": " + why);
  }
  struct stat opened {};
  const bool examined = fstat(fd_, &opened) == 0;
  const bool regular = examined && S_ISREG(opened.st_mode);
  const auto size = static_cast<std::uint64_t>(opened.st_size);
  unsigned char signature[8] = {};
  const bool is_hdf5 = regular && read_at(fd_, reinterpret_cast<std::byte*>(signature), 8, 0) == 0 &&
                       std::memcmp(signature, kHdf5Signature, 8) == 0;
  const auto refuse = [&](const std::string& why) {
    ::close(fd_);
    fd_ = -1;
    throw StorageError(why);
  };
  if (!regular) {
    refuse("cannot open " + quoted(path_) + ": it is not a regular file (a directory, FIFO or device)" +
           advice("; give the path of a file written by joblet::dump"));
  }
  if (!for_user && opened.st_nlink > 1) refuse("cannot use " + quoted(path_) + ": " + unusable_file(opened));
  if (!is_hdf5) {
    refuse(quoted(path_) + " is not an HDF5 file (" + std::to_string(size) + " bytes without HDF5's signature)" +
           advice(": joblet::load reads files written by joblet::dump"));
  }
  file_size_ = size;
  FooterTail tail{};
  const bool has_footer = size >= sizeof tail &&
                          read_at(fd_, reinterpret_cast<std::byte*>(&tail), sizeof tail, size - sizeof tail) == 0 &&
                          std::memcmp(tail.magic, kFooterMagic, sizeof kFooterMagic) == 0;
  if (has_footer) {
    if (tail.version != kFooterVersion) {
      refuse(quoted(path_) + " was written by a newer joblet (file footer version " + std::to_string(tail.version) +
             "); this joblet reads version " + std::to_string(kFooterVersion) + advice(": upgrade joblet to read it"));
    }
    const std::uint64_t room = size - sizeof tail;
    const bool sized = tail.end <= room && tail.region_count <= (room - tail.end) / sizeof(Region) &&
                       tail.end + tail.region_count * sizeof(Region) == room;
    std::vector<Region> regions(sized ? tail.region_count : 0);
    Hash128 checksum;
    const bool intact =
        sized &&
        read_at(fd_, reinterpret_cast<std::byte*>(regions.data()), regions.size() * sizeof(Region), tail.end) == 0 &&
        valid_regions(regions, tail.end) && footer_checksum(fd_, tail.end, regions, checksum) == 0 &&
        checksum == Hash128{tail.checksum_high, tail.checksum_low};
    if (!intact) {
      refuse(quoted(path_) +
             " is damaged: its structure does not match the checksum joblet wrote with it "
             "(a changed or corrupted file)" +
             advice("; write it again"));
    }
    file_size_ = tail.end;
  } else if (require_footer) {
    refuse(quoted(path_) + (for_user ? " is not a complete file written by joblet::dump (it has no joblet footer): "
                                       "another program's HDF5 file (read its datasets with "
                                       "joblet::SharedArray(path, dataset)), or a file truncated while being "
                                       "written or copied"
                                     : " has no joblet footer: it was cut short or changed by another program"));
  }
  auto lock = h5::lock();
  h5::Id fapl = h5::file_access();
  // HDF5 opens files by name (for a cache companion, one resolved through the directory joblet
  // opened); what it opened is then checked to be the file checked above. (Not
  // /proc/self/fd/<file>: HDF5 resolves that link, which fails once the file was replaced.)
  const std::filesystem::path& name = opened_as.empty() ? path_ : opened_as;
  const hid_t file = H5Fopen(name.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (file < 0) {
    const std::string why = h5::error_text();
    if (why.find("truncated") != std::string::npos) {
      refuse(quoted(path_) + " is truncated (" + why + "): it was cut short while being written or copied" +
             advice("; write it again"));
    }
    struct stat now {};
    if (::stat(name.c_str(), &now) != 0 || now.st_ino != opened.st_ino || now.st_dev != opened.st_dev) {
      ::close(fd_);
      fd_ = -1;
      throw FileReplaced(quoted(path_) + " was replaced or removed while being opened");
    }
    refuse("cannot open " + quoted(path_) + " as an HDF5 file (damaged?): " + why);
  }
  // HDF5 opened the path again: it must be the file just checked (not one renamed over it since).
  void* handle = nullptr;
  struct stat parsed {};
  const bool same = H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) >= 0 && handle != nullptr &&
                    fstat(*static_cast<int*>(handle), &parsed) == 0 && parsed.st_ino == opened.st_ino &&
                    parsed.st_dev == opened.st_dev;
  if (!same) {
    H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    ::close(fd_);
    fd_ = -1;
    throw FileReplaced(quoted(path_) + " was replaced while being opened; open it again");
  }
  file_ = h5::Id(file, H5Fclose);
}

ArrayFileReader::~ArrayFileReader() {
  if (fd_ >= 0) ::close(fd_);
  if (file_) {
    auto lock = h5::lock();
    file_.reset();
  }
}

std::optional<std::string> ArrayFileReader::root_string(const char* name, std::size_t max_size) const {
  auto lock = h5::lock();
  return h5::read_string_attribute(file_.get(), name, max_size);
}

std::optional<std::uint64_t> ArrayFileReader::root_uint(const char* name) const {
  auto lock = h5::lock();
  return h5::read_uint_attribute(file_.get(), name);
}

namespace {

struct VisitedLinks {
  std::map<haddr_t, std::vector<std::string>> datasets;  // by the address of the object
  std::vector<haddr_t> order;                            // of first appearance
  std::vector<std::string> groups;
};

herr_t visit_link(hid_t group, const char* name, const H5L_info_t* info, void* data) {
  auto& visited = *static_cast<VisitedLinks*>(data);
  if (info->type != H5L_TYPE_HARD) return 0;  // soft and external links name nothing of this file's
  H5O_info_t object{};
  if (H5Oget_info_by_name2(group, name, &object, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return 0;
  if (object.type == H5O_TYPE_GROUP) {
    visited.groups.emplace_back(name);
  } else if (object.type == H5O_TYPE_DATASET) {
    auto& names = visited.datasets[info->u.address];
    if (names.empty()) visited.order.push_back(info->u.address);
    names.emplace_back(name);
  }
  return 0;
}

VisitedLinks visit_links(hid_t file) {
  VisitedLinks visited;
  visited.groups.emplace_back();
  if (H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, visit_link, &visited) < 0) H5Eclear2(H5E_DEFAULT);
  return visited;
}

}  // namespace

std::vector<std::vector<std::string>> ArrayFileReader::dataset_names() const {
  auto lock = h5::lock();
  VisitedLinks visited = visit_links(file_.get());
  std::vector<std::vector<std::string>> names;
  for (haddr_t address : visited.order) names.push_back(std::move(visited.datasets[address]));
  return names;
}

std::vector<std::string> ArrayFileReader::group_names() const {
  auto lock = h5::lock();
  return visit_links(file_.get()).groups;
}

std::string ArrayFileReader::compression_of(const std::string& name) const {
  const std::string where = "dataset '" + name + "' of " + quoted(path_);
  auto lock = h5::lock();
  h5::Id dataset = h5::make(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose, "cannot open " + where);
  h5::Id dcpl = h5::make(H5Dget_create_plist(dataset.get()), H5Pclose, "cannot read " + where);
  std::string description;
  bool shuffled = false;
  const int filters = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0, config = 0;
    unsigned values[8] = {};
    std::size_t count = 8;
    char filter_name[64] = {};
    const H5Z_filter_t filter = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &count, values,
                                               sizeof filter_name, filter_name, &config);
    if (filter == H5Z_FILTER_DEFLATE) {
      description = "deflate level " + std::to_string(count > 0 ? values[0] : 0);
    } else if (filter == H5Z_FILTER_SZIP) {
      description = "szip";
    } else if (filter == H5Z_FILTER_SHUFFLE) {
      shuffled = true;
    } else if (filter != H5Z_FILTER_FLETCHER32 && filter >= 0) {
      description = filter_name[0] != '\0' ? filter_name : "filter " + std::to_string(filter);
    }
  }
  if (!description.empty() && shuffled) description += ", shuffled";
  return description;
}

namespace {

struct AttributeTexts {
  std::vector<std::pair<std::string, std::string>> values;
};

template <class T>
std::string shortest(T value) {
  char text[64];
  const auto end = std::to_chars(text, text + sizeof text, value).ptr;
  return std::string(text, end);
}

std::string attribute_text(hid_t attribute) {
  h5::Id type(H5Aget_type(attribute), H5Tclose);
  h5::Id space(H5Aget_space(attribute), H5Sclose);
  if (!type || !space || H5Sget_simple_extent_npoints(space.get()) != 1) return "(not a single value)";
  if (H5Tget_class(type.get()) == H5T_STRING && H5Tis_variable_str(type.get()) <= 0) {
    std::string text(H5Tget_size(type.get()), '\0');
    if (text.size() > 4096 || H5Aread(attribute, type.get(), text.data()) < 0) return "(unreadable string)";
    text.resize(std::strlen(text.c_str()));
    return "\"" + text + "\"";
  }
  const auto dtype = h5::dtype_from(type.get());
  if (!dtype) return "(" + h5::describe_type(type.get()) + ")";
  alignas(16) unsigned char bytes[16] = {};
  if (H5Aread(attribute, type.get(), bytes) < 0) return "(unreadable)";
  // The value of type T at byte `at`, written as to_chars writes it (shortest for floats).
  const auto part = [&bytes]<class T>(T, std::size_t at = 0) {
    T value{};
    std::memcpy(&value, bytes + at, sizeof value);
    return shortest(value);
  };
  switch (*dtype) {
    case DType::boolean:
      return bytes[0] != 0 ? "true" : "false";
    case DType::int8:
      return part(std::int8_t{});
    case DType::int16:
      return part(std::int16_t{});
    case DType::int32:
      return part(std::int32_t{});
    case DType::int64:
      return part(std::int64_t{});
    case DType::uint8:
      return part(std::uint8_t{});
    case DType::uint16:
      return part(std::uint16_t{});
    case DType::uint32:
      return part(std::uint32_t{});
    case DType::uint64:
      return part(std::uint64_t{});
    case DType::float32:
      return part(float{});
    case DType::float64:
      return part(double{});
    case DType::complex64:
      return "(" + part(float{}) + ", " + part(float{}, sizeof(float)) + ")";
    case DType::complex128:
      return "(" + part(double{}) + ", " + part(double{}, sizeof(double)) + ")";
  }
  return "(unknown)";
}

herr_t collect_attribute(hid_t holder, const char* name, const H5A_info_t*, void* data) {
  if (std::string_view(name).starts_with("joblet_")) return 0;
  const hid_t attribute = H5Aopen(holder, name, H5P_DEFAULT);
  if (attribute < 0) return 0;
  h5::Id opened(attribute, H5Aclose);
  static_cast<AttributeTexts*>(data)->values.emplace_back(name, attribute_text(attribute));
  return 0;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ArrayFileReader::attributes_of(const std::string& path) const {
  auto lock = h5::lock();
  AttributeTexts texts;
  const hid_t group = H5Gopen2(file_.get(), path.empty() ? "/" : path.c_str(), H5P_DEFAULT);
  if (group < 0) {
    H5Eclear2(H5E_DEFAULT);
    return {};
  }
  h5::Id opened(group, H5Gclose);
  hsize_t index = 0;
  if (H5Aiterate2(group, H5_INDEX_NAME, H5_ITER_INC, &index, collect_attribute, &texts) < 0) H5Eclear2(H5E_DEFAULT);
  return texts.values;
}

DatasetInfo ArrayFileReader::dataset(const std::string& name) const {
  const std::string where = "dataset '" + name + "' of " + quoted(path_);
  auto lock = h5::lock();
  const hid_t id = H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT);
  if (id < 0) {
    H5Eclear2(H5E_DEFAULT);
    throw StorageError(quoted(path_) + " has no dataset '" + name +
                       "' (check the name, e.g. with h5ls; dump files keep arrays under arrays/<n>)");
  }
  h5::Id dataset(id, H5Dclose);
  DatasetInfo info;
  {
    h5::Id type = h5::make(H5Dget_type(dataset.get()), H5Tclose, "cannot read " + where);
    const auto dtype = h5::dtype_from(type.get());
    if (!dtype) {
      throw StorageError(where + " holds " + h5::describe_type(type.get()) +
                         ", which no NDArray element type matches (bool, little-endian integers, float32, float64, "
                         "h5py's complex64 and complex128)");
    }
    info.dtype = *dtype;
  }
  {
    h5::Id space = h5::make(H5Dget_space(dataset.get()), H5Sclose, "cannot read " + where);
    const H5S_class_t kind = H5Sget_simple_extent_type(space.get());
    if (kind == H5S_SIMPLE) {
      const int rank = H5Sget_simple_extent_ndims(space.get());
      if (rank < 0 || static_cast<std::size_t>(rank) > kMaxRank) throw StorageError(where + " has an invalid rank");
      std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
      H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
      info.shape.assign(dims.begin(), dims.end());
    } else if (kind != H5S_SCALAR) {
      throw StorageError(where + " has no elements at all (a null dataspace), so it is no array");
    }
  }
  try {
    info.nbytes = checked_array_bytes(info.shape, dtype_size(info.dtype));
  } catch (const cereal::Exception&) {
    throw StorageError(where + " claims shape " + describe_shape(info.shape) + ", larger than any memory");
  }
  h5::Id dcpl = h5::make(H5Dget_create_plist(dataset.get()), H5Pclose, "cannot read " + where);
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  bool deflate_only = true;
  if (layout == H5D_CONTIGUOUS) {
    // External raw data would make joblet read other files than the one it was given.
    if (H5Pget_external_count(dcpl.get()) != 0) throw StorageError(where + " keeps its data in external files");
    const haddr_t offset = H5Dget_offset(dataset.get());
    if (offset != HADDR_UNDEF) {
      if (offset > file_size_ || info.nbytes > file_size_ - offset) {
        throw StorageError(where + " claims " + std::to_string(info.nbytes) + " bytes at offset " +
                           std::to_string(offset) + " but the file has only " + std::to_string(file_size_) +
                           " bytes: it is truncated or damaged");
      }
      info.offset = offset;
    } else {
      H5Eclear2(H5E_DEFAULT);
    }
  } else if (layout == H5D_CHUNKED) {
    const int filters = H5Pget_nfilters(dcpl.get());
    info.compressed = filters > 0;
    for (int i = 0; i < filters; ++i) {
      unsigned flags = 0;
      std::size_t count = 0;
      const H5Z_filter_t filter =
          H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &count, nullptr, 0, nullptr, nullptr);
      if (filter != H5Z_FILTER_DEFLATE && filter != H5Z_FILTER_SHUFFLE && filter != H5Z_FILTER_FLETCHER32) {
        deflate_only = false;
      }
    }
  } else if (layout != H5D_COMPACT) {
    throw StorageError(where + " is a virtual dataset, which joblet does not read");
  }
  if (!info.offset) {
    // HDF5 will produce every byte: bound what a damaged or hostile file can make it allocate.
    const std::uint64_t stored = H5Dget_storage_size(dataset.get());
    const bool beyond_memory = info.nbytes > physical_memory();
    const bool beyond_ratio = info.compressed && deflate_only && info.nbytes / kMaxDeflateRatio > stored + kChunkBytes;
    if (beyond_memory || beyond_ratio) {
      throw StorageError(where + " claims shape " + describe_shape(info.shape) + " (" + std::to_string(info.nbytes) +
                         " bytes) from " + std::to_string(stored) +
                         " stored bytes, more than it can hold or this machine's memory: it is damaged");
    }
    // Storage never written (no chunks, or a contiguous dataset HDF5 never allocated) reads as
    // fill values: bytes the file does not hold. A little of that is a dataset left partly
    // unwritten; more would make a tiny file expand into gigabytes of memory.
    const std::uint64_t written = layout == H5D_CHUNKED   ? written_chunk_bytes(dataset.get(), dcpl.get(), info)
                                  : layout == H5D_COMPACT ? info.nbytes
                                                          : 0;
    if (info.nbytes > written + kChunkBytes) {
      throw StorageError(where + " claims shape " + describe_shape(info.shape) + " (" + std::to_string(info.nbytes) +
                         " bytes) but the file holds only " + std::to_string(written) +
                         " bytes of it (its storage was never written): it is damaged or incomplete");
    }
  }
  if (auto text = h5::read_string_attribute(dataset.get(), kChecksumAttribute, 64)) {
    info.checksum = Hash128::from_hex(*text);
  }
  return info;
}

std::string ArrayFileReader::read_bytes(const std::string& name, std::size_t max_size) const {
  const DatasetInfo info = dataset(name);
  if (info.dtype != DType::uint8 || info.shape.size() != 1) {
    throw StorageError("dataset '" + name + "' of " + quoted(path_) + " is not a one-dimensional uint8 dataset");
  }
  if (info.nbytes > max_size) {
    throw StorageError("dataset '" + name + "' of " + quoted(path_) + " claims " + std::to_string(info.nbytes) +
                       " bytes, more than it can hold");
  }
  std::string bytes(info.nbytes, '\0');
  read(name, info, bytes.data(), false);
  return bytes;
}

void ArrayFileReader::read(const std::string& name, const DatasetInfo& info, void* destination, bool verify) const {
  if (info.nbytes == 0) return;
  const std::string where = "dataset '" + name + "' of " + quoted(path_);
  if (info.offset) {
    auto* data = static_cast<std::byte*>(destination);
    Hasher hasher;
    const bool hashing = verify && info.checksum;
    for (std::size_t done = 0; done < info.nbytes; done += kPiece) {
      const std::size_t size = std::min(kPiece, info.nbytes - done);
      if (const int error = read_at(fd_, data + done, size, *info.offset + done); error != 0) {
        throw StorageError("cannot read " + where + ": " +
                           (error == ENODATA ? std::string("the file was cut short meanwhile") : std::strerror(error)));
      }
      if (hashing) hasher.update_bytes(data + done, size);
    }
    if (hashing && hasher.digest() != *info.checksum) throw StorageError(checksum_mismatch(where));
    return;
  }
  auto lock = h5::lock();
  h5::Id dataset = h5::make(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose, "cannot read " + where);
  h5::Id type = h5::file_type(info.dtype);
  h5::check(H5Dread(dataset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, destination), "cannot read " + where);
}

std::shared_ptr<const FileMapping> ArrayFileReader::map(bool copy_on_write) {
  if (!mapping_ || mapping_->copy_on_write() != copy_on_write) {
    mapping_ = std::make_shared<const FileMapping>(fd_, file_size_, copy_on_write, path_.string());
  }
  return mapping_;
}

OpenedArray ArrayFileReader::open_array(const std::string& name, const DatasetInfo& info, MmapMode mode, bool verify) {
  // A misaligned offset (another program's file) would make misaligned elements: read those.
  const bool mappable = info.offset && *info.offset % dtype_size(info.dtype) == 0 && info.nbytes > 0;
  if (mode != MmapMode::none && mappable) {
    const bool copy_on_write = mode == MmapMode::copy_on_write;
    auto mapping = map(copy_on_write);
    std::byte* data = mapping->data() + *info.offset;
    if (verify && info.checksum && hash_bytes(data, info.nbytes) != *info.checksum) {
      throw StorageError(checksum_mismatch("dataset '" + name + "' of " + quoted(path_)));
    }
    return {std::move(mapping), data, copy_on_write};
  }
  void* data = nullptr;
  auto buffer = allocate_array_buffer(info.nbytes, data, false);
  read(name, info, data, verify);
  return {std::move(buffer), data, true};
}

}  // namespace joblet::detail
