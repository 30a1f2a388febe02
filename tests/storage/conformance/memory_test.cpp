// Memory and CachedFunction: joblib's Memory contract in C++.

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <complex>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "joblet/memory.hpp"
#include "support.hpp"

namespace {

using joblet::CacheOptions;
using joblet::Memory;
using joblet::testing::TempDir;

struct Params {
  int n = 0;
  double scale = 1.0;
  std::string label;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(n, scale, label);
  }
};

std::atomic<int> g_simulations{0};
double simulate(const Params& p) {
  ++g_simulations;
  return p.n * p.scale;
}

// Something that cannot be hashed: a logger handle.
struct Logger {
  std::ostringstream* out;
};

std::size_t count_entries(const Memory& memory) { return memory.store()->list().size(); }

TEST(Memory, MissThenHit) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("simulate", simulate, {.version = "1"});
  g_simulations = 0;
  EXPECT_EQ(cached(Params{3, 2.0, "a"}), 6.0);
  EXPECT_EQ(cached(Params{3, 2.0, "a"}), 6.0);
  EXPECT_EQ(cached(Params{4, 2.0, "a"}), 8.0);
  EXPECT_EQ(g_simulations, 2);
  const auto stats = cached.statistics();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(memory.statistics().hits, 1u);
  EXPECT_EQ(count_entries(memory), 2u);
  // One file per entry, sharded by the key's first two hex digits, under the function's name.
  const auto key = cached.key(Params{3, 2.0, "a"});
  EXPECT_TRUE(std::filesystem::is_regular_file(dir.path() / "simulate" / key.hex().substr(0, 2) / key.hex()));
}

// Golden keys: the same call has the same key in every process and run (on this ABI). A change
// here turns every user's cache cold; change it only with the key domain, on purpose.
TEST(Memory, GoldenKeysAreStableAcrossProcessesAndRuns) {
  Memory memory;  // keys need no cache
  auto cached = memory.cache("golden", simulate, {.version = "1"});
  const std::string key = cached.key(Params{3, 0.5, "x"}).hex();
  EXPECT_EQ(key, "47be3a609787ba0373240a9b87cb2060");
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = joblet::testing::fork_child([&] {
    const std::string there = Memory().cache("golden", simulate, {.version = "1"}).key(Params{3, 0.5, "x"}).hex();
    return write(pipe_fds[1], there.data(), there.size()) == 32 ? 0 : 1;
  });
  close(pipe_fds[1]);
  char buffer[32];
  ASSERT_EQ(read(pipe_fds[0], buffer, 32), 32);
  close(pipe_fds[0]);
  EXPECT_EQ(joblet::testing::wait_child(child), 0);
  EXPECT_EQ(std::string(buffer, 32), key);
  // Each part of the identity changes the key.
  EXPECT_NE(memory.cache("golden", simulate, {.version = "2"}).key(Params{3, 0.5, "x"}).hex(), key);
  EXPECT_NE(memory.cache("golden2", simulate, {.version = "1"}).key(Params{3, 0.5, "x"}).hex(), key);
  EXPECT_NE(cached.key(Params{3, 0.5, "y"}).hex(), key);
}

TEST(Memory, EntriesSurviveTheMemoryObject) {
  TempDir dir;
  g_simulations = 0;
  {
    Memory memory(dir.path());
    memory.cache("simulate", simulate)(Params{1, 1.0, ""});
  }
  Memory again(dir.path());
  EXPECT_EQ(again.cache("simulate", simulate)(Params{1, 1.0, ""}), 1.0);
  EXPECT_EQ(g_simulations, 1);
}

// Someone removes the whole cache while a program uses it: its next write makes the directory
// again, and what it computes from then on is cached there.
TEST(Memory, ACacheDirectoryRemovedWhileInUseIsMadeAgainByTheNextWrite) {
  TempDir dir;
  const auto root = dir.path() / "cache";
  Memory memory(root);
  auto cached = memory.cache("simulate", simulate, {.version = "1"});
  g_simulations = 0;
  EXPECT_EQ(cached(Params{1, 1.0, ""}), 1.0);
  std::filesystem::remove_all(root);
  EXPECT_EQ(cached(Params{1, 1.0, ""}), 1.0);  // a miss: the entry went with the directory
  EXPECT_EQ(g_simulations, 2);
  const auto key = cached.key(Params{1, 1.0, ""});
  EXPECT_TRUE(std::filesystem::is_regular_file(root / "simulate" / key.hex().substr(0, 2) / key.hex()));
  EXPECT_EQ(cached(Params{1, 1.0, ""}), 1.0);
  EXPECT_EQ(cached(Params{2, 1.0, ""}), 2.0);
  EXPECT_EQ(cached(Params{2, 1.0, ""}), 2.0);
  EXPECT_EQ(g_simulations, 3);
}

// An entry names the process that computed it (`joblet status` shows it), a forked child included.
TEST(Memory, AnEntryNamesTheProcessThatComputedItEvenInAForkedChild) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("simulate", simulate, {.version = "1"});
  cached(Params{1, 1.0, ""});
  const pid_t child = joblet::testing::fork_child([&] {
    cached(Params{2, 1.0, ""});
    return 0;
  });
  ASSERT_EQ(joblet::testing::wait_child(child), 0);
  const auto writer = [&](const Params& params) {
    const auto metadata = memory.store()->metadata("simulate", cached.key(params));
    return metadata ? metadata->extra.at("pid") : std::string("no entry");
  };
  EXPECT_EQ(writer(Params{1, 1.0, ""}), std::to_string(getpid()));
  EXPECT_EQ(writer(Params{2, 1.0, ""}), std::to_string(child));
}

TEST(Memory, ComplexArgumentsAndResultsAreCached) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  auto spectrum = memory.cache("spectrum", [&calls](const std::vector<std::complex<double>>& signal) {
    ++calls;
    std::vector<std::complex<double>> out;
    for (const auto& z : signal) out.push_back(z * std::complex<double>(0, 1));
    return out;
  });
  const std::vector<std::complex<double>> signal{{1, 2}, {3, -4}};
  const std::vector<std::complex<double>> expected{{-2, 1}, {4, 3}};
  EXPECT_EQ(spectrum(signal), expected);
  EXPECT_EQ(spectrum(signal), expected);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(spectrum(std::vector<std::complex<double>>{{1, -2}, {3, -4}}).front(), std::complex<double>(2, 1));
  EXPECT_EQ(calls, 2);
}

TEST(Memory, ExceptionsAreNotCached) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  auto flaky = memory.cache("flaky", [&calls](int x) {
    if (++calls == 1) throw std::runtime_error("first call fails");
    return x + 1;
  });
  EXPECT_THROW(flaky(1), std::runtime_error);
  EXPECT_EQ(count_entries(memory), 0u);
  EXPECT_EQ(flaky(1), 2);
  EXPECT_EQ(flaky(1), 2);
  EXPECT_EQ(calls, 2);
}

TEST(Memory, ChangingTheVersionStopsOldEntriesButKeepsThem) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  auto make = [&](const std::string& version) {
    return memory.cache("versioned", [&calls](int x) { return ++calls, x * 10; }, {.version = version});
  };
  EXPECT_EQ(make("1")(5), 50);
  EXPECT_EQ(make("2")(5), 50);
  EXPECT_EQ(calls, 2);
  // Old entries are not deleted by a call: pruning is reduce_size's job.
  EXPECT_EQ(count_entries(memory), 2u);
  EXPECT_EQ(make("1")(5), 50);
  EXPECT_EQ(calls, 2);
  const auto listed = memory.store()->list({.read_metadata = true});
  std::set<std::string> versions;
  for (const auto& info : listed) versions.insert(info.metadata->version);
  EXPECT_EQ(versions, (std::set<std::string>{"1", "2"}));
}

TEST(Memory, IgnoredArgumentsAreLeftOutOfTheKey) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  std::ostringstream log_a;
  std::ostringstream log_b;
  auto fit = memory.cache("fit",
                          [&calls](const std::vector<double>& data, Logger logger, int verbose) {
                            ++calls;
                            *logger.out << "fitting " << data.size() << " at verbosity " << verbose;
                            return data.size() * 2.0;
                          },
                          joblet::ignore_args<1, 2>, {.version = "1"});
  EXPECT_EQ(fit(std::vector<double>{1, 2, 3}, Logger{&log_a}, 0), 6.0);
  EXPECT_EQ(fit(std::vector<double>{1, 2, 3}, Logger{&log_b}, 5), 6.0);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(fit(std::vector<double>{1, 2}, Logger{&log_b}, 5), 4.0);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(fit.key(std::vector<double>{1}, Logger{&log_a}, 1), fit.key(std::vector<double>{1}, Logger{&log_b}, 2));
  // The argument summary says which arguments were ignored.
  const auto listed = memory.store()->list({.read_metadata = true});
  ASSERT_FALSE(listed.empty());
  EXPECT_NE(listed.front().metadata->arguments.find("(ignored)"), std::string::npos);
}

TEST(Memory, ArgumentsHashAsTheParameterType) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  auto half = memory.cache("half", [&calls](double x) { return ++calls, x / 2; });
  EXPECT_EQ(half(3), 1.5);
  EXPECT_EQ(half(3.0), 1.5);
  EXPECT_EQ(calls, 1);
  auto greet = memory.cache("greet", [&calls](const std::string& name) { return ++calls, "hello " + name; });
  EXPECT_EQ(greet("ada"), "hello ada");
  EXPECT_EQ(greet(std::string("ada")), "hello ada");
  EXPECT_EQ(calls, 2);
  // A span parameter takes a vector without copying and hashes the same data.
  auto total = memory.cache("total", [&calls](std::span<const double> values) {
    ++calls;
    double sum = 0;
    for (double v : values) sum += v;
    return sum;
  });
  const std::vector<double> values{1, 2, 3};
  EXPECT_EQ(total(values), 6.0);
  EXPECT_EQ(total(std::span<const double>(values)), 6.0);
  EXPECT_EQ(calls, 3);
}

TEST(Memory, GenericLambdasHashArgumentsAsPassed) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  auto twice = memory.cache("twice", [&calls](const auto& x) { return ++calls, x + x; });
  EXPECT_EQ(twice(2), 4);
  EXPECT_EQ(twice(2), 4);
  EXPECT_EQ(twice(std::string("ab")), "abab");
  EXPECT_EQ(calls, 2);
}

TEST(Memory, TheResultTypeIsPartOfTheKey) {
  TempDir dir;
  Memory memory(dir.path());
  auto as_int = memory.cache("value", [](int x) { return x; });
  auto as_double = memory.cache("value", [](int x) { return static_cast<double>(x); });
  EXPECT_EQ(as_int(7), 7);
  EXPECT_EQ(as_double(7), 7.0);
  EXPECT_NE(as_int.key(7), as_double.key(7));
}

TEST(Memory, SourceVersionedLambdasFollowTheirText) {
  TempDir dir;
  Memory memory(dir.path());
  auto square = memory.cache("f", JOBLET_SOURCE_VERSIONED([](int x) { return x * x; }));
  auto same_text = memory.cache("f", JOBLET_SOURCE_VERSIONED([](int x) { return x * x; }));
  auto edited = memory.cache("f", JOBLET_SOURCE_VERSIONED([](int x) { return x * x + 0; }));
  EXPECT_EQ(square.version(), same_text.version());
  EXPECT_NE(square.version(), edited.version());
  EXPECT_EQ(square.version().rfind("src:", 0), 0u);
  EXPECT_EQ(square.key(3), same_text.key(3));
  EXPECT_NE(square.key(3), edited.key(3));
  EXPECT_EQ(square(3), 9);
  EXPECT_TRUE(same_text.check_call_in_cache(3));
  EXPECT_FALSE(edited.check_call_in_cache(3));
  // An explicit version and the source text combine; ignore_args works with it.
  auto both = memory.cache("g", JOBLET_SOURCE_VERSIONED([](int x, int) { return x; }), joblet::ignore_args<1>,
                           {.version = "3"});
  EXPECT_EQ(both.version().rfind("3+src:", 0), 0u);
  EXPECT_EQ(both.key(1, 2), both.key(1, 5));
}

TEST(Memory, BuildIdSaltIsOptIn) {
  TempDir dir;
  Memory memory(dir.path());
  auto plain = memory.cache("salted", [](int x) { return x; }, {.version = "1"});
  auto salted = memory.cache("salted", [](int x) { return x; }, {.version = "1", .salt_with_build_id = true});
  EXPECT_EQ(plain.version(), "1");
  EXPECT_EQ(salted.version().rfind("1+build:", 0), 0u);
  EXPECT_GT(salted.version().size(), std::string("1+build:").size() + 8);
  EXPECT_NE(plain.key(1), salted.key(1));
}

TEST(Memory, CallForcesRecomputation) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  auto cached = memory.cache("forced", [&calls](int x) { return x + (++calls); });
  EXPECT_EQ(cached(10), 11);
  EXPECT_EQ(cached(10), 11);
  EXPECT_EQ(cached.call(10), 12);  // recomputed and stored over the old result
  EXPECT_EQ(cached(10), 12);
  EXPECT_EQ(calls, 2);
}

TEST(Memory, CallAndShelve) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  auto cached =
      memory.cache("shelved", [&calls](int n) { return ++calls, std::vector<int>(static_cast<std::size_t>(n), n); });
  const auto shelved = cached.call_and_shelve(3);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(shelved.get(), (std::vector<int>{3, 3, 3}));
  EXPECT_EQ(shelved.function(), "shelved");
  EXPECT_EQ(shelved.key(), cached.key(3));
  // Shelving again neither recomputes nor loads.
  cached.call_and_shelve(3);
  EXPECT_EQ(calls, 1);
  // A reference travels through the codec (to another process or rank) and still resolves.
  const std::string bytes = joblet::encode(shelved);
  EXPECT_LT(bytes.size(), 200u);
  const auto received = joblet::decode<joblet::ShelvedResult<std::vector<int>>>(bytes);
  EXPECT_EQ(received.get(), (std::vector<int>{3, 3, 3}));
  received.clear();
  EXPECT_FALSE(cached.check_call_in_cache(3));
  try {
    shelved.get();
    FAIL() << "get() of a cleared result must throw";
  } catch (const joblet::StorageError& e) {
    EXPECT_NE(std::string(e.what()).find("call_and_shelve again"), std::string::npos) << e.what();
  }
}

TEST(Memory, DefaultConstructedShelvedResultSaysWhereToGetOne) {
  const joblet::ShelvedResult<int> nothing;
  try {
    nothing.get();
    FAIL() << "get() of a default-constructed ShelvedResult must throw";
  } catch (const joblet::StorageError& e) {
    EXPECT_NE(std::string(e.what()).find("get one from call_and_shelve"), std::string::npos) << e.what();
  }
  nothing.clear();  // refers to nothing: nothing to remove, and no error
}

TEST(Memory, CheckCallInCache) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("check", [](int x) { return x; });
  EXPECT_FALSE(cached.check_call_in_cache(1));
  cached(1);
  EXPECT_TRUE(cached.check_call_in_cache(1));
  EXPECT_FALSE(cached.check_call_in_cache(2));
}

TEST(Memory, ClearOneFunctionOrAll) {
  TempDir dir;
  Memory memory(dir.path());
  auto a = memory.cache("a", [](int x) { return x; });
  auto b = memory.cache("b", [](int x) { return x; });
  a(1), a(2), b(1);
  EXPECT_EQ(a.clear(), 2u);
  EXPECT_FALSE(a.check_call_in_cache(1));
  EXPECT_TRUE(b.check_call_in_cache(1));
  a(1);
  EXPECT_EQ(memory.clear(), 2u);
  EXPECT_EQ(count_entries(memory), 0u);
}

TEST(Memory, ValidationCallbacks) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  bool accept = true;
  auto cached = memory.cache("validated", [&calls](int x) { return ++calls, x; },
                             {.validate = [&accept](const joblet::EntryMetadata& m) {
                               EXPECT_EQ(m.function, "validated");
                               return accept;
                             }});
  cached(1);
  cached(1);
  EXPECT_EQ(calls, 1);
  accept = false;
  cached(1);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(cached.statistics().rejected_entries, 1u);
  EXPECT_FALSE(cached.check_call_in_cache(1));
}

TEST(Memory, ExpiresAfter) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  auto fresh = memory.cache("expiring", [&calls](int x) { return ++calls, x; },
                            {.validate = joblet::expires_after(std::chrono::hours(1))});
  auto stale = memory.cache("expiring", [&calls](int x) { return ++calls, x; },
                            {.validate = joblet::expires_after(std::chrono::seconds(-1))});
  fresh(1);
  fresh(1);
  EXPECT_EQ(calls, 1);
  stale(1);  // same key, but the entry is older than the limit
  EXPECT_EQ(calls, 2);
}

TEST(Memory, StatisticsAndPerCallReports) {
  TempDir dir;
  Memory memory(dir.path());
  std::vector<joblet::CallReport> reports;
  auto slow = memory.cache("slow",
                           [](int x) {
                             std::this_thread::sleep_for(std::chrono::milliseconds(20));
                             return x;
                           },
                           {.on_call = [&reports](const joblet::CallReport& r) { reports.push_back(r); }});
  slow(1);
  slow(1);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_FALSE(reports[0].hit);
  EXPECT_TRUE(reports[1].hit);
  EXPECT_EQ(reports[0].key, reports[1].key);
  EXPECT_GE(reports[0].computed_in, std::chrono::milliseconds(20));
  // A hit reports how long the value originally took to compute.
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::microseconds>(reports[1].computed_in),
            std::chrono::duration_cast<std::chrono::microseconds>(reports[0].computed_in));
  const auto stats = memory.statistics();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_GE(stats.compute_time, std::chrono::milliseconds(20));
  // The duration is in the entry's metadata too.
  const auto listed = memory.store()->list({.read_metadata = true});
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_GE(listed[0].metadata->duration, std::chrono::milliseconds(20));
  EXPECT_EQ(listed[0].metadata->arguments, "int 1");
  EXPECT_EQ(listed[0].metadata->result_type, "int");
}

TEST(Memory, WithoutALocationCallsPassThrough) {
  Memory memory;
  EXPECT_FALSE(memory.location());
  EXPECT_EQ(memory.store(), nullptr);
  int calls = 0;
  auto cached = memory.cache("passthrough", [&calls](int x) { return ++calls, x; });
  cached(1);
  cached(1);
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(cached.check_call_in_cache(1));
  EXPECT_EQ(cached.call_and_shelve(5).get(), 5);
  EXPECT_EQ(memory.clear(), 0u);
  EXPECT_EQ(memory.reduce_size({.items_limit = 0}).removed.size(), 0u);
  Memory explicit_none(std::nullopt);
  EXPECT_FALSE(explicit_none.location());
}

TEST(Memory, VoidFunctions) {
  TempDir dir;
  Memory memory(dir.path());
  int calls = 0;
  auto touch = memory.cache("touch", [&calls](int) { ++calls; });
  touch(1);
  touch(1);
  EXPECT_EQ(calls, 1);
}

TEST(Memory, FunctionNamesCannotLeaveTheCache) {
  TempDir dir;
  Memory memory(dir.path() / "cache");
  const std::vector<std::string> hostile{"../escape",   "a/b",
                                         "..",          ".",
                                         ".hidden",     "",
                                         "new\nline",   std::string(201, 'x'),
                                         "back\\slash", std::string("nul\0x", 5)};
  for (const std::string& name : hostile) {
    EXPECT_THROW(memory.cache(name, [](int x) { return x; }), joblet::ConfigError) << name;
  }
  joblet::Store store(dir.path() / "cache");
  EXPECT_THROW(store.save("../../etc", joblet::Hash128{}, {}, {}), joblet::ConfigError);
  EXPECT_THROW(store.load("a/../../b", joblet::Hash128{}), joblet::ConfigError);
  EXPECT_THROW(store.list({.function = "../.."}), joblet::ConfigError);
  EXPECT_THROW(store.clear("/"), joblet::ConfigError);
  // Nothing was written anywhere.
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  // Ordinary names work, including namespaces.
  EXPECT_EQ(memory.cache("physics::simulate-v2.run_1", [](int x) { return x; })(3), 3);
}

TEST(Memory, ManyThreadsShareOneCachedFunction) {
  TempDir dir;
  Memory memory(dir.path());
  std::atomic<int> calls{0};
  auto cached = memory.cache("threads", [&calls](int x) { return ++calls, std::vector<int>(1000, x); });
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (cached(i % 10) != std::vector<int>(1000, i % 10)) ++wrong;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(cached.statistics().corrupt_entries, 0u);
  EXPECT_EQ(count_entries(memory), 10u);
}

TEST(Memory, CachedFunctionsAreCheapToCopy) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("copied", [](int x) { return x; });
  auto copy = cached;
  copy(4);
  EXPECT_TRUE(cached.check_call_in_cache(4));
  EXPECT_EQ(cached.statistics().misses, 1u);  // copies share their statistics
}

}  // namespace
