// The cache failing must never lose the user's result: unwritable directories and full
// filesystems (real tmpfs mounts where the test may mount them).

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "joblet/memory.hpp"
#include "support.hpp"

namespace {

using joblet::Memory;
using joblet::testing::LogCapture;
using joblet::testing::TempDir;
using joblet::testing::TmpfsMount;

std::size_t regular_files_under(const std::filesystem::path& root) {
  std::size_t count = 0;
  for (const auto& item : std::filesystem::recursive_directory_iterator(root)) count += item.is_regular_file();
  return count;
}

TEST(Failure, AnUnwritableCacheWarnsOnceAndKeepsResults) {
  // Root ignores permission bits, so root gets a read-only filesystem instead.
  std::optional<TmpfsMount> read_only;
  std::optional<TempDir> locked;
  std::filesystem::path location;
  if (geteuid() == 0) {
    read_only.emplace("1m", /*read_only=*/true);
    if (!read_only->ok()) GTEST_SKIP() << "cannot mount a read-only tmpfs here: " << read_only->error();
    location = read_only->path() / "cache";
  } else {
    locked.emplace();
    std::filesystem::permissions(locked->path(),
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    location = locked->path() / "cache";
  }
  LogCapture log;
  for (bool compute_once : {false, true}) {
    Memory memory(location, {.compute_once = compute_once});
    int calls = 0;
    auto cached = memory.cache("unwritable", [&calls](int x) { return ++calls, std::vector<int>(100, x); });
    EXPECT_EQ(cached(4), std::vector<int>(100, 4));
    EXPECT_EQ(cached(4), std::vector<int>(100, 4));
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(cached.statistics().store_failures, 2u);
    EXPECT_EQ(cached.statistics().misses, 2u);
    // call_and_shelve falls back to carrying the value.
    EXPECT_EQ(cached.call_and_shelve(5).get(), std::vector<int>(100, 5));
  }
  EXPECT_EQ(log.warnings("result is returned but not cached"), 1) << log.text();
  EXPECT_EQ(log.warnings(geteuid() == 0 ? "read-only" : "permission"), log.warnings()) << log.text();
}

TEST(Failure, AFullFilesystemKeepsResultsAndLeavesNothingBehind) {
  TmpfsMount small("1m");
  if (!small.ok()) GTEST_SKIP() << "cannot mount a tmpfs here: " << small.error();
  Memory memory(small.path() / "cache");
  LogCapture log;
  auto big = memory.cache("big", [](int n) { return std::vector<char>(static_cast<std::size_t>(n) << 20, 'b'); });
  const auto value = big(2);
  EXPECT_EQ(value.size(), 2u << 20);
  EXPECT_EQ(big.statistics().store_failures, 1u);
  EXPECT_EQ(log.warnings("No space left on device"), 1) << log.text();
  // The temporary file went with the failure: nothing partial, and the space is free again.
  EXPECT_EQ(regular_files_under(small.path()), 0u);
  auto small_result = memory.cache("small", [](int x) { return x; });
  small_result(1);
  EXPECT_TRUE(small_result.check_call_in_cache(1));
}

TEST(Failure, AReadOnlyCacheStillServesHits) {
  TmpfsMount mount("1m");
  if (!mount.ok()) GTEST_SKIP() << "cannot mount a tmpfs here: " << mount.error();
  // touch_interval 0: every hit tries to refresh the entry's mtime, which fails here, silently.
  Memory memory(mount.path() / "cache", {.store = {.touch_interval = std::chrono::seconds(0)}});
  int calls = 0;
  auto cached = memory.cache("kept", [&calls](int x) { return ++calls, x; });
  cached(1);
  ASSERT_TRUE(mount.remount_read_only());
  LogCapture log;
  EXPECT_EQ(cached(1), 1);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(log.warnings(), 0) << log.text();
}

}  // namespace
