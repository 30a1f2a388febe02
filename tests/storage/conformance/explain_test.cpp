// Why a call missed: the parts of its key an entry records (each argument's hash, the version
// and its salts), entries written before they were recorded, and what Memory logs about hits
// and misses (MemoryOptions::verbose, and the nearest entry at debug level).

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "joblet/memory.hpp"
#include "support.hpp"

namespace {

using joblet::ArgumentHash;
using joblet::Memory;
using joblet::testing::LogCapture;
using joblet::testing::TempDir;

bool contains(const std::string& text, const std::string& fragment) { return text.find(fragment) != std::string::npos; }

int count_of(const std::string& text, const std::string& fragment) {
  int count = 0;
  for (std::size_t at = text.find(fragment); at != std::string::npos; at = text.find(fragment, at + 1)) ++count;
  return count;
}

// Sets joblet's log level while it lives (JOBLET_LOG_LEVEL's effect), then puts it back.
class LogLevel {
 public:
  explicit LogLevel(spdlog::level::level_enum level) : previous_(joblet::logger()->level()) {
    joblet::logger()->set_level(level);
  }
  ~LogLevel() { joblet::logger()->set_level(previous_); }
  LogLevel(const LogLevel&) = delete;
  LogLevel& operator=(const LogLevel&) = delete;

 private:
  spdlog::level::level_enum previous_;
};

double fit(int n, double scale, int /*verbosity*/) { return n * scale; }

TEST(Explain, EntriesRecordEachArgumentsHashAndTheVersionsParts) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("fit", fit, joblet::ignore_args<2>, {.version = "2"});
  cached(3, 0.5, 1);
  const auto metadata = memory.store()->metadata("fit", cached.key(3, 0.5, 1));
  ASSERT_TRUE(metadata.has_value());
  ASSERT_TRUE(metadata->key_parts.has_value());
  const joblet::KeyParts& parts = *metadata->key_parts;
  EXPECT_EQ(parts.version, "2");
  EXPECT_EQ(parts.source_salt, "");
  EXPECT_EQ(parts.build_salt, "");
  ASSERT_EQ(parts.arguments.size(), 3u);
  // Each argument's hash is hash_value() of it as the parameter's type; ignored ones have none.
  EXPECT_EQ(parts.arguments[0], (ArgumentHash{.ignored = false, .hash = joblet::hash_value(3)}));
  EXPECT_EQ(parts.arguments[1], (ArgumentHash{.ignored = false, .hash = joblet::hash_value(0.5)}));
  EXPECT_TRUE(parts.arguments[2].ignored);
  EXPECT_EQ(metadata->version, "2");

  // An int passed for a double parameter is hashed as the double the call converts it to.
  auto half = memory.cache("half", [](double x) { return x / 2; });
  half(3);
  const auto converted = memory.store()->metadata("half", half.key(3));
  ASSERT_TRUE(converted && converted->key_parts);
  EXPECT_EQ(converted->key_parts->arguments.at(0).hash, joblet::hash_value(3.0));

  // The salts are recorded apart from the explicit version they are combined with.
  auto square = memory.cache("square", JOBLET_SOURCE_VERSIONED([](int x) { return x * x; }),
                             {.version = "1", .salt_with_build_id = true});
  square(2);
  const auto salted = memory.store()->metadata("square", square.key(2));
  ASSERT_TRUE(salted && salted->key_parts);
  EXPECT_EQ(salted->key_parts->version, "1");
  EXPECT_EQ(salted->key_parts->source_salt.size(), 16u);
  EXPECT_EQ(salted->key_parts->build_salt.size(), 32u);
  EXPECT_EQ(square.version(), "1+src:" + salted->key_parts->source_salt + "+build:" + salted->key_parts->build_salt);

  // A function without arguments records that it has none.
  auto constant = memory.cache("constant", [] { return 42; });
  constant();
  const auto none = memory.store()->metadata("constant", constant.key());
  ASSERT_TRUE(none && none->key_parts);
  EXPECT_TRUE(none->key_parts->arguments.empty());
}

// Entries written before key parts were recorded stay hits: the key scheme is unchanged.
TEST(Explain, AnEntryOfThePreviousJobletIsStillAHit) {
  TempDir dir;
  joblet::testing::write_previous_joblet_entry(dir.path());
  Memory memory(dir.path());
  int calls = 0;
  auto scale = memory.cache("scale", [&calls](int x, double factor) { return ++calls, x * factor; }, {.version = "1"});
  ASSERT_EQ(scale.key(3, 0.5).hex(), joblet::testing::kPreviousJobletKey);
  EXPECT_EQ(scale(3, 0.5), 1.5);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(scale.statistics().hits, 1u);
  EXPECT_EQ(scale.statistics().corrupt_entries, 0u);
  const auto metadata = memory.store()->metadata("scale", scale.key(3, 0.5));
  ASSERT_TRUE(metadata.has_value());
  EXPECT_FALSE(metadata->key_parts.has_value());
  EXPECT_EQ(metadata->arguments, "int 3, double 0.5");
  EXPECT_EQ(metadata->extra.at("host"), "vm");
}

TEST(Explain, VerboseLogsMissesAndHitsAtJoblibsLevels) {
  TempDir dir;
  LogCapture log;
  // At joblet's default log level (warn): verbose output is asked for, so it shows anyway.
  const auto identity = [](int x) { return x; };
  Memory silent(dir.path(), {.verbose = 0});
  silent.cache("silent", identity)(1);
  EXPECT_FALSE(contains(log.text(), "Memory:")) << log.text();

  Memory misses(dir.path(), {.verbose = 1});
  auto logged = misses.cache("logged", identity);
  logged(4);
  logged(4);
  const std::string key = logged.key(4).hex();
  EXPECT_TRUE(contains(log.text(), "info Memory: computing logged(int 4), key " + key)) << log.text();
  EXPECT_TRUE(contains(log.text(), "info Memory: logged computed in ")) << log.text();
  EXPECT_EQ(count_of(log.text(), "Memory: computing"), 1) << log.text();
  EXPECT_FALSE(contains(log.text(), "loaded")) << log.text();
  logged.call(4);
  EXPECT_TRUE(contains(log.text(), "Memory: computing logged(int 4) (forced by call())")) << log.text();

  Memory hits(dir.path(), {.verbose = 10});
  hits.cache("logged", identity)(4);
  EXPECT_TRUE(contains(log.text(), "info Memory: loaded logged(int 4) in ")) << log.text();
  EXPECT_TRUE(contains(log.text(), " saved")) << log.text();

  // A cached function's own verbose option wins over its Memory's.
  const std::size_t before = log.text().size();
  misses.cache("quiet", identity, {.verbose = 0})(5);
  hits.cache("loud", identity, {.verbose = 1})(6);
  const std::string after = log.text().substr(before);
  EXPECT_FALSE(contains(after, "quiet")) << after;
  EXPECT_TRUE(contains(after, "Memory: computing loud(int 6)")) << after;

  // JOBLET_LOG_LEVEL=off silences it; a Memory without a location has nothing to say.
  {
    const LogLevel off(spdlog::level::off);
    misses.cache("muted", identity)(7);
  }
  Memory().cache("nowhere", identity)(8);
  EXPECT_FALSE(contains(log.text(), "muted")) << log.text();
  EXPECT_FALSE(contains(log.text(), "nowhere")) << log.text();

  EXPECT_THROW(Memory(dir.path(), {.verbose = -1}), joblet::ConfigError);
  EXPECT_THROW(misses.cache("bad", identity, {.verbose = -2}), joblet::ConfigError);
}

TEST(Explain, ADebugMissNamesTheNearestEntryAndTheFirstDifference) {
  TempDir dir;
  LogCapture log;
  const LogLevel debug(spdlog::level::debug);
  Memory memory(dir.path());
  auto v1 = memory.cache("fit", fit, joblet::ignore_args<2>, {.version = "1"});
  v1(1, 0.5, 0);
  EXPECT_TRUE(contains(log.text(), "debug cache miss of 'fit' (int 1, double 0.5, (ignored)), key " +
                                       v1.key(1, 0.5, 0).hex() + ", argument hashes [" + joblet::hash_value(1).hex() +
                                       ", " + joblet::hash_value(0.5).hex() +
                                       ", ignored]: no other entry of 'fit' is stored"))
      << log.text();

  // Another value of the second argument, and of the ignored third: the second is named.
  v1(1, 0.25, 7);
  EXPECT_TRUE(contains(log.text(), "is " + v1.key(1, 0.5, 0).hex() +
                                       " (int 1, double 0.5, (ignored)): it differs "
                                       "first in argument #1\n"))
      << log.text();
  EXPECT_FALSE(contains(log.text(), "argument #2")) << log.text();
  // Only the ignored argument differs: a hit, nothing to explain.
  const int misses = count_of(log.text(), "cache miss of");
  v1(1, 0.25, 9);
  EXPECT_EQ(count_of(log.text(), "cache miss of"), misses);

  // A new version: its nearest entry is the same call of the old version.
  auto v2 = memory.cache("fit", fit, joblet::ignore_args<2>, {.version = "2"});
  v2(1, 0.5, 0);
  EXPECT_TRUE(contains(log.text(), "is " + v1.key(1, 0.5, 0).hex() +
                                       " (int 1, double 0.5, (ignored)): it differs first in version ('2' here, "
                                       "'1' there)\n"))
      << log.text();
  // Two parts differ: the first in the key's order is named, with the count.
  v2(2, 0.125, 0);
  EXPECT_TRUE(contains(log.text(), "it differs first in argument #0 (2 parts differ)")) << log.text();

  // A forced call is not a miss to explain.
  v2.call(1, 0.5, 0);
  EXPECT_TRUE(contains(log.text(), "call() recomputes it whatever is stored")) << log.text();
}

TEST(Explain, ADebugMissNearAnEntryOfThePreviousJobletSaysWhatItCannotTell) {
  TempDir dir;
  joblet::testing::write_previous_joblet_entry(dir.path());
  LogCapture log;
  const LogLevel debug(spdlog::level::debug);
  Memory memory(dir.path());
  auto scale = memory.cache("scale", [](int x, double factor) { return x * factor; }, {.version = "1"});
  scale(3, 0.25);
  EXPECT_TRUE(contains(log.text(), "is " + std::string(joblet::testing::kPreviousJobletKey) +
                                       " (int 3, double 0.5): the version and result type are the same: an "
                                       "argument differs; one of the two was written without per-argument hashes"))
      << log.text();
  // Against another version, the version is still named.
  auto v2 = memory.cache("scale", [](int x, double factor) { return x * factor; }, {.version = "2"});
  std::filesystem::remove_all(dir.path() / "scale");
  joblet::testing::write_previous_joblet_entry(dir.path());
  v2(3, 0.5);
  EXPECT_TRUE(contains(log.text(),
                       "it differs first in version ('2' here, '1' there); it was written without "
                       "per-argument hashes"))
      << log.text();
}

// A damaged entry is unusable, and the miss that replaces it says so instead of guessing.
TEST(Explain, ADebugMissOverADamagedEntryNamesTheProblem) {
  TempDir dir;
  Memory memory(dir.path());
  auto cached = memory.cache("fit", fit, joblet::ignore_args<2>, {.version = "1"});
  cached(1, 0.5, 0);
  const auto path = memory.store()->entry_path("fit", cached.key(1, 0.5, 0));
  std::string bytes = joblet::testing::read_text(path);
  bytes[100] = static_cast<char>(bytes[100] ^ 0x20);  // inside the metadata: its checksum fails
  joblet::testing::write_text(path, bytes);
  LogCapture log;
  const LogLevel debug(spdlog::level::debug);
  EXPECT_EQ(cached(1, 0.5, 0), 0.5);
  EXPECT_EQ(log.warnings("is unusable"), 1) << log.text();
  EXPECT_TRUE(contains(log.text(),
                       "its entry is there but unusable (the checksum of the entry's header and metadata "
                       "does not match)"))
      << log.text();
}

}  // namespace
