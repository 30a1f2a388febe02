// dump() / load(): round trips of many value shapes, memory-mapping (read-only and
// copy-on-write), compression, files that must be refused, SharedArray, and peak memory.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <array>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "joblet/dump.hpp"
#include "joblet/shared_array.hpp"
#include "support.hpp"

namespace {

using joblet::DumpOptions;
using joblet::LoadOptions;
using joblet::MmapMode;
using joblet::NDArray;
using joblet::SharedArray;
using joblet::testing::TempDir;

template <class T>
NDArray<T> iota_array(std::vector<std::size_t> shape, T start = T{}) {
  auto array = NDArray<T>::uninitialized(std::move(shape));
  T value = start;
  for (T& x : array.mutable_span()) x = value++;
  return array;
}

struct Simulation {
  std::string label;
  int steps = 0;
  NDArray<double> field;
  std::vector<float> energies;
  std::map<std::string, NDArray<std::int32_t>> counts;
  std::optional<NDArray<std::uint8_t>> mask;
  std::vector<std::string> notes;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(label, steps, field, energies, counts, mask, notes);
  }
  bool operator==(const Simulation&) const = default;
};

Simulation make_simulation() {
  Simulation s;
  s.label = "ising 64x64";
  s.steps = 1000;
  s.field = iota_array<double>({64, 64}, 0.5);
  s.energies = {1.0f, -2.5f, 3.25f};
  s.counts["up"] = iota_array<std::int32_t>({3, 2, 2});
  s.counts["down"] = NDArray<std::int32_t>({0});
  s.mask = NDArray<std::uint8_t>({5}, 1);
  s.notes = {"a", "bc"};
  return s;
}

template <class T>
void expect_round_trip(const T& value, const std::filesystem::path& path, const DumpOptions& options = {}) {
  joblet::dump(value, path, options);
  for (MmapMode mode : {MmapMode::none, MmapMode::read_only, MmapMode::copy_on_write}) {
    SCOPED_TRACE(static_cast<int>(mode));
    EXPECT_EQ(joblet::load<T>(path, {.mmap_mode = mode}), value);
  }
}

TEST(Dump, RoundTripsManyValueShapes) {
  TempDir dir;
  const auto path = dir / "value.h5";
  expect_round_trip(42, path);
  expect_round_trip(std::string("no arrays at all"), path);
  expect_round_trip(iota_array<double>({2, 3, 4}), path);
  expect_round_trip(NDArray<float>({}, 3.5f), path);  // rank 0
  expect_round_trip(NDArray<double>({0, 7}), path);   // empty
  expect_round_trip(NDArray<bool>({4}, true), path);  // h5py's bool
  expect_round_trip(iota_array<std::uint64_t>({100}), path);
  expect_round_trip(iota_array<std::int16_t>({2, 2, 2, 2, 2}), path);
  expect_round_trip(std::vector<double>{1.0, 2.0, 3.0}, path);
  expect_round_trip(std::vector<int>{}, path);
  expect_round_trip(std::vector<NDArray<double>>{iota_array<double>({3}), NDArray<double>({2, 2}, 1.0)}, path);
  expect_round_trip(std::make_tuple(1, iota_array<char>({3}, 'a'), std::string("x")), path);
  expect_round_trip(std::array<double, 3>{1, 2, 3}, path);
  expect_round_trip(std::unordered_map<int, std::vector<double>>{{1, {1.5}}, {2, {}}}, path);
  expect_round_trip(std::variant<int, NDArray<double>>(iota_array<double>({4})), path);
  expect_round_trip(make_simulation(), path);
}

TEST(Dump, CompressedFilesRoundTrip) {
  TempDir dir;
  const Simulation value = make_simulation();
  for (int level : {1, 6, 9}) expect_round_trip(value, dir / "deflate.h5", {.compress = level});
  expect_round_trip(value, dir / "noshuffle.h5", {.compress = 3, .shuffle = false});
  expect_round_trip(value, dir / "szip.h5", {.compress = 1, .compressor = joblet::Compressor::szip});
  // Chunks cut along the first axis with a partial last chunk, and along a later axis.
  expect_round_trip(iota_array<double>({300, 700, 3}), dir / "rows.h5", {.compress = 1});
  expect_round_trip(iota_array<float>({3, 300000}), dir / "columns.h5", {.compress = 2});
  expect_round_trip(iota_array<std::int16_t>({5, 1, 400000}), dir / "columns16.h5", {.compress = 9});
  // Compression pays on smooth data: the file is smaller than the array.
  NDArray<double> smooth({1 << 16});
  for (std::size_t i = 0; i < smooth.size(); ++i) smooth.mutable_at(i) = std::floor(static_cast<double>(i) / 64);
  joblet::dump(smooth, dir / "smooth.h5", {.compress = 3});
  EXPECT_LT(std::filesystem::file_size(dir / "smooth.h5"), smooth.nbytes() / 4);
  EXPECT_EQ(joblet::load<NDArray<double>>(dir / "smooth.h5"), smooth);
}

TEST(Dump, InvalidOptionsAndPathsAreErrors) {
  TempDir dir;
  EXPECT_THROW(joblet::dump(1, dir / "x.h5", {.compress = 10}), joblet::ConfigError);
  EXPECT_THROW(joblet::dump(1, dir / "x.h5", {.compress = -1}), joblet::ConfigError);
  try {
    joblet::dump(1, dir / "missing" / "x.h5");
    FAIL();
  } catch (const joblet::StorageError& e) {
    EXPECT_NE(e.message().find("does not exist"), std::string::npos) << e.message();
  }
  // A file where the directory should be is in the way, not missing.
  std::ofstream(dir / "plain") << "a file";  // closed at the end of the statement
  try {
    joblet::dump(1, dir / "plain" / "x.h5");
    FAIL();
  } catch (const joblet::StorageError& e) {
    EXPECT_NE(e.message().find("is not a usable directory"), std::string::npos) << e.message();
    EXPECT_EQ(e.message().find("does not exist"), std::string::npos) << e.message();
  }
  std::filesystem::remove(dir / "plain");
  // Nothing is left behind by failed writes; a successful one leaves exactly its file.
  joblet::dump(iota_array<double>({10}), dir / "x.h5", {.fsync = true});
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(Dump, ReplacesFilesAtomically) {
  TempDir dir;
  const auto path = dir / "x.h5";
  joblet::dump(iota_array<double>({1000}), path);
  auto mapped = joblet::load<NDArray<double>>(path, {.mmap_mode = MmapMode::read_only});
  joblet::dump(NDArray<double>({1000}, -1.0), path);
  // The old mapping still shows the old file (renamed over, not rewritten in place).
  EXPECT_EQ(mapped(999), 999.0);
  EXPECT_EQ(joblet::load<NDArray<double>>(path)(999), -1.0);
}

TEST(Mmap, ReadOnlyMapsWithoutReadingAndRefusesWrites) {
  TempDir dir;
  const auto path = dir / "x.h5";
  const auto original = iota_array<double>({256, 256});
  joblet::dump(original, path);
  auto mapped = joblet::load<NDArray<double>>(path, {.mmap_mode = MmapMode::read_only});
  EXPECT_TRUE(mapped.is_mapped());
  EXPECT_FALSE(mapped.writable());
  EXPECT_EQ(mapped.mapped_file(), path.string());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(mapped.data()) % 64, 0u);  // aligned in the file
  EXPECT_EQ(mapped, original);
  try {
    mapped.mutable_at(0, 0) = 1;
    FAIL();
  } catch (const joblet::StorageError& e) {
    EXPECT_NE(e.message().find("copy_on_write"), std::string::npos) << e.message();
  }
  EXPECT_THROW((void)mapped.mutable_data(), joblet::StorageError);
  // Views keep the mapping alive after the file is gone.
  NDArray<double> rows = mapped.slice(10, 20);
  mapped = {};
  std::filesystem::remove(path);
  EXPECT_EQ(rows(0, 1), original(10, 1));
  EXPECT_FALSE(rows.writable());
}

TEST(Mmap, CopyOnWriteNeverChangesTheFile) {
  TempDir dir;
  const auto path = dir / "x.h5";
  joblet::dump(iota_array<int>({1000}), path);
  auto first = joblet::load<NDArray<int>>(path, {.mmap_mode = MmapMode::copy_on_write});
  auto second = joblet::load<NDArray<int>>(path, {.mmap_mode = MmapMode::copy_on_write});
  EXPECT_TRUE(first.is_mapped());
  EXPECT_TRUE(first.writable());
  first.mutable_at(5) = -5;
  EXPECT_EQ(first(5), -5);
  EXPECT_EQ(second(5), 5);
  EXPECT_EQ(joblet::load<NDArray<int>>(path)(5), 5);
  EXPECT_EQ(joblet::load<NDArray<int>>(path, {.mmap_mode = MmapMode::read_only, .verify = true})(5), 5);
}

TEST(Mmap, LoadingAMappedFileReadsNothing) {
  TempDir dir;
  const auto path = dir / "big.h5";
  {
    const NDArray<double> big({std::size_t{32} << 20}, 1.0);  // 256 MiB
    joblet::dump(big, path);
  }
  const long before = joblet::testing::resident_kib();
  auto mapped = joblet::load<NDArray<double>>(path, {.mmap_mode = MmapMode::read_only});
  EXPECT_LT(joblet::testing::resident_kib() - before, 16 * 1024);  // O(1): the 256 MiB stay on disk until touched
  EXPECT_EQ(mapped(mapped.size() - 1), 1.0);
}

TEST(Mmap, CompressedFilesWarnAndLoadIntoMemory) {
  TempDir dir;
  const auto path = dir / "z.h5";
  const auto original = iota_array<double>({1000});
  joblet::dump(std::make_pair(original, original), path, {.compress = 3});
  joblet::testing::LogCapture log;
  auto loaded = joblet::load<std::pair<NDArray<double>, NDArray<double>>>(path, {.mmap_mode = MmapMode::read_only});
  EXPECT_EQ(log.warnings("cannot be memory-mapped"), 1);  // once per load, not per array
  EXPECT_FALSE(loaded.first.is_mapped());
  EXPECT_TRUE(loaded.first.writable());
  EXPECT_EQ(loaded.first, original);
  EXPECT_EQ(loaded.second, original);
}

// --- files load() must refuse, cleanly --------------------------------------------------------

std::string load_error(const std::function<void()>& load) {
  try {
    load();
  } catch (const joblet::StorageError& e) {
    return e.message();
  }
  return "(no error)";
}

TEST(BadFiles, MissingNotHdf5AndForeignFilesAreNamed) {
  TempDir dir;
  EXPECT_NE(load_error([&] { joblet::load<int>(dir / "none.h5"); }).find("No such file"), std::string::npos);
  joblet::testing::write_text(dir / "text.h5", "hello, this is not HDF5");
  EXPECT_NE(load_error([&] { joblet::load<int>(dir / "text.h5"); }).find("not an HDF5 file"), std::string::npos);
  joblet::testing::write_text(dir / "empty.h5", "");
  EXPECT_NE(load_error([&] { joblet::load<int>(dir / "empty.h5"); }).find("not an HDF5 file"), std::string::npos);
  SharedArray::write(dir / "foreign.h5", iota_array<double>({4}));  // HDF5, but no dump file
  EXPECT_NE(
      load_error([&] { joblet::load<NDArray<double>>(dir / "foreign.h5"); }).find("not one written by joblet::dump"),
      std::string::npos);
}

TEST(BadFiles, TruncatedFilesAreRefusedWithoutCrashing) {
  TempDir dir;
  const auto path = dir / "x.h5";
  joblet::dump(iota_array<double>({1 << 17}), path);  // 1 MiB of data at the end of the file
  const auto size = std::filesystem::file_size(path);
  for (auto keep : {size - 1, size / 2, std::uintmax_t{4096}, std::uintmax_t{100}, std::uintmax_t{9}}) {
    std::filesystem::copy_file(path, dir / "cut.h5", std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(dir / "cut.h5", keep);
    for (MmapMode mode : {MmapMode::none, MmapMode::read_only}) {
      const std::string error = load_error([&] { joblet::load<NDArray<double>>(dir / "cut.h5", {.mmap_mode = mode}); });
      EXPECT_NE(error, "(no error)") << keep;
      EXPECT_TRUE(error.find("truncated") != std::string::npos || error.find("damaged") != std::string::npos)
          << keep << ": " << error;
    }
  }
}

TEST(BadFiles, ATypeOtherThanTheDumpedOneIsRefused) {
  TempDir dir;
  joblet::dump(iota_array<double>({4}), dir / "x.h5");
  const std::string error = load_error([&] { joblet::load<NDArray<float>>(dir / "x.h5"); });
  EXPECT_NE(error.find("joblet::NDArray<double>"), std::string::npos) << error;
  EXPECT_NE(error.find("joblet::NDArray<float>"), std::string::npos) << error;
  EXPECT_NE(load_error([&] { joblet::load<std::vector<double>>(dir / "x.h5"); }), "(no error)");
}

TEST(BadFiles, ChecksumsCatchDamagedArrays) {
  TempDir dir;
  const auto path = dir / "x.h5";
  joblet::dump(iota_array<double>({1 << 16}), path);
  const auto size = std::filesystem::file_size(path);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(size - 1000));
    file.put('\x7f');
  }
  EXPECT_NO_THROW(joblet::load<NDArray<double>>(path));  // not checked unless asked
  EXPECT_NE(load_error([&] { joblet::load<NDArray<double>>(path, {.verify = true}); }).find("checksum"),
            std::string::npos);
  EXPECT_NE(load_error([&] {
              joblet::load<NDArray<double>>(path, {.mmap_mode = MmapMode::read_only, .verify = true});
            }).find("checksum"),
            std::string::npos);
}

// --- SharedArray --------------------------------------------------------------------------------

TEST(SharedArrayTest, WritesMapsAndTravelsAsAFewBytes) {
  TempDir dir;
  const auto original = iota_array<float>({100, 3});
  const SharedArray handle = SharedArray::write(dir / "a.h5", original, "field");
  EXPECT_EQ(handle.dtype(), joblet::DType::float32);
  EXPECT_EQ(handle.shape(), (std::vector<std::size_t>{100, 3}));
  EXPECT_EQ(handle.nbytes(), original.nbytes());
  const std::string bytes = joblet::encode(handle);
  EXPECT_LT(bytes.size(), 200u);
  const auto received = joblet::decode<SharedArray>(bytes);
  NDArray<float> view = received.get<float>();
  EXPECT_TRUE(view.is_mapped());
  EXPECT_FALSE(view.writable());
  EXPECT_EQ(view, original);
  EXPECT_EQ(received.get<float>().data(), view.data());  // one mapping per handle and mode
  NDArray<float> mine = received.get<float>(MmapMode::copy_on_write);
  mine.mutable_at(0, 0) = -1;
  EXPECT_EQ(view(0, 0), 0.0f);
  NDArray<float> copy = received.get<float>(MmapMode::none);
  EXPECT_FALSE(copy.is_mapped());
  EXPECT_EQ(copy, original);
  // In another process, from the bytes alone.
  const pid_t child =
      joblet::testing::fork_child([&] { return joblet::decode<SharedArray>(bytes).get<float>() == original ? 0 : 1; });
  EXPECT_EQ(joblet::testing::wait_child(child), 0);
}

TEST(SharedArrayTest, OpensLazilyAndChecksWhatItFinds) {
  TempDir dir;
  SharedArray missing(dir / "none.h5", "data");  // nothing opened yet
  EXPECT_THROW(missing.get<double>(), joblet::StorageError);
  const SharedArray handle = SharedArray::write(dir / "a.h5", iota_array<double>({10}));
  EXPECT_THROW(handle.get<float>(), joblet::StorageError);
  SharedArray::write(dir / "a.h5", iota_array<double>({11}));  // replaced by another shape
  const std::string error = load_error([&] { handle.get<double>(); });
  EXPECT_NE(error.find("replaced"), std::string::npos) << error;
  EXPECT_EQ(SharedArray(dir / "a.h5").shape(), std::vector<std::size_t>{11});  // described from the file
  // A dump file's datasets are shared arrays too.
  joblet::dump(make_simulation(), dir / "sim.h5");
  EXPECT_EQ(SharedArray(dir / "sim.h5", "arrays/0").get<double>(), make_simulation().field);
  EXPECT_THROW(SharedArray(dir / "sim.h5", "nothing").get<double>(), joblet::StorageError);
  const std::string no_dataset = load_error([&] { SharedArray(dir / "sim.h5", "nothing").get<double>(); });
  EXPECT_NE(no_dataset.find("h5ls"), std::string::npos) << no_dataset;  // how to find the right name
}

TEST(SharedArrayTest, ADefaultHandleSaysHowToMakeOne) {
  const SharedArray nothing;
  const std::string error = load_error([&] { nothing.get<double>(); });
  EXPECT_NE(error.find("default-constructed"), std::string::npos) << error;
  EXPECT_NE(error.find("SharedArray(file, dataset)"), std::string::npos) << error;
}

// --- peak memory ------------------------------------------------------------------------------

// Whether this build runs under AddressSanitizer (gcc defines the macro, clang has the feature).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

// The claim: dump writes an array without a copy of it, and load needs the array it returns and
// little more. The bound is what a plain array of the same size costs in this very build, plus
// 32 MiB: in a normal build that is the array's own bytes (checked below), under AddressSanitizer
// also its shadow memory (an eighth of the array) and allocator, which any array pays and which
// says nothing about load.
TEST(PeakMemory, DumpAndLoadNeedLittleBeyondTheArray) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer's shadow memory counts in the resident set";
#endif
  TempDir dir;
  const auto path = dir / "big.h5";
  constexpr std::size_t kBytes = std::size_t{256} << 20;
  constexpr long kArrayKib = static_cast<long>(kBytes / 1024);
  constexpr long kSlackKib = 32 * 1024;
  // The reference: a plain array of the same size, made and filled in the measured body.
  const long plain_added = joblet::testing::peak_added_kib([] {},
                                                           [] {
                                                             NDArray<double> plain({kBytes / sizeof(double)}, 2.0);
                                                             if (plain(0) != 2.0) std::abort();
                                                           });
  EXPECT_GE(plain_added, kArrayKib);
  const long build_overhead = plain_added > kArrayKib ? plain_added - kArrayKib : 0;
  if (!kAddressSanitizer) {
    EXPECT_LE(build_overhead, 1024) << "a plain array of " << kArrayKib << " KiB added " << plain_added << " KiB";
  }
  NDArray<double> big;
  const long dump_added = joblet::testing::peak_added_kib(
      [&] {
        big = NDArray<double>({kBytes / sizeof(double)}, 2.0);  // touched: resident before the dump
      },
      [&] { joblet::dump(big, path); });
  EXPECT_GE(dump_added, 0);
  EXPECT_LE(dump_added, kSlackKib);
  const long load_added = joblet::testing::peak_added_kib([] {},
                                                          [&] {
                                                            auto loaded = joblet::load<NDArray<double>>(path);
                                                            if (loaded(0) != 2.0) std::abort();
                                                          });
  EXPECT_GE(load_added, kArrayKib);
  EXPECT_LE(load_added, kArrayKib + build_overhead + kSlackKib)
      << "a plain array of the same size added " << plain_added << " KiB in this build";
  std::printf("[ peak     ] plain array %ld KiB, dump %ld KiB, load %ld KiB (array %ld KiB)\n", plain_added, dump_added,
              load_added, kArrayKib);
}

}  // namespace
