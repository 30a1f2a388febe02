// Memory with array results: large arrays go to a companion dump file next to the entry, and a
// hit with an mmap mode maps them in O(1).

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "joblet/memory.hpp"
#include "support.hpp"

namespace {

using joblet::Memory;
using joblet::MmapMode;
using joblet::NDArray;
using joblet::testing::TempDir;

constexpr std::size_t kLarge = (std::size_t{2} << 20) / sizeof(double);  // above the 1 MiB threshold

int g_calls = 0;
NDArray<double> field(int seed, std::size_t n) {
  ++g_calls;
  NDArray<double> a({n});
  for (std::size_t i = 0; i < n; ++i) a.mutable_at(i) = seed + static_cast<double>(i);
  return a;
}

struct Output {
  std::string name;
  NDArray<float> big;
  std::vector<double> series;
  NDArray<int> small;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(name, big, series, small);
  }
  bool operator==(const Output&) const = default;
};

Output output(int seed) {
  ++g_calls;
  return {"out" + std::to_string(seed), NDArray<float>({1024, 1024}, 0.5f * seed), std::vector<double>(kLarge, seed),
          NDArray<int>({3}, seed)};
}

std::vector<joblet::EntryInfo> entries(const Memory& memory) { return memory.store()->list(); }

TEST(MemoryArrays, LargeArraysGoToACompanionDumpFile) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("field", field, {.version = "1"});
  g_calls = 0;
  const NDArray<double> computed = cached(1, kLarge);
  const auto listed = entries(memory);
  ASSERT_EQ(listed.size(), 1u);
  ASSERT_FALSE(listed[0].companion.empty());
  EXPECT_EQ(listed[0].companion, listed[0].path.string() + ".h5");
  EXPECT_GT(listed[0].size, computed.nbytes());  // the entry's size counts its companion
  // The companion is an ordinary dump file: joblet::load, h5py and h5dump read it.
  EXPECT_EQ(joblet::load<NDArray<double>>(listed[0].companion), computed);
  const NDArray<double> hit = cached(1, kLarge);
  EXPECT_EQ(g_calls, 1);
  EXPECT_EQ(hit, computed);
  EXPECT_FALSE(hit.is_mapped());  // default mmap_mode: read into memory (and checksummed)
  EXPECT_EQ(cached.statistics().hits, 1u);
}

TEST(MemoryArrays, SmallArraysStayInTheEntry) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("field", field, {.version = "1"});
  cached(1, 100);
  const auto listed = entries(memory);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_TRUE(listed[0].companion.empty());
  EXPECT_EQ(std::distance(std::filesystem::recursive_directory_iterator(dir.path()), {}), 3);  // dirs + entry
  EXPECT_EQ(cached(1, 100), field(1, 100));
}

TEST(MemoryArrays, MmapHitsMapInConstantMemory) {
  TempDir dir;
  Memory memory(dir.path(), {.mmap_mode = MmapMode::read_only});
  const std::size_t n = (std::size_t{256} << 20) / sizeof(double);
  auto cached = memory.cache("field", field, {.version = "1"});
  cached(3, n);  // computed and stored
  g_calls = 0;
  const long before = joblet::testing::resident_kib();
  const NDArray<double> hit = cached(3, n);
  EXPECT_LT(joblet::testing::resident_kib() - before, 16 * 1024);  // nothing of the 256 MiB was read
  EXPECT_EQ(g_calls, 0);
  EXPECT_TRUE(hit.is_mapped());
  EXPECT_FALSE(hit.writable());
  EXPECT_EQ(hit.mapped_file(), entries(memory)[0].companion);
  EXPECT_EQ(hit(n - 1), 3 + static_cast<double>(n - 1));
  // Copy-on-write hits are writable and leave the cache as it was.
  Memory private_pages(dir.path(), {.mmap_mode = MmapMode::copy_on_write});
  NDArray<double> mine = private_pages.cache("field", field, {.version = "1"})(3, n);
  mine.mutable_at(0) = -1;
  EXPECT_EQ(cached(3, n)(0), 3.0);
}

TEST(MemoryArrays, StructuredResultsAndVectors) {
  TempDir dir;
  for (MmapMode mode : {MmapMode::none, MmapMode::read_only}) {
    Memory memory(dir.path(), {.mmap_mode = mode});
    auto cached = memory.cache("output", output, {.version = "1"});
    g_calls = 0;
    EXPECT_EQ(cached(2), output(2));
    EXPECT_EQ(cached(2), output(2));
    EXPECT_EQ(g_calls, 3);  // computed once, and twice by the comparisons
    memory.clear();
  }
}

TEST(MemoryArrays, DamagedOrMissingCompanionsAreRecomputed) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("field", field, {.version = "1"});
  cached(1, kLarge);
  const std::string companion = entries(memory)[0].companion.string();
  // A flipped byte in the array (element 1000 holds 1001.0): caught by its checksum on a
  // (non-mapped) hit.
  {
    std::string bytes = joblet::testing::read_text(companion);
    const double element = 1001.0;
    const auto at = bytes.find(std::string(reinterpret_cast<const char*>(&element), sizeof element));
    ASSERT_NE(at, std::string::npos);
    bytes[at] = static_cast<char>(bytes[at] ^ 1);
    joblet::testing::write_text(companion, bytes);
  }
  joblet::testing::LogCapture log;
  g_calls = 0;
  EXPECT_EQ(cached(1, kLarge), field(1, kLarge));
  EXPECT_EQ(g_calls, 2);  // recomputed (and once more by the check)
  EXPECT_EQ(log.warnings("checksum"), 1);
  EXPECT_EQ(cached.statistics().corrupt_entries, 1u);
  // Gone: recomputed and stored again.
  std::filesystem::remove(companion);
  g_calls = 0;
  EXPECT_EQ(cached(1, kLarge), field(1, kLarge));
  EXPECT_EQ(g_calls, 2);
  EXPECT_TRUE(std::filesystem::exists(companion));
  // Another entry's companion (same key, another write): refused by its binding.
  const std::string saved = joblet::testing::read_text(companion);
  cached.call(1, kLarge);  // a new entry and a new companion
  joblet::testing::write_text(companion, saved);
  g_calls = 0;
  EXPECT_EQ(cached(1, kLarge), field(1, kLarge));
  EXPECT_EQ(g_calls, 2);
}

TEST(MemoryArrays, ClearPruneAndForgetRemoveCompanions) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("field", field, {.version = "1"});
  cached(1, kLarge);
  cached(2, kLarge);
  const auto report = memory.reduce_size({.items_limit = 1});
  EXPECT_EQ(report.removed.size(), 1u);
  EXPECT_EQ(entries(memory).size(), 1u);
  EXPECT_GT(report.removed_bytes, kLarge * sizeof(double));
  EXPECT_EQ(memory.clear(), 1u);
  EXPECT_EQ(std::distance(std::filesystem::recursive_directory_iterator(dir.path()), {}), 0);
  // An orphan companion (its writer died before publishing the entry) is a leftover.
  cached(3, kLarge);
  const auto companion = entries(memory)[0].companion;
  std::filesystem::remove(entries(memory)[0].path);
  const auto leftovers = memory.store()->list({.include_leftovers = true});
  ASSERT_EQ(leftovers.size(), 1u);
  EXPECT_EQ(leftovers[0].kind, joblet::EntryKind::temporary);
  EXPECT_EQ(leftovers[0].path, companion);
  // A young one may be a live writer's, about to publish its entry: clear leaves it alone.
  memory.clear();
  EXPECT_TRUE(std::filesystem::exists(companion));
  std::filesystem::last_write_time(companion, std::filesystem::file_time_type::clock::now() - std::chrono::hours(1));
  memory.clear();
  EXPECT_FALSE(std::filesystem::exists(companion));
}

TEST(MemoryArrays, ShelvedResultsReadTheirCompanion) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("output", output, {.version = "1"});
  const auto shelved = cached.call_and_shelve(4);
  const auto moved = joblet::decode<joblet::ShelvedResult<Output>>(joblet::encode(shelved));
  EXPECT_EQ(moved.get(), output(4));
}

TEST(MemoryArrays, OtherProcessesHitTheSameEntries) {
  TempDir dir;
  Memory memory(dir.path(), {.mmap_mode = MmapMode::read_only});
  auto cached = memory.cache("field", field, {.version = "1"});
  cached(5, kLarge);
  const pid_t child = joblet::testing::fork_child([&] {
    g_calls = 0;
    const auto hit = cached(5, kLarge);
    return g_calls == 0 && hit.is_mapped() && hit(10) == 15.0 ? 0 : 1;
  });
  EXPECT_EQ(joblet::testing::wait_child(child), 0);
}

}  // namespace
