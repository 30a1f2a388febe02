// Files that load() must refuse, made with the HDF5 API the way a damaged disk, an older or
// newer joblet, or a hostile writer could: every one is a StorageError that names the problem,
// never a crash or a huge allocation. Plus the result folder's housekeeping.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "array_file.hpp"
#include "io.hpp"
#include "joblet/codec.hpp"
#include "joblet/detail/result_folder.hpp"
#include "joblet/dump.hpp"
#include "joblet/shared_array.hpp"
#include "support.hpp"

namespace {

using joblet::NDArray;
using joblet::testing::TempDir;

std::string load_error(const std::filesystem::path& path, joblet::MmapMode mode = joblet::MmapMode::none,
                       bool verify = false) {
  try {
    joblet::load<NDArray<double>>(path, {.mmap_mode = mode, .verify = verify});
  } catch (const joblet::StorageError& e) {
    return e.message();
  }
  return "(no error)";
}

// Opens a dump file for surgery; closes it when done and gives it a matching footer, as a
// writer that knows joblet's format would: so that what lies behind the footer check is tested.
class Surgery {
 public:
  explicit Surgery(const std::filesystem::path& path)
      : path_(path), file_(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)) {
    EXPECT_GE(file_, 0);
  }
  ~Surgery() {
    H5Fclose(file_);
    joblet::detail::seal_hdf5_file(path_);
  }
  hid_t file() const { return file_; }

  void set_version(std::uint32_t version) {
    const hid_t attribute = H5Aopen(file_, "joblet_format_version", H5P_DEFAULT);
    H5Awrite(attribute, H5T_NATIVE_UINT32, &version);
    H5Aclose(attribute);
  }
  // Replaces a dataset by one of this type and shape; `allocated`: contiguous and written,
  // else chunks (when `chunk` > 0) or contiguous space that was never written.
  void replace(const char* name, hid_t type, std::vector<hsize_t> dims, bool allocated, hsize_t chunk = 0,
               bool compressed = true) {
    H5Ldelete(file_, name, H5P_DEFAULT);
    const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk > 0) {
      H5Pset_chunk(dcpl, 1, &chunk);
      if (compressed) H5Pset_deflate(dcpl, 6);
    }
    const hid_t dataset = H5Dcreate2(file_, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (allocated) {
      std::vector<char> zeros(H5Sget_simple_extent_npoints(space) * H5Tget_size(type));
      H5Dwrite(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros.data());
    }
    H5Dclose(dataset);
    H5Pclose(dcpl);
    H5Sclose(space);
  }
  // The encoding (/value) as stored, and a replacement for it.
  std::string encoding() {
    const hid_t dataset = H5Dopen2(file_, "value", H5P_DEFAULT);
    const hid_t space = H5Dget_space(dataset);
    std::string bytes(static_cast<std::size_t>(H5Sget_simple_extent_npoints(space)), '\0');
    H5Dread(dataset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    H5Sclose(space);
    H5Dclose(dataset);
    return bytes;
  }
  void set_encoding(const std::string& bytes) {
    H5Ldelete(file_, "value", H5P_DEFAULT);
    const hsize_t size = bytes.size();
    const hid_t space = H5Screate_simple(1, &size, nullptr);
    const hid_t dataset = H5Dcreate2(file_, "value", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(dataset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    H5Dclose(dataset);
    H5Sclose(space);
  }

 private:
  std::filesystem::path path_;
  hid_t file_;
};

// An NDArray<double>'s encoding in a dump file: kind, dtype, rank, extents, reference.
std::string array_encoding(std::vector<std::uint64_t> shape, const std::string& reference) {
  std::string bytes{char(1), char(joblet::DType::float64), char(shape.size())};
  bytes.append(reinterpret_cast<const char*>(shape.data()), shape.size() * 8);
  const std::uint64_t length = reference.size();
  bytes.append(reinterpret_cast<const char*>(&length), 8);
  return bytes + reference;
}

std::filesystem::path dumped(const TempDir& dir, std::size_t n = 1000) {
  const auto path = dir / "x.h5";
  joblet::dump(NDArray<double>({n}, 1.0), path);
  return path;
}

TEST(BadDumpFiles, OtherFormatVersions) {
  TempDir dir;
  const auto path = dumped(dir);
  Surgery(path).set_version(2);
  EXPECT_NE(load_error(path).find("newer joblet"), std::string::npos) << load_error(path);
  Surgery(path).set_version(0);
  EXPECT_NE(load_error(path).find("does not read"), std::string::npos) << load_error(path);
}

TEST(BadDumpFiles, DatasetsOfAnotherDtypeOrShape) {
  TempDir dir;
  const auto path = dumped(dir);
  Surgery(path).replace("arrays/0", H5T_STD_I32LE, {1000}, true);
  EXPECT_NE(load_error(path).find("holds int32 elements"), std::string::npos) << load_error(path);
  Surgery(path).replace("arrays/0", H5T_IEEE_F64LE, {999}, true);
  EXPECT_NE(load_error(path).find("has shape (999,)"), std::string::npos) << load_error(path);
  Surgery(path).replace("arrays/0", H5T_IEEE_F64BE, {1000}, true);
  EXPECT_NE(load_error(path).find("big-endian"), std::string::npos) << load_error(path);
}

TEST(BadDumpFiles, HugeClaimedSizesAllocateNothing) {
  TempDir dir;
  const auto path = dumped(dir);
  const hsize_t huge = hsize_t{1} << 40;  // 8 TiB of doubles
  {
    Surgery surgery(path);
    surgery.replace("arrays/0", H5T_IEEE_F64LE, {huge}, false);
    surgery.set_encoding(array_encoding({huge}, "0"));
  }
  EXPECT_NE(load_error(path).find("more than it can hold"), std::string::npos) << load_error(path);
  EXPECT_NE(load_error(path, joblet::MmapMode::read_only).find("more than it can hold"), std::string::npos);
  // Compressed chunks that could never expand to what the shape claims (2 GiB from nothing).
  const hsize_t big = hsize_t{1} << 28;
  {
    Surgery surgery(path);
    surgery.replace("arrays/0", H5T_IEEE_F64LE, {big}, false, 1 << 17);
    surgery.set_encoding(array_encoding({big}, "0"));
  }
  EXPECT_NE(load_error(path).find("more than it can hold"), std::string::npos) << load_error(path);
  // An encoding whose own shape overflows.
  Surgery(path).set_encoding(array_encoding({huge, huge}, "0"));
  EXPECT_NE(load_error(path).find("does not hold a valid"), std::string::npos) << load_error(path);
}

// A few kilobytes of file whose dataset claims 2 GiB it never wrote (no chunks, or contiguous
// space never allocated) would read as 2 GiB of fill values: refused before anything is
// allocated, through load() and through SharedArray alike.
TEST(BadDumpFiles, StorageNeverWrittenIsNotReadAsFillValues) {
  TempDir dir;
  const hsize_t big = hsize_t{1} << 28;
  for (const bool chunked : {true, false}) {
    SCOPED_TRACE(chunked ? "chunked" : "contiguous");
    const auto path = dumped(dir);
    {
      Surgery surgery(path);
      surgery.replace("arrays/0", H5T_IEEE_F64LE, {big}, false, chunked ? 1 << 17 : 0, /*compressed=*/false);
      surgery.set_encoding(array_encoding({big}, "0"));
    }
    EXPECT_LT(std::filesystem::file_size(path), 64u << 10);
    EXPECT_NE(load_error(path).find("never written"), std::string::npos) << load_error(path);
    joblet::SharedArray shared(path, "arrays/0");
    try {
      (void)shared.get<double>(joblet::MmapMode::none);
      ADD_FAILURE() << "a SharedArray of a dataset that was never written loaded";
    } catch (const joblet::StorageError& e) {
      EXPECT_NE(e.message().find("never written"), std::string::npos) << e.message();
    }
  }
}

TEST(BadDumpFiles, EncodingsNamingOtherDatasets) {
  TempDir dir;
  const auto path = dumped(dir);
  Surgery(path).set_encoding(array_encoding({1000}, "../value"));
  EXPECT_NE(load_error(path).find("damaged"), std::string::npos) << load_error(path);
  Surgery(path).set_encoding(array_encoding({1000}, "7"));
  EXPECT_NE(load_error(path).find("has no dataset 'arrays/7'"), std::string::npos) << load_error(path);
  Surgery(path).set_encoding(std::string("\x01\x0b", 2));
  EXPECT_NE(load_error(path).find("does not hold a valid"), std::string::npos) << load_error(path);
}

TEST(BadDumpFiles, ExternalStorageIsNeverFollowed) {
  TempDir dir;
  const auto path = dumped(dir, 4);
  {
    Surgery surgery(path);
    H5Ldelete(surgery.file(), "arrays/0", H5P_DEFAULT);
    const hsize_t dims = 4;
    const hid_t space = H5Screate_simple(1, &dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(dcpl, "/etc/hostname", 0, 32);
    H5Dclose(H5Dcreate2(surgery.file(), "arrays/0", H5T_IEEE_F64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    H5Pclose(dcpl);
    H5Sclose(space);
  }
  EXPECT_NE(load_error(path).find("external files"), std::string::npos) << load_error(path);
}

TEST(BadDumpFiles, GarbageAfterTheSignature) {
  TempDir dir;
  std::string bytes("\x89HDF\r\n\x1a\n", 8);
  std::mt19937 random(7);
  for (int i = 0; i < 4096; ++i) bytes += static_cast<char>(random());
  joblet::testing::write_text(dir / "x.h5", bytes);
  EXPECT_NE(load_error(dir / "x.h5").find("no joblet footer"), std::string::npos) << load_error(dir / "x.h5");
  // Given a footer that matches, the garbage reaches HDF5, which refuses it.
  bytes += std::string(40, '\0');
  joblet::testing::write_text(dir / "x.h5", bytes);
  {
    const int fd = ::open((dir / "x.h5").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    close(fd);
  }
  EXPECT_THROW(joblet::detail::seal_hdf5_file(dir / "x.h5"), joblet::StorageError);  // HDF5 cannot open it
}

// Damage to the structure HDF5 parses is caught by the footer before HDF5 sees it; damage to
// array bytes by the arrays' own checksums.
TEST(BadDumpFiles, TheFooterGuardsStructureAndChecksumsGuardData) {
  TempDir dir;
  const auto path = dumped(dir, 1 << 14);
  std::string bytes = joblet::testing::read_text(path);
  std::string damaged = bytes;
  damaged[100] = static_cast<char>(damaged[100] ^ 0x10);  // in the superblock / root object header
  joblet::testing::write_text(dir / "meta.h5", damaged);
  EXPECT_NE(load_error(dir / "meta.h5").find("is damaged"), std::string::npos) << load_error(dir / "meta.h5");
  EXPECT_THROW(joblet::SharedArray(dir / "meta.h5", "arrays/0").get<double>(), joblet::StorageError);
  const double one = 1.0;
  const auto at = bytes.rfind(std::string(reinterpret_cast<const char*>(&one), sizeof one));
  damaged = bytes;
  damaged[at] = static_cast<char>(damaged[at] ^ 0x10);  // in the array's data
  joblet::testing::write_text(dir / "data.h5", damaged);
  EXPECT_NO_THROW(joblet::load<NDArray<double>>(dir / "data.h5"));
  EXPECT_NE(load_error(dir / "data.h5", joblet::MmapMode::none, true).find("checksum"), std::string::npos);
  // Without its footer (cut off), the file is refused before HDF5 reads it.
  joblet::testing::write_text(dir / "cut.h5", bytes.substr(0, bytes.size() - 48));
  EXPECT_NE(load_error(dir / "cut.h5").find("truncated"), std::string::npos) << load_error(dir / "cut.h5");
}

// Single damaged bytes anywhere in a small dump file: load() either works (the byte was in the
// data, and the load does not verify) or throws StorageError. Each load runs in a child, so a
// crash (or a sanitizer's report, exit status 1) would be seen as one.
TEST(BadDumpFiles, DamagedBytesNeverCrash) {
  TempDir dir;
  const auto path = dumped(dir, 64);
  const std::string original = joblet::testing::read_text(path);
  std::mt19937 random(11);
  int refused = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string damaged = original;
    const std::size_t at = random() % damaged.size();
    damaged[at] = static_cast<char>(damaged[at] ^ (1 + random() % 255));
    joblet::testing::write_text(dir / "damaged.h5", damaged);
    const pid_t child = joblet::testing::fork_child([&] {
      try {
        joblet::load<NDArray<double>>(dir / "damaged.h5", {.verify = trial % 2 == 0});
        return 0;
      } catch (const joblet::StorageError&) {
        return 2;
      }
    });
    const int status = joblet::testing::wait_child(child);
    EXPECT_TRUE(status == 0 || status == 2) << "byte " << at << ": status " << status;
    refused += status == 2;
  }
  EXPECT_GT(refused, 0);
}

TEST(ArrayFileInternals, RootIntegersAreU32) {
  TempDir dir;
  const auto path = dir / "attributes.h5";
  {
    joblet::detail::ArrayFileWriter writer(path, {});
    writer.set_root_attribute("largest", std::numeric_limits<std::uint32_t>::max());
    writer.finish();
  }
  joblet::detail::ArrayFileReader reader(path, /*require_footer=*/true);
  EXPECT_EQ(reader.root_uint("largest"), std::optional<std::uint64_t>(std::numeric_limits<std::uint32_t>::max()));
}

TEST(ResultFolderInternals, FoldersOfDeadProcessesAreRemoved) {
  TempDir root;
  const pid_t dead = joblet::testing::fork_child([] { return 0; });
  joblet::testing::wait_child(dead);
  const auto abandoned =
      root / ("joblet-" + joblet::detail::host_name_for_files() + "-" + std::to_string(dead) + "-0-0");
  std::filesystem::create_directories(abandoned);
  joblet::testing::write_text(abandoned / "1-0.h5", "left behind");
  const auto live = root / ("joblet-" + joblet::detail::host_name_for_files() + "-1-0-0");  // init: alive
  std::filesystem::create_directories(live);
  {
    joblet::detail::ResultFolder folder(1 << 20, root.path().string());
    EXPECT_EQ(std::filesystem::path(folder.path()).parent_path(), root.path());
  }
  EXPECT_FALSE(std::filesystem::exists(abandoned));
  EXPECT_TRUE(std::filesystem::exists(live));
}

TEST(ResultFolderInternals, ReferencesOutsideTheFolderAreRefused) {
  TempDir root;
  joblet::detail::ResultFolder folder(0, root.path().string());
  joblet::detail::ResultReader reader(folder);
  const std::size_t shape[1] = {1};
  for (const char* reference :
       {"../../etc/passwd:0", "1-0.h5", "1-0.h5:x", "/etc/passwd.h5:0", "../x.h5:0", ".hidden.h5:0", "1-0.h5:0"}) {
    EXPECT_THROW(reader.open(reference, joblet::DType::float64, shape, 8), joblet::SerializationError) << reference;
  }
}

// --- the array context travels with the archive ---------------------------------------------

// Keeps the arrays it is given in memory and names them "0", "1", ...
class MemoryWriter final : public joblet::detail::ArrayWriter {
 public:
  explicit MemoryWriter(std::size_t threshold) : ArrayWriter(threshold) {}
  std::optional<std::string> store(const joblet::detail::ArrayBlock& block) override {
    const auto* bytes = static_cast<const char*>(block.data);
    arrays.emplace_back(bytes, bytes + block.nbytes);
    return std::to_string(arrays.size() - 1);
  }
  std::vector<std::string> arrays;
};

class MemoryReader final : public joblet::detail::ArrayReader {
 public:
  explicit MemoryReader(const MemoryWriter& writer) : writer_(writer) {}
  joblet::detail::OpenedArray open(std::string_view reference, joblet::DType, std::span<const std::size_t>,
                                   std::size_t nbytes) override {
    void* data = nullptr;
    auto buffer = joblet::detail::allocate_array_buffer(nbytes, data, false);
    std::memcpy(data, find(reference, nbytes).data(), nbytes);
    return {std::move(buffer), data, true};
  }
  void read(std::string_view reference, joblet::DType, std::span<const std::size_t> shape, std::size_t nbytes,
            Destination destination) override {
    void* data = destination.allocate(destination.context, shape[0]);
    std::memcpy(data, find(reference, nbytes).data(), nbytes);
  }

 private:
  const std::string& find(std::string_view reference, std::size_t nbytes) const {
    const std::string& array = writer_.arrays.at(std::stoul(std::string(reference)));
    if (array.size() != nbytes) throw joblet::SerializationError("wrong size");
    return array;
  }
  const MemoryWriter& writer_;
};

// A value whose encoding runs another, plain encoding of its own array in the middle (as a
// Memory-cached call inside a task does): the inner one must not see the outer's writer.
struct EncodesWhileEncoded {
  NDArray<double> array;
  std::vector<float> samples;
  std::string inner;

  template <class Archive>
  void save(Archive& ar) const {
    ar(array, joblet::encode(array), samples);
  }
  template <class Archive>
  void load(Archive& ar) {
    ar(array, inner, samples);
  }
};

TEST(ArrayContext, BelongsToTheOneEncodingItIsGiven) {
  EncodesWhileEncoded value{NDArray<double>({64, 8}, 0.5), {}, {}};
  value.array.mutable_data()[3 * 8 + 4] = 2.5;
  value.samples.assign(1000, 1.5f);
  value.samples[999] = -1.0f;
  MemoryWriter writer(100);
  std::string bytes;
  joblet::detail::encode_into(value, bytes, &writer);
  ASSERT_EQ(writer.arrays.size(), 2u);  // the array and the vector; not the inner encoding's copy
  EXPECT_LT(bytes.size(), joblet::encode(value.array).size() + 200);  // one inline copy: the inner one

  MemoryReader reader(writer);
  const auto back = joblet::detail::decode_from<EncodesWhileEncoded>(
      std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), &reader);
  EXPECT_EQ(back.array, value.array);
  EXPECT_EQ(back.samples, value.samples);
  EXPECT_EQ(joblet::decode<NDArray<double>>(back.inner), value.array);  // inline: decodes without a reader

  // The same bytes without the reader: the references are refused, whatever else is active.
  EXPECT_THROW(joblet::decode<EncodesWhileEncoded>(bytes), joblet::SerializationError);
  // Under its threshold, or with no writer at all, everything stays inline.
  MemoryWriter high(1 << 20);
  std::string inline_bytes;
  joblet::detail::encode_into(value, inline_bytes, &high);
  EXPECT_TRUE(high.arrays.empty());
  EXPECT_EQ(joblet::decode<EncodesWhileEncoded>(inline_bytes).samples, value.samples);
}

}  // namespace
