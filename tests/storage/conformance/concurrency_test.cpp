// Many processes on one cache: no torn entries, writers killed mid-write, compute-once with
// holders that die, stale locks taken over.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "joblet/memory.hpp"
#include "joblet/store.hpp"
#include "support.hpp"

namespace {

using joblet::Memory;
using joblet::MemoryOptions;
using joblet::testing::fork_child;
using joblet::testing::TempDir;
using joblet::testing::wait_child;
using namespace std::chrono_literals;

// A result whose every element depends on the key, so that a torn or mixed-up read shows.
std::vector<std::uint64_t> pattern(int key) {
  std::vector<std::uint64_t> values(8192 + static_cast<std::size_t>(key) * 1000);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<std::uint64_t>(key) * 1'000'003 + i;
  return values;
}

// Appends one byte to `path` (O_APPEND: atomic between processes) to count computations.
void count_computation(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    [[maybe_unused]] auto ignored = ::write(fd, "x", 1);
    ::close(fd);
  }
}

std::size_t computations(const std::filesystem::path& path) {
  return std::filesystem::exists(path) ? std::filesystem::file_size(path) : 0;
}

TEST(Concurrency, ManyProcessesHammeringTheSameKeysNeverSeeATornEntry) {
  TempDir dir;
  constexpr int kChildren = 4;
  constexpr int kCalls = 250;
  constexpr int kKeys = 8;
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(fork_child([&, c] {
      Memory memory(dir.path(), {.store = {.fsync = false}});
      auto cached = memory.cache("hammer", [](int key) { return pattern(key); });
      std::mt19937 random(static_cast<unsigned>(c));
      for (int i = 0; i < kCalls; ++i) {
        const int key = static_cast<int>(random() % kKeys);
        // Forced calls rewrite entries while others read them; one child also prunes.
        const auto value = random() % 3 == 0 ? cached.call(key) : cached(key);
        if (value != pattern(key)) return 1;
        if (c == 0 && i % 25 == 0) memory.reduce_size({.items_limit = 3});
      }
      return cached.statistics().corrupt_entries == 0 ? 0 : 2;
    }));
  }
  // A raw reader walks the store while the others write.
  children.push_back(fork_child([&] {
    joblet::Store store(dir.path());
    for (int round = 0; round < 100; ++round) {
      for (const auto& info : store.list()) {
        const auto loaded = store.load(info.function, info.key);
        if (loaded.status == joblet::LoadStatus::corrupt) return 3;
      }
    }
    return 0;
  }));
  for (pid_t child : children) EXPECT_EQ(wait_child(child), 0);
  joblet::Store store(dir.path());
  for (const auto& info : store.list()) EXPECT_TRUE(store.load(info.function, info.key)) << info.path;
}

TEST(Concurrency, AWriterKilledMidWriteLeavesNoVisiblePartialEntry) {
  TempDir dir;
  joblet::Store store(dir.path(), {.fsync = false});
  constexpr std::size_t kPayload = 16 << 20;
  // The temporary files in the store: a write in progress (or one that a killed writer left).
  const auto temporaries = [&] {
    std::set<std::filesystem::path> paths;
    for (const auto& info : store.list({.include_leftovers = true})) {
      if (info.kind == joblet::EntryKind::temporary) paths.insert(info.path);
    }
    return paths;
  };
  for (int round = 0; round < 6; ++round) {
    // Earlier rounds may have left temporaries: only a new one shows this writer writing.
    const auto left_before = temporaries();
    const std::size_t entries_before = store.list().size();
    const pid_t writer = fork_child([&] {
      std::string payload(kPayload, '\0');
      for (int i = 0;; ++i) {
        const int id = round * 1000 + i;
        std::memset(payload.data(), id % 251, payload.size());
        store.save("big", joblet::hash_value(id), {}, std::as_bytes(std::span<const char>(payload)));
      }
      return 0;
    });
    // Killed while a write is in progress: in its first write, or (odd rounds) in a later one,
    // once it has published an entry.
    const bool after_an_entry = round % 2 == 1;
    const bool writing = joblet::testing::wait_until([&] {
      if (after_an_entry && store.list().size() <= entries_before) return false;
      for (const auto& path : temporaries()) {
        if (!left_before.contains(path)) return true;
      }
      return false;
    });
    EXPECT_TRUE(writing) << "round " << round << ": the writer was never seen writing";
    kill(writer, SIGKILL);
    EXPECT_EQ(wait_child(writer), 128 + SIGKILL);
  }
  std::size_t entries = 0;
  for (const auto& info : store.list({.include_leftovers = true})) {
    if (info.kind != joblet::EntryKind::entry) {
      // What a killed writer leaves is hidden and recognisable as a leftover.
      EXPECT_EQ(info.path.filename().string().front(), '.');
      continue;
    }
    ++entries;
    const auto loaded = store.load(info.function, info.key);
    ASSERT_TRUE(loaded) << info.path << ": " << loaded.problem;
    EXPECT_EQ(loaded.entry->payload().size(), kPayload);
  }
  // Leftovers go with reduce_size once old enough.
  store.reduce_size({.leftover_age = std::chrono::seconds(-1)});
  for (const auto& info : store.list({.include_leftovers = true})) EXPECT_EQ(info.kind, joblet::EntryKind::entry);
  EXPECT_EQ(store.list().size(), entries);
}

TEST(ComputeOnce, OneProcessComputesWhileTheOthersWait) {
  TempDir dir;
  const auto counter = dir.path() / "computed";
  constexpr int kChildren = 4;
  const auto asking = [&](int child) { return dir.path() / ("asking-" + std::to_string(child)); };
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(fork_child([&, c] {
      Memory memory(dir.path() / "cache", {.compute_once = true});
      auto cached = memory.cache("once", [&](int x) {
        count_computation(counter);
        // Every child has come to ask before the result exists: the others wait for this one.
        for (int other = 0; other < kChildren; ++other) {
          if (!joblet::testing::wait_for_file(asking(other))) return -1;
        }
        return x * 2;
      });
      joblet::testing::write_text(asking(c), "yes");
      return cached(21) == 42 ? 0 : 1;
    }));
  }
  for (pid_t child : children) EXPECT_EQ(wait_child(child), 0);
  EXPECT_EQ(computations(counter), 1u);
  // No lock is left behind.
  joblet::Store store(dir.path() / "cache");
  for (const auto& info : store.list({.include_leftovers = true})) EXPECT_EQ(info.kind, joblet::EntryKind::entry);
}

TEST(ComputeOnce, AHolderKilledMidComputeIsTakenOver) {
  TempDir dir;
  const auto counter = dir.path() / "computed";
  const auto started = dir.path() / "started";
  const pid_t parent = getpid();
  const auto compute = [&](int x) {
    count_computation(counter);
    if (getpid() != parent) {
      joblet::testing::write_text(started, "yes");
      joblet::testing::block_until_killed();
    }
    return x + 1;
  };
  const pid_t holder = fork_child([&] {
    Memory memory(dir.path() / "cache", {.compute_once = true});
    memory.cache("killed", compute)(1);
    return 0;
  });
  joblet::testing::wait_for_file(started);
  kill(holder, SIGKILL);
  EXPECT_EQ(wait_child(holder), 128 + SIGKILL);
  // The holder's lock is still there; its pid is dead on this host, so it is taken over at once
  // (the default stale_after of 60 s would otherwise apply).
  Memory memory(dir.path() / "cache", {.compute_once = true});
  auto cached = memory.cache("killed", compute);
  EXPECT_TRUE(std::filesystem::exists(memory.store()->entry_path("killed", cached.key(1)).string() + ".lock"));
  EXPECT_EQ(cached(1), 2);
  EXPECT_EQ(computations(counter), 2u);
  EXPECT_FALSE(std::filesystem::exists(memory.store()->entry_path("killed", cached.key(1)).string() + ".lock"));
}

// A lock left by a process on another host: only its stalled heartbeat shows it is dead.
void plant_foreign_lock(const Memory& memory, const joblet::Hash128& key, const std::string& function) {
  const auto lock = memory.store()->entry_path(function, key).string() + ".lock";
  std::filesystem::create_directories(std::filesystem::path(lock).parent_path());
  joblet::testing::write_text(lock, "joblet compute-once lock\nhost elsewhere\npid 1\ntoken 5\n");
}

// Only the foreign lock's own staleness is judged quickly here: nobody holds it.
const MemoryOptions kQuickLocks{.compute_once = true, .lock = {.stale_after = 0.3s, .heartbeat = 0.1s}};

TEST(ComputeOnce, AStaleLockFromAnotherHostIsTakenOver) {
  TempDir dir;
  Memory memory(dir.path(), kQuickLocks);
  int calls = 0;
  auto cached = memory.cache("foreign", [&calls](int x) { return ++calls, x; });
  plant_foreign_lock(memory, cached.key(9), "foreign");
  EXPECT_EQ(cached(9), 9);
  EXPECT_EQ(calls, 1);
}

// What `joblet status` shows of the tasks being computed: who holds each lock, and whether its
// heartbeat is recent.
TEST(ComputeOnce, LockHolderNamesTheHolderAndWhetherItsHeartbeatIsRecent) {
  TempDir dir;
  const joblet::Store store(dir.path());
  const joblet::Hash128 held{1, 2};
  EXPECT_FALSE(store.lock_holder("f", held));
  {
    const joblet::Claim claim = store.claim("f", held);
    ASSERT_TRUE(claim.lock.held());
    const auto holder = store.lock_holder("f", held);
    ASSERT_TRUE(holder);
    EXPECT_EQ(holder->pid, ::getpid());
    EXPECT_FALSE(holder->host.empty());
    EXPECT_TRUE(holder->live);
  }
  EXPECT_FALSE(store.lock_holder("f", held));  // released

  // Another host's lock whose heartbeat stopped a minute ago: named, with its job, and not live.
  const joblet::Hash128 left{3, 4};
  const auto lock = store.entry_path("f", left).string() + ".lock";
  std::filesystem::create_directories(std::filesystem::path(lock).parent_path());
  joblet::testing::write_text(lock, "joblet compute-once lock\nhost elsewhere\npid 41\njob 77_3\ntoken 5\n");
  const timespec minute_ago[2] = {{::time(nullptr) - 60, 0}, {::time(nullptr) - 60, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, lock.c_str(), minute_ago, 0), 0);
  const auto holder = store.lock_holder("f", left);
  ASSERT_TRUE(holder);
  EXPECT_EQ(holder->host, "elsewhere");
  EXPECT_EQ(holder->pid, 41);
  EXPECT_EQ(holder->job, "77_3");
  EXPECT_FALSE(holder->live);
  ASSERT_EQ(::utimensat(AT_FDCWD, lock.c_str(), nullptr, 0), 0);  // a heartbeat now
  EXPECT_TRUE(store.lock_holder("f", left)->live);
}

TEST(ComputeOnce, TwoWaitersTakingOverAtOnceBothFinish) {
  TempDir dir;
  const auto counter = dir.path() / "computed";
  const auto holding = dir.path() / "holding";
  constexpr int kChildren = 3;
  const auto ready = [&](int child) { return dir.path() / ("ready-" + std::to_string(child)); };
  // The first to compute blocks until it is killed, leaving a lock whose process is dead on this
  // host: every child finds it stale at once, whatever the load. The others compute for a while
  // (how long decides nothing) under live locks, which the default stale_after (a minute) never
  // lets pass for stale.
  const auto make = [&](const Memory& memory) {
    return memory.cache("race", [&](int x) {
      if (!std::filesystem::exists(holding)) {
        joblet::testing::write_text(holding, "yes");
        joblet::testing::block_until_killed();
      }
      count_computation(counter);
      std::this_thread::sleep_for(200ms);
      return x;
    });
  };
  const pid_t holder = fork_child([&] {
    Memory memory(dir.path() / "cache", {.compute_once = true});
    make(memory)(5);
    return 0;
  });
  EXPECT_TRUE(joblet::testing::wait_for_file(holding));
  kill(holder, SIGKILL);
  ASSERT_EQ(wait_child(holder), 128 + SIGKILL);
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(fork_child([&, c] {
      Memory memory(dir.path() / "cache", {.compute_once = true});
      auto cached = make(memory);
      // All at once: each comes to the stale lock once every one is ready.
      joblet::testing::write_text(ready(c), "yes");
      for (int other = 0; other < kChildren; ++other) {
        if (!joblet::testing::wait_for_file(ready(other))) return 2;
      }
      return cached(5) == 5 ? 0 : 1;
    }));
  }
  for (pid_t child : children) EXPECT_EQ(wait_child(child), 0);
  // Usually one computes; a takeover race may let two. Never a deadlock, never a wrong result.
  EXPECT_GE(computations(counter), 1u);
  EXPECT_LE(computations(counter), 2u);
}

// Reads away the events queued on a non-blocking inotify descriptor.
void forget_events(int inotify) {
  alignas(inotify_event) char events[4096];
  while (::read(inotify, events, sizeof events) > 0) {
  }
}

// Waits for an event on `inotify` (one watching a file for IN_OPEN: a process opened it), then
// reads away every queued one; false after a loose minute without one.
bool wait_for_an_open(int inotify) {
  pollfd ready{inotify, POLLIN, 0};
  if (::poll(&ready, 1, 60'000) != 1) return false;
  forget_events(inotify);
  return true;
}

TEST(ComputeOnce, TheHeartbeatKeepsALongComputationsLock) {
  TempDir dir;
  const auto counter = dir.path() / "computed";
  const auto started = dir.path() / "started";
  const auto release = dir.path() / "release";
  // Only the heartbeat tells the waiter that the holder lives. A heartbeat starved by load for
  // less than stale_after - heartbeat cannot pass for a dead holder.
  const auto stale_after = 3s;
  const MemoryOptions options{.compute_once = true, .lock = {.stale_after = stale_after, .heartbeat = 0.25s}};
  // The holder computes until the test lets it go: once the waiter has watched its lock for
  // twice stale_after.
  const auto make = [&](const Memory& memory) {
    return memory.cache("long", [&](int x) {
      count_computation(counter);
      joblet::testing::write_text(started, "yes");
      joblet::testing::wait_for_file(release);
      return x * 3;
    });
  };
  const pid_t holder = fork_child([&] {
    Memory memory(dir.path() / "cache", options);
    return make(memory)(3) == 9 ? 0 : 1;
  });
  EXPECT_TRUE(joblet::testing::wait_for_file(started));
  // The waiter looks at the lock by opening it; nothing else opens it.
  const std::string lock = [&] {
    Memory memory(dir.path() / "cache", options);
    return memory.store()->entry_path("long", make(memory).key(3)).string() + ".lock";
  }();
  const int looks = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  EXPECT_GE(looks, 0);
  EXPECT_GE(inotify_add_watch(looks, lock.c_str(), IN_OPEN), 0) << lock << ": " << std::strerror(errno);
  const pid_t waiter = fork_child([&] {
    Memory memory(dir.path() / "cache", options);
    auto cached = make(memory);
    if (cached(3) != 9) return 1;
    return cached.statistics().waits == 1 ? 0 : 2;
  });
  EXPECT_TRUE(wait_for_an_open(looks)) << "the waiter never looked at the lock";
  // Twice stale_after after its first look, the waiter looks again, still waiting: without the
  // heartbeat, it would have taken the lock over by then. (The sleep only makes the wait long;
  // what follows waits for the waiter's next look, made after it.)
  std::this_thread::sleep_for(2 * stale_after);
  forget_events(looks);
  EXPECT_TRUE(wait_for_an_open(looks)) << "the waiter stopped looking at the lock";
  ::close(looks);
  joblet::testing::write_text(release, "go");
  EXPECT_EQ(wait_child(holder), 0);
  EXPECT_EQ(wait_child(waiter), 0);
  EXPECT_EQ(computations(counter), 1u);
}

TEST(ComputeOnce, BadLockOptionsAreRejected) {
  TempDir dir;
  EXPECT_THROW(Memory(dir.path(), {.compute_once = true, .lock = {.stale_after = 1s, .heartbeat = 1s}}),
               joblet::ConfigError);
  EXPECT_THROW(Memory(dir.path(), {.lock = {.poll = 0s}}), joblet::ConfigError);
  joblet::Store store(dir.path());
  EXPECT_THROW(store.claim("f", joblet::Hash128{}, {.heartbeat = -1s}), joblet::ConfigError);
}

}  // namespace

// Results of 1 MiB and more live in a companion file that a writer replaces before the entry
// naming it. A reader that opened the old entry and then finds the new companion has met a
// benign race: it reads the entry again. Calling the entry corrupt would recompute and
// republish it, setting off the same race in every other reader (hundreds of recomputations).
std::vector<std::uint64_t> large_pattern(int key) {
  std::vector<std::uint64_t> values(160'000);  // 1.25 MiB: a companion file
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<std::uint64_t>(key) * 1'000'003 + i;
  return values;
}

TEST(Concurrency, ReadersOfReplacedCompanionsComputeNothing) {
  TempDir dir;
  const auto counter = dir / "computations";
  const auto cache = dir / "cache";
  constexpr int kKeys = 4;
  // Small counts: every read maps or reads 1.25 MiB through HDF5, which ThreadSanitizer slows a lot.
  constexpr int kReaders = 4;
  constexpr int kReads = 30;
  constexpr int kForcedWrites = 12;
  const auto make = [&](const Memory& memory) {
    return memory.cache("field", [counter](int key) {
      count_computation(counter);
      return large_pattern(key);
    });
  };
  {
    Memory memory(cache, {.store = {.fsync = false}});
    auto cached = make(memory);
    for (int key = 0; key < kKeys; ++key) cached(key);
  }
  std::vector<pid_t> children;
  for (int r = 0; r < kReaders; ++r) {
    children.push_back(fork_child([&, r] {
      Memory memory(cache, {.store = {.fsync = false}});
      auto cached = make(memory);
      std::mt19937 random(static_cast<unsigned>(r));
      for (int i = 0; i < kReads; ++i) {
        const int key = static_cast<int>(random() % kKeys);
        if (cached(key) != large_pattern(key)) return 1;
      }
      return cached.statistics().corrupt_entries == 0 ? 0 : 2;
    }));
  }
  children.push_back(fork_child([&] {
    Memory memory(cache, {.store = {.fsync = false}});
    auto cached = make(memory);
    for (int i = 0; i < kForcedWrites; ++i) cached.call(i % kKeys);
    return 0;
  }));
  for (pid_t child : children) EXPECT_EQ(wait_child(child), 0);
  // The first computation of each key, and the writes asked for: the readers computed nothing.
  EXPECT_EQ(computations(counter), static_cast<std::size_t>(kKeys + kForcedWrites));
}

TEST(Concurrency, ThreadsReadingAKeyAWriterReplacesComputeNothing) {
  TempDir dir;
  std::atomic<int> computed{0};
  Memory memory(dir.path(), {.store = {.fsync = false}});
  auto cached = memory.cache("field", [&computed](int key) {
    computed.fetch_add(1);
    return large_pattern(key);
  });
  cached(0);
  std::atomic<bool> wrong{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        if (cached(0) != large_pattern(0)) wrong = true;
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 8; ++i) cached.call(0);
  });
  for (auto& thread : threads) thread.join();
  EXPECT_FALSE(wrong.load());
  EXPECT_EQ(computed.load(), 1 + 8);
  EXPECT_EQ(cached.statistics().corrupt_entries, 0u);
}

// `joblet cache clear` (Store::clear) while programs write: their temporary files and locks are
// theirs until they publish, so every write still succeeds.
TEST(Concurrency, ClearNeverBreaksALiveWriter) {
  TempDir dir;
  const auto cache = dir / "cache";
  const auto done = dir / "writer-done";
  const pid_t writer = fork_child([&] {
    Memory memory(cache, {.store = {.fsync = true}});
    auto cached = memory.cache("small", [](int key) { return std::vector<int>(64, key); });
    for (int key = 0; key < 300; ++key) cached(key);
    const auto failures = cached.statistics().store_failures;
    joblet::testing::write_text(done, "done");
    return failures == 0 ? 0 : 1;
  });
  const pid_t clearer = fork_child([&] {
    joblet::Store store(cache);
    // Until the writer is done (or gone: reaped by the test, after it failed).
    while (!std::filesystem::exists(done) && kill(writer, 0) == 0) store.clear();
    return 0;
  });
  EXPECT_EQ(wait_child(writer), 0) << "a write failed while the cache was being cleared";
  EXPECT_EQ(wait_child(clearer), 0);
}
