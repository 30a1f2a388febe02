// A cache that others (users, jobs, accidents, attackers) changed: symbolic links where the
// cache keeps directories, entries copied under other keys, hard links, FIFOs, files that claim
// more than they hold. Each gives a miss or an error naming it: never a write or a deletion
// outside the cache, a wrong result, a hang or a giant allocation.

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "joblet/campaign.hpp"
#include "joblet/dump.hpp"
#include "joblet/memory.hpp"
#include "joblet/store.hpp"
#include "support.hpp"

namespace {

namespace fs = std::filesystem;
using joblet::Memory;
using joblet::Store;
using joblet::testing::LogCapture;
using joblet::testing::TempDir;

int g_calls = 0;
double square(int x) {
  ++g_calls;
  return x * x;
}

// Every file below `directory`, with its size and mtime: what must not change.
std::set<std::string> snapshot(const fs::path& directory) {
  std::set<std::string> files;
  for (const auto& item : fs::recursive_directory_iterator(directory)) {
    struct stat info {};
    lstat(item.path().c_str(), &info);
    files.insert(item.path().string() + " " + std::to_string(info.st_size) + " " + std::to_string(info.st_mtim.tv_sec) +
                 "." + std::to_string(info.st_mtim.tv_nsec));
  }
  return files;
}

// An outside folder holding files that look like the cache's: leftovers, locks, an entry name.
struct Outside {
  TempDir dir;
  Outside() {
    joblet::testing::write_text(dir / ".0123456789abcdef0123456789abcdef.host.1.a.b.tmp", "temporary");
    joblet::testing::write_text(dir / "0123456789abcdef0123456789abcdef.lock", "lock");
    joblet::testing::write_text(dir / "0123456789abcdef0123456789abcdef", "entry-like");
    fs::create_directory(dir / "0c");
    joblet::testing::write_text(dir / "0c" / "0c23456789abcdef0123456789abcdef", "entry-like");
    for (const auto& item : fs::recursive_directory_iterator(dir.path())) {
      joblet::testing::age_file(item.path(), 40 * 86400.0);
    }
  }
};

struct CommandRun {
  int status = -1;
  std::string output;
  long max_rss_kib = 0;
};

// Runs `joblet <arguments>` and measures its peak memory.
CommandRun joblet_command(const std::vector<std::string>& arguments) {
  CommandRun run;
  int fds[2];
  if (pipe(fds) != 0) return run;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    std::vector<char*> argv{const_cast<char*>(JOBLET_CLI)};
    for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
    argv.push_back(nullptr);
    execv(JOBLET_CLI, argv.data());
    _exit(127);
  }
  close(fds[1]);
  char buffer[4096];
  for (ssize_t got; (got = read(fds[0], buffer, sizeof buffer)) > 0;)
    run.output.append(buffer, static_cast<std::size_t>(got));
  close(fds[0]);
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.max_rss_kib = usage.ru_maxrss;
  return run;
}

bool contains(const std::string& text, const std::string& fragment) { return text.find(fragment) != std::string::npos; }

// --- escapes ---------------------------------------------------------------------------------

TEST(HostileCache, ALinkedShardDirectoryIsNeitherWrittenNorFollowed) {
  TempDir dir;
  Outside outside;
  const auto before = snapshot(outside.dir.path());
  Memory memory(dir / "cache");
  auto cached = memory.cache("square", square);
  const auto entry = memory.store()->entry_path("square", cached.key(3));
  fs::create_directories(entry.parent_path().parent_path());
  fs::create_directory_symlink(outside.dir.path(), entry.parent_path());
  LogCapture log;
  g_calls = 0;
  EXPECT_EQ(cached(3), 9.0);
  EXPECT_EQ(cached(3), 9.0);
  EXPECT_EQ(g_calls, 2);  // never cached through the link: computed each time
  EXPECT_GE(log.warnings("symbolic link"), 1) << log.text();
  EXPECT_EQ(snapshot(outside.dir.path()), before);
}

TEST(HostileCache, ALinkedFunctionDirectoryIsNeitherWrittenNorFollowed) {
  TempDir dir;
  Outside outside;
  const auto before = snapshot(outside.dir.path());
  fs::create_directories(dir / "cache");
  fs::create_directory_symlink(outside.dir.path(), dir / "cache" / "square");
  Memory memory(dir / "cache", {.compute_once = true});
  auto cached = memory.cache("square", square);
  g_calls = 0;
  EXPECT_EQ(cached(12), 144.0);
  EXPECT_EQ(g_calls, 1);
  EXPECT_EQ(snapshot(outside.dir.path()), before);
}

TEST(HostileCache, ClearAndPruneNeverRemoveThroughLinks) {
  TempDir dir;
  Outside outside;
  Memory memory(dir / "cache");
  auto cached = memory.cache("square", square);
  cached(1);
  cached(2);
  // A function directory and a shard directory replaced by links to the outside folder.
  fs::create_directory_symlink(outside.dir.path(), dir / "cache" / "linked");
  const auto shard = memory.store()->entry_path("square", cached.key(2)).parent_path();
  fs::remove_all(shard);
  fs::create_directory_symlink(outside.dir.path(), shard);
  const auto before = snapshot(outside.dir.path());

  memory.reduce_size({.items_limit = 0, .leftover_age = std::chrono::seconds(-1)});
  EXPECT_EQ(snapshot(outside.dir.path()), before);
  memory.clear();
  EXPECT_EQ(snapshot(outside.dir.path()), before);
  const std::string cache = (dir / "cache").string();
  auto run = joblet_command({"cache", "prune", "--dir", cache, "--max-items", "0"});
  EXPECT_EQ(snapshot(outside.dir.path()), before) << run.output;
  run = joblet_command({"cache", "clear", "--dir", cache});
  EXPECT_EQ(snapshot(outside.dir.path()), before) << run.output;
  run = joblet_command({"cache", "clear", "--dir", cache, "--function", "linked"});
  EXPECT_EQ(snapshot(outside.dir.path()), before) << run.output;
  // What joblet does not follow, it reports.
  run = joblet_command({"cache", "ls", "--dir", cache});
  EXPECT_TRUE(contains(run.output, "not followed")) << run.output;
  EXPECT_TRUE(contains(run.output, "linked")) << run.output;
  run = joblet_command({"cache", "stats", "--dir", cache});
  EXPECT_TRUE(contains(run.output, "not followed")) << run.output;
}

TEST(HostileCache, CampaignRecordsAreNotWrittenThroughALink) {
  TempDir dir;
  Outside outside;
  const auto before = snapshot(outside.dir.path());
  fs::create_directories(dir / "cache");
  fs::create_directory_symlink(outside.dir.path(), dir / "cache" / ".campaigns");
  const std::vector<joblet::Hash128> keys{joblet::hash_value(1), joblet::hash_value(2)};
  EXPECT_THROW(joblet::record_campaign(dir / "cache", "square", keys), joblet::StorageError);
  EXPECT_TRUE(joblet::campaign_status(dir / "cache").empty());
  EXPECT_EQ(snapshot(outside.dir.path()), before);
}

// --- wrong results ---------------------------------------------------------------------------

TEST(HostileCache, AnEntryCopiedUnderAnotherKeyIsNotServed) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("square", square, {.version = "1"});
  cached(2);
  cached(5);
  const Store& store = *memory.store();
  // 2's entry copied over 5's: valid in every byte, but for another call.
  fs::copy_file(store.entry_path("square", cached.key(2)), store.entry_path("square", cached.key(5)),
                fs::copy_options::overwrite_existing);
  EXPECT_EQ(store.load("square", cached.key(5)).status, joblet::LoadStatus::corrupt);
  EXPECT_FALSE(cached.check_call_in_cache(5));
  LogCapture log;
  g_calls = 0;
  EXPECT_EQ(cached(5), 25.0);
  EXPECT_EQ(g_calls, 1);
  EXPECT_EQ(log.warnings("another call"), 1) << log.text();
  EXPECT_EQ(cached(5), 25.0);  // replaced by its own entry
  EXPECT_EQ(g_calls, 1);
  // The same across functions and versions.
  auto other = memory.cache("other", square, {.version = "1"});
  fs::create_directories(store.entry_path("other", other.key(2)).parent_path());
  fs::copy_file(store.entry_path("square", cached.key(2)), store.entry_path("other", other.key(2)));
  EXPECT_FALSE(other.check_call_in_cache(2));
  g_calls = 0;
  EXPECT_EQ(other(2), 4.0);
  EXPECT_EQ(g_calls, 1);
}

TEST(HostileCache, AHardLinkedEntryIsRefusedAndTheOtherFileUntouched) {
  TempDir dir;
  TempDir elsewhere;
  Memory memory(dir.path(), {.store = {.touch_interval = std::chrono::seconds(0)}});
  auto cached = memory.cache("square", square);
  cached(4);
  const auto entry = memory.store()->entry_path("square", cached.key(4));
  const auto linked = elsewhere / "precious";
  ASSERT_EQ(link(entry.c_str(), linked.c_str()), 0);
  joblet::testing::age_file(linked, 3600);
  const auto before = snapshot(elsewhere.path());
  g_calls = 0;
  EXPECT_EQ(cached(4), 16.0);
  EXPECT_EQ(g_calls, 1);  // refused: recomputed
  EXPECT_EQ(snapshot(elsewhere.path()), before);
  const auto listed = memory.store()->list({.read_metadata = true});
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_TRUE(listed[0].metadata.has_value()) << listed[0].problem;  // republished as a file of its own
}

TEST(HostileCache, ALinkedEntryIsReportedNotFollowed) {
  TempDir dir;
  TempDir elsewhere;
  Memory memory(dir.path());
  auto cached = memory.cache("square", square);
  cached(3);
  const auto entry = memory.store()->entry_path("square", cached.key(3));
  fs::rename(entry, elsewhere / "entry");
  fs::create_symlink(elsewhere / "entry", entry);
  const auto before = snapshot(elsewhere.path());
  auto run = joblet_command({"cache", "ls", "--dir", dir.path().string()});
  EXPECT_TRUE(contains(run.output, "symbolic link")) << run.output;
  run = joblet_command({"cache", "stats", "--dir", dir.path().string()});
  EXPECT_TRUE(contains(run.output, "1 unreadable")) << run.output;
  g_calls = 0;
  EXPECT_EQ(cached(3), 9.0);
  EXPECT_EQ(g_calls, 1);
  EXPECT_EQ(snapshot(elsewhere.path()), before);
}

// --- hangs -----------------------------------------------------------------------------------

TEST(HostileCache, FifosAnywhereNeverHang) {
  TempDir dir;
  Memory memory(dir / "cache", {.compute_once = true});
  auto cached = memory.cache("square", square);
  const Store& store = *memory.store();
  // An entry that is a FIFO: a miss, replaced.
  const auto entry = store.entry_path("square", cached.key(7));
  fs::create_directories(entry.parent_path());
  ASSERT_EQ(mkfifo(entry.c_str(), 0600), 0);
  EXPECT_EQ(cached(7), 49.0);
  EXPECT_TRUE(fs::is_regular_file(entry));
  // A lock that is a FIFO: not a lock joblet made, taken over.
  const auto lock_path = fs::path(store.entry_path("square", cached.key(8)).string() + ".lock");
  fs::create_directories(lock_path.parent_path());
  ASSERT_EQ(mkfifo(lock_path.c_str(), 0600), 0);
  EXPECT_EQ(cached(8), 64.0);
  // A campaign record that is a FIFO, or a link to /dev/zero: skipped with a warning.
  fs::create_directories(dir / "cache" / ".campaigns");
  ASSERT_EQ(mkfifo((dir / "cache" / ".campaigns" / "fifo-00000000.campaign").c_str(), 0600), 0);
  fs::create_symlink("/dev/zero", dir / "cache" / ".campaigns" / "zero-00000000.campaign");
  LogCapture log;
  EXPECT_TRUE(joblet::campaign_status(dir / "cache").empty());
  EXPECT_EQ(log.warnings("skipping the campaign record"), 2) << log.text();
  // load() of a FIFO: an error, not a wait for a writer.
  ASSERT_EQ(mkfifo((dir / "pipe.h5").c_str(), 0600), 0);
  EXPECT_THROW(joblet::load<std::vector<double>>(dir / "pipe.h5"), joblet::StorageError);
  // joblet status and joblet cache on all of it.
  const auto status = joblet_command({"status", "--dir", (dir / "cache").string()});
  EXPECT_TRUE(contains(status.output, "skipping")) << status.output;
  const auto listing = joblet_command({"cache", "ls", "-l", "--dir", (dir / "cache").string()});
  EXPECT_EQ(listing.status, 0) << listing.output;
}

// --- giant allocations -----------------------------------------------------------------------

TEST(HostileCache, AnEntryThatClaimsAGigabyteItDoesNotHoldAllocatesNothingLikeIt) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("square", square);
  cached(9);
  const auto entry = memory.store()->entry_path("square", cached.key(9));
  // A few hundred bytes of entry, and a gigabyte of holes after them.
  ASSERT_EQ(truncate(entry.c_str(), off_t{1} << 30), 0);
  const long added = joblet::testing::peak_added_kib([] {},
                                                     [&] {
                                                       g_calls = 0;
                                                       if (cached(9) != 81.0 || g_calls != 1) std::abort();
                                                     });
  EXPECT_GE(added, 0);
  EXPECT_LT(added, 64 * 1024) << "KiB added by a call that read a sparse 1 GiB entry";
  ASSERT_EQ(truncate(entry.c_str(), off_t{1} << 30), 0);  // the child's recomputation replaced it
  const auto show = joblet_command({"cache", "show", "--dir", dir.path().string(), cached.key(9).hex()});
  EXPECT_EQ(show.status, 1) << show.output;
  EXPECT_TRUE(contains(show.output, "unusable")) << show.output;
  EXPECT_LT(show.max_rss_kib, 256 * 1024) << show.output;
}

// --- messages --------------------------------------------------------------------------------

TEST(HostileCache, AFileWhereADirectoryBelongsIsNamed) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("square", square);
  const auto shard = memory.store()->entry_path("square", cached.key(6)).parent_path();
  fs::create_directories(shard.parent_path());
  joblet::testing::write_text(shard, "not a directory");
  LogCapture log;
  EXPECT_EQ(cached(6), 36.0);
  EXPECT_EQ(log.warnings("'" + shard.string() + "' is a file where the cache keeps a directory: remove it"), 1)
      << log.text();
  EXPECT_EQ(log.warnings("point Memory at a directory"), 0) << log.text();
}

TEST(HostileCache, ADirectoryWhereAnEntryBelongsIsRepairedOrNamed) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("square", square);
  // Empty: in the way of nothing, removed.
  const auto entry = memory.store()->entry_path("square", cached.key(10));
  fs::create_directories(entry);
  LogCapture log;
  cached(10);
  EXPECT_TRUE(fs::is_regular_file(entry)) << log.text();
  EXPECT_EQ(log.warnings("cannot publish"), 0) << log.text();
  // Not empty: named, with what to delete; the result is still returned.
  const auto full = memory.store()->entry_path("square", cached.key(11));
  fs::create_directories(full);
  joblet::testing::write_text(full / "keep", "data");
  EXPECT_EQ(cached(11), 121.0);
  EXPECT_EQ(log.warnings("rm -r '" + full.string() + "'"), 1) << log.text();
  const auto listing = joblet_command({"cache", "ls", "-l", "--dir", dir.path().string()});
  EXPECT_TRUE(contains(listing.output, "is a directory, not a file joblet wrote")) << listing.output;
  EXPECT_FALSE(contains(listing.output, "shorter than an entry's header")) << listing.output;
}

TEST(HostileCache, ShowChecksTheCompanionFile) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("big", [](int n) { return std::vector<double>(static_cast<std::size_t>(n), 1.5); });
  cached(300000);  // above the 1 MiB companion threshold
  const auto key = cached.key(300000).hex();
  auto show = joblet_command({"cache", "show", "--dir", dir.path().string(), key});
  EXPECT_EQ(show.status, 0) << show.output;
  EXPECT_TRUE(contains(show.output, "status       ok")) << show.output;
  fs::remove(memory.store()->companion_path("big", cached.key(300000)));
  show = joblet_command({"cache", "show", "--dir", dir.path().string(), key});
  EXPECT_EQ(show.status, 1) << show.output;
  EXPECT_TRUE(contains(show.output, "unusable")) << show.output;
  EXPECT_FALSE(contains(show.output, "ok (")) << show.output;
  EXPECT_FALSE(contains(show.output, "SharedArray")) << show.output;
}

TEST(HostileCache, ClearAndPruneThatCannotRemoveFailLoudly) {
  joblet::testing::TmpfsMount mount("16m");
  if (!mount.ok()) GTEST_SKIP() << "cannot mount a tmpfs here: " << mount.error();
  Memory memory(mount.path() / "cache");
  auto cached = memory.cache("square", square);
  cached(1);
  cached(2);
  ASSERT_TRUE(mount.remount_read_only());
  const std::string cache = (mount.path() / "cache").string();
  auto run = joblet_command({"cache", "clear", "--dir", cache});
  EXPECT_NE(run.status, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "read-only")) << run.output;
  EXPECT_FALSE(contains(run.output, "removed 0 entries of the cache\n")) << run.output;
  run = joblet_command({"cache", "prune", "--dir", cache, "--max-items", "0"});
  EXPECT_NE(run.status, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "could not be removed")) << run.output;
  EXPECT_THROW(memory.clear(), joblet::StorageError);
  EXPECT_EQ(memory.store()->list().size(), 2u);
}

// --- leftovers of killed writers -------------------------------------------------------------

std::string host_for_files() {
  char buffer[256] = {};
  gethostname(buffer, sizeof buffer - 1);
  std::string name;
  for (const char* c = buffer; *c != '\0' && name.size() < 64; ++c) {
    name += std::isalnum(static_cast<unsigned char>(*c)) || *c == '-' ? *c : '_';
  }
  return name;
}

TEST(HostileCache, ALaterRunSweepsTheTemporariesOfItsHostsDeadWriters) {
  TempDir dir;
  const pid_t dead = joblet::testing::fork_child([] { return 0; });
  ASSERT_EQ(joblet::testing::wait_child(dead), 0);
  Memory memory(dir.path());
  auto cached = memory.cache("square", square);
  const auto shard = memory.store()->entry_path("square", cached.key(1)).parent_path();
  const auto other_shard = memory.store()->entry_path("square", cached.key(2)).parent_path();
  fs::create_directories(shard);
  fs::create_directories(other_shard);
  const std::string suffix = "." + host_for_files() + "." + std::to_string(dead) + ".1f.0123456789abcdef.tmp";
  const auto abandoned = other_shard / ("." + cached.key(2).hex() + suffix);
  const auto abandoned_lock = other_shard / ("." + cached.key(2).hex() + ".lock" + suffix);
  const auto live = shard / ("." + cached.key(1).hex() + "." + host_for_files() + "." + std::to_string(getppid()) +
                             ".1f.0123456789abcdef.tmp");
  const auto foreign_host =
      shard / ("." + cached.key(1).hex() + ".elsewhere." + std::to_string(dead) + ".1f.0123456789abcdef.tmp");
  for (const auto& file : {abandoned, abandoned_lock, live, foreign_host}) joblet::testing::write_text(file, "x");
  // A later run of the same function, writing another key than the dead writer's.
  const pid_t run = joblet::testing::fork_child([&] { return cached(1) == 1.0 ? 0 : 1; });
  ASSERT_EQ(joblet::testing::wait_child(run), 0);
  EXPECT_FALSE(fs::exists(abandoned));
  EXPECT_FALSE(fs::exists(abandoned_lock));
  EXPECT_TRUE(fs::exists(live));          // its process lives
  EXPECT_TRUE(fs::exists(foreign_host));  // another host's pid says nothing here
}

}  // namespace
