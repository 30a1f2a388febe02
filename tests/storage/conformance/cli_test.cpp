// The `joblet cache` command, run as a program on a real cache.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "joblet/dump.hpp"
#include "joblet/memory.hpp"
#include "support.hpp"

namespace {

using joblet::testing::TempDir;

using joblet::testing::CommandRun;

CommandRun joblet_command(const std::string& arguments) {
  return joblet::testing::run_command(std::string(JOBLET_CLI) + " " + arguments);
}

bool contains(const std::string& text, const std::string& fragment) { return text.find(fragment) != std::string::npos; }

int count_of(const std::string& text, const std::string& fragment) {
  int count = 0;
  for (std::size_t at = text.find(fragment); at != std::string::npos; at = text.find(fragment, at + 1)) ++count;
  return count;
}

class CacheCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    joblet::Memory memory(dir_.path());
    auto simulate =
        memory.cache("simulate", [](int n) { return std::vector<double>(static_cast<std::size_t>(n) * 100, 1.0); },
                     {.version = "2"});
    for (int i = 1; i <= 10; ++i) simulate(i);
    auto fit = memory.cache("fit", [](const std::string& s, double a) { return static_cast<double>(s.size()) * a; });
    fit("hello", 0.5);
    key_ = fit.key(std::string("hello"), 0.5).hex();
    // Entries used long ago, for prune.
    for (int i = 1; i <= 4; ++i) {
      joblet::testing::age_file(memory.store()->entry_path("simulate", simulate.key(i)), 30 * 86400.0);
    }
  }
  std::string dir() const { return "--dir " + dir_.path().string(); }

  TempDir dir_;
  std::string key_;
};

TEST_F(CacheCommand, Stats) {
  const CommandRun run = joblet_command("cache " + dir() + " stats");
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "2 functions, 11 entries")) << run.output;
  EXPECT_TRUE(contains(run.output, "simulate")) << run.output;
  EXPECT_TRUE(contains(run.output, "KiB")) << run.output;  // sizes are human-readable
}

TEST_F(CacheCommand, StatsUsesJobletCacheDir) {
  const CommandRun run = joblet_command("cache stats --function fit");
  EXPECT_NE(run.status, 0);  // no ./joblet-cache here
  setenv("JOBLET_CACHE_DIR", dir_.path().c_str(), 1);
  const CommandRun from_environment = joblet_command("cache stats --function fit");
  unsetenv("JOBLET_CACHE_DIR");
  EXPECT_EQ(from_environment.status, 0) << from_environment.output;
  EXPECT_TRUE(contains(from_environment.output, "1 function, 1 entry")) << from_environment.output;
}

TEST_F(CacheCommand, ListAndShow) {
  const CommandRun ls = joblet_command("cache " + dir() + " ls --long --function fit");
  EXPECT_EQ(ls.status, 0) << ls.output;
  EXPECT_TRUE(contains(ls.output, key_)) << ls.output;
  EXPECT_TRUE(contains(ls.output, "std::string \"hello\", double 0.5")) << ls.output;
  const CommandRun show = joblet_command("cache " + dir() + " show " + key_.substr(0, 8));
  EXPECT_EQ(show.status, 0) << show.output;
  EXPECT_TRUE(contains(show.output, "function     fit")) << show.output;
  EXPECT_TRUE(contains(show.output, "checksums verified")) << show.output;
  const CommandRun unknown = joblet_command("cache " + dir() + " show 0000000000000000");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_TRUE(contains(unknown.output, "`joblet cache ls` lists the keys")) << unknown.output;
  const CommandRun not_hex = joblet_command("cache " + dir() + " show ../etc");
  EXPECT_EQ(not_hex.status, 1);
  EXPECT_TRUE(contains(not_hex.output, "not a cache key")) << not_hex.output;
}

TEST_F(CacheCommand, ShowReportsACorruptEntry) {
  joblet::Store store(dir_.path());
  const auto path = store.entry_path("fit", *joblet::Hash128::from_hex(key_));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 1);
  const CommandRun show = joblet_command("cache " + dir() + " show " + key_);
  EXPECT_EQ(show.status, 1);
  EXPECT_TRUE(contains(show.output, "unusable")) << show.output;
}

TEST_F(CacheCommand, PruneByAgeCountAndSize) {
  const CommandRun dry = joblet_command("cache " + dir() + " prune --older-than 7d --dry-run");
  EXPECT_EQ(dry.status, 0) << dry.output;
  EXPECT_TRUE(contains(dry.output, "would remove 4 entries")) << dry.output;
  EXPECT_EQ(joblet::Store(dir_.path()).list().size(), 11u);
  const CommandRun by_age = joblet_command("cache " + dir() + " prune --older-than 1w");
  EXPECT_TRUE(contains(by_age.output, "removed 4 entries")) << by_age.output;
  const CommandRun by_items = joblet_command("cache " + dir() + " prune --max-items 3 --function simulate");
  EXPECT_TRUE(contains(by_items.output, "removed 3 entries")) << by_items.output;
  EXPECT_EQ(joblet::Store(dir_.path()).list({.function = "simulate"}).size(), 3u);
  const CommandRun by_size = joblet_command("cache " + dir() + " prune --max-size 1K");
  EXPECT_EQ(by_size.status, 0) << by_size.output;
  std::uint64_t total = 0;
  for (const auto& info : joblet::Store(dir_.path()).list()) total += info.size;
  EXPECT_LE(total, 1024u);
}

TEST_F(CacheCommand, PruneRejectsBadLimits) {
  for (const char* arguments : {"prune", "prune --max-size 10X", "prune --older-than 7", "prune --max-items -1",
                                "prune --max-items 3 --function ../x"}) {
    const CommandRun run = joblet_command("cache " + dir() + " " + arguments);
    EXPECT_NE(run.status, 0) << arguments;
    EXPECT_TRUE(contains(run.output, "joblet: ")) << arguments << ": " << run.output;
  }
  EXPECT_EQ(joblet::Store(dir_.path()).list().size(), 11u);
}

TEST_F(CacheCommand, Clear) {
  const CommandRun one = joblet_command("cache " + dir() + " clear --function fit");
  EXPECT_TRUE(contains(one.output, "removed 1 entry")) << one.output;
  const CommandRun dry = joblet_command("cache " + dir() + " clear --dry-run");
  EXPECT_TRUE(contains(dry.output, "would remove 10 entries")) << dry.output;
  const CommandRun all = joblet_command("cache " + dir() + " clear");
  EXPECT_TRUE(contains(all.output, "removed 10 entries")) << all.output;
  EXPECT_TRUE(joblet::Store(dir_.path()).list().empty());
}

TEST_F(CacheCommand, OptionsMayComeBeforeOrAfterTheirCommand) {
  for (const std::string& arguments :
       {"cache " + dir() + " stats", "cache stats " + dir(), dir() + " cache stats", "cache stats -f fit " + dir()}) {
    const CommandRun run = joblet_command(arguments);
    EXPECT_EQ(run.status, 0) << arguments << ": " << run.output;
    EXPECT_TRUE(contains(run.output, dir_.path().string())) << arguments << ": " << run.output;
    EXPECT_TRUE(contains(run.output, " entr")) << arguments << ": " << run.output;
  }
  for (const std::string& arguments : {"cache ls --long " + dir() + " --function fit", dir() + " cache ls -l -f fit"}) {
    const CommandRun run = joblet_command(arguments);
    EXPECT_EQ(run.status, 0) << arguments << ": " << run.output;
    EXPECT_TRUE(contains(run.output, "std::string \"hello\", double 0.5")) << arguments << ": " << run.output;
  }
  for (const std::string& arguments : {"status " + dir(), dir() + " status"}) {
    const CommandRun run = joblet_command(arguments);
    EXPECT_EQ(run.status, 0) << arguments << ": " << run.output;
    EXPECT_TRUE(contains(run.output, "no campaigns in " + dir_.path().string())) << arguments << ": " << run.output;
  }
  for (const std::string& arguments : {"info " + dir(), dir() + " info"}) {
    const CommandRun run = joblet_command(arguments);
    EXPECT_EQ(run.status, 0) << arguments << ": " << run.output;
    EXPECT_TRUE(contains(run.output, dir_.path().string())) << arguments << ": " << run.output;
  }
}

// `joblet cache explain`: a function cached with two versions, an ignored argument, and enough
// entries that two keys share a first hex digit.
class CacheExplain : public ::testing::Test {
 protected:
  static double fit(int n, double scale, int /*verbosity*/) { return n * scale; }

  void SetUp() override {
    joblet::Memory memory(dir_.path(), {.store = {.fsync = false}});
    auto v1 = memory.cache("fit", fit, joblet::ignore_args<2>, {.version = "1"});
    for (int n = 0; n < 17; ++n) v1(n, 0.5, n);
    v1(1, 0.25, 3);
    auto v2 = memory.cache("fit", fit, joblet::ignore_args<2>, {.version = "2"});
    v2(1, 0.5, 0);
    base_ = v1.key(1, 0.5, 0).hex();
    other_scale_ = v1.key(1, 0.25, 0).hex();
    version_2_ = v2.key(1, 0.5, 0).hex();
    for (int n = 0; n < 17; ++n) keys_.push_back(v1.key(n, 0.5, 0).hex());
  }
  std::string dir() const { return "--dir " + dir_.path().string(); }
  CommandRun explain(const std::string& arguments) const {
    return joblet_command("cache explain " + dir() + " " + arguments);
  }

  TempDir dir_;
  std::string base_;         // fit(1, 0.5), version 1
  std::string other_scale_;  // fit(1, 0.25), version 1
  std::string version_2_;    // fit(1, 0.5), version 2
  std::vector<std::string> keys_;
};

TEST_F(CacheExplain, NamesTheArgumentThatDiffersAndNotTheIgnoredOne) {
  const CommandRun run = explain("fit --near " + other_scale_.substr(0, 10));
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "entry " + other_scale_ + " of 'fit'")) << run.output;
  EXPECT_TRUE(contains(run.output, "argument #2  ignored (ignore_args): not part of the key")) << run.output;
  // The nearest entry comes first, with the one part that differs.
  const std::size_t nearest = run.output.find("\n" + base_ + "  1 part differs: argument #1\n");
  EXPECT_NE(nearest, std::string::npos) << run.output;
  EXPECT_LT(nearest, run.output.find("2 parts differ")) << run.output;
  EXPECT_TRUE(contains(run.output, "arguments    int 1, double 0.5, (ignored)")) << run.output;
  // The ignored argument took other values, but is never a difference.
  EXPECT_FALSE(contains(run.output, "argument #2 (")) << run.output;
  EXPECT_FALSE(contains(run.output, ", argument #2")) << run.output;
  // Ten shown by default, all with --limit 0.
  EXPECT_TRUE(contains(run.output, "18 other entries of 'fit', nearest first")) << run.output;
  EXPECT_TRUE(contains(run.output, "\n(8 more: --limit 0 shows all)\n")) << run.output;
  const CommandRun all = explain("fit --limit 0 --near " + other_scale_);
  EXPECT_EQ(all.status, 0) << all.output;
  EXPECT_EQ(count_of(all.output, "part differs") + count_of(all.output, "parts differ"), 18) << all.output;
}

TEST_F(CacheExplain, SaysAMissOfANewVersionMissedBecauseOfTheVersion) {
  const CommandRun run = explain("fit --key " + version_2_);
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "key parts    version '2', source text none, build id none")) << run.output;
  EXPECT_TRUE(contains(run.output, "\n" + base_ + "  1 part differs: version ('2' here, '1' there)\n")) << run.output;
  EXPECT_TRUE(contains(run.output,
                       "it missed because its version ('2' here, '1' there) differs from the nearest "
                       "entry's"))
      << run.output;
  // The function's first entry had nothing to be served by.
  const CommandRun first_run = explain("fit --key " + keys_.front());
  EXPECT_EQ(first_run.status, 0) << first_run.output;
  EXPECT_TRUE(contains(first_run.output, "no entry of 'fit' created before it is stored")) << first_run.output;
}

TEST_F(CacheExplain, GroupsAFunctionsEntriesByVersionAndSaysWhichArgumentsVary) {
  const CommandRun run = explain("fit");
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "'fit' in " + dir_.path().string() + ": 19 entries in 2 groups")) << run.output;
  EXPECT_TRUE(contains(run.output,
                       "18 entries: version '1', source text none, build id none, result double, 3 "
                       "arguments (#2 ignored)\n  arguments that vary: #0 (17 values), #1 (2 values); "
                       "the same in all: none"))
      << run.output;
  EXPECT_TRUE(contains(run.output,
                       "1 entry: version '2', source text none, build id none, result double, 3 "
                       "arguments (#2 ignored)\n  arguments that vary: none; the same in all: #0, #1"))
      << run.output;
}

TEST_F(CacheExplain, AnEntryOfThePreviousJobletIsComparedAsFarAsItCanBe) {
  TempDir dir;
  joblet::testing::write_previous_joblet_entry(dir.path());
  joblet::Memory memory(dir.path());
  auto scale = memory.cache("scale", [](int x, double factor) { return x * factor; }, {.version = "1"});
  scale(3, 0.25);
  const CommandRun run =
      joblet_command("cache explain --dir " + dir.path().string() + " scale --near " + scale.key(3, 0.25).hex());
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_TRUE(contains(run.output, std::string(joblet::testing::kPreviousJobletKey) +
                                       "  the version and result type are the same: an argument differs; one of the "
                                       "two was written without per-argument hashes (by an older joblet), so which "
                                       "argument differs cannot be told"))
      << run.output;
  const CommandRun old = joblet_command("cache explain --dir " + dir.path().string() + " scale --near " +
                                        joblet::testing::kPreviousJobletKey);
  EXPECT_EQ(old.status, 0) << old.output;
  EXPECT_TRUE(contains(old.output, "key parts    not recorded (written by an older joblet)")) << old.output;
  const CommandRun groups = joblet_command("cache explain --dir " + dir.path().string() + " scale");
  EXPECT_TRUE(contains(groups.output,
                       "1 entry: version '1' (with its salts), result double, written without "
                       "per-argument hashes (by an older joblet)\n  which arguments vary cannot be "
                       "told"))
      << groups.output;
  const CommandRun show =
      joblet_command("cache show --dir " + dir.path().string() + " " + joblet::testing::kPreviousJobletKey);
  EXPECT_EQ(show.status, 0) << show.output;
  EXPECT_TRUE(contains(show.output, "key parts    not recorded")) << show.output;
}

TEST_F(CacheExplain, ShowPrintsTheKeyParts) {
  const CommandRun show = joblet_command("cache show " + dir() + " " + base_);
  EXPECT_EQ(show.status, 0) << show.output;
  EXPECT_TRUE(contains(show.output, "key parts    version '1', source text none, build id none\nargument #0  " +
                                        joblet::hash_value(1).hex() + "\nargument #1  " +
                                        joblet::hash_value(0.5).hex() + "\nargument #2  ignored"))
      << show.output;
}

TEST_F(CacheExplain, ErrorsNameTheCauseAndTheFix) {
  const auto fails_with = [&](const std::string& arguments, const std::string& message) {
    const CommandRun run = joblet_command(arguments);
    EXPECT_EQ(run.status, 1) << arguments << ": " << run.output;
    EXPECT_TRUE(contains(run.output, "joblet: ")) << arguments << ": " << run.output;
    EXPECT_TRUE(contains(run.output, message)) << arguments << ": " << run.output;
  };
  const std::string in = "cache explain " + dir() + " ";
  fails_with(in + "fitt",
             "no function 'fitt' in the cache " + dir_.path().string() + "; `joblet cache stats` lists its functions");
  fails_with(in + "../x", "the function name '../x'");
  fails_with(in + "fit --near 0123456789abcdef0123456789abcdef",
             "no entry of 'fit' has a key starting with '0123456789abcdef0123456789abcdef'; `joblet cache ls "
             "--function fit` lists them");
  fails_with(in + "fit --key 0123456789abcdef0123456789abcdef",
             "a miss leaves its entry once the function returns, unless the cache could not be written or the entry "
             "was cleared or pruned since. Run the program with JOBLET_LOG_LEVEL=debug");
  fails_with(in + "fit --near xyz", "'xyz' is not a cache key");
  fails_with("cache explain --dir " + (dir_.path() / "missing").string() + " fit", "no cache directory at");
  // 19 keys, 16 first digits: two of them share one.
  std::map<char, int> first_digits;
  for (const std::string& key : {base_, other_scale_, version_2_}) ++first_digits[key[0]];
  for (const std::string& key : keys_) {
    if (key != base_) ++first_digits[key[0]];
  }
  const auto shared =
      std::find_if(first_digits.begin(), first_digits.end(), [](const auto& d) { return d.second > 1; });
  ASSERT_NE(shared, first_digits.end());
  fails_with(in + "fit --near " + std::string(1, shared->first),
             std::to_string(shared->second) + " entries of 'fit' have keys starting with '" +
                 std::string(1, shared->first) + "'; give more digits");
  // --key and --near exclude each other.
  EXPECT_NE(explain("fit --key " + base_ + " --near " + base_).status, 0);
  // A function with no entries left.
  std::filesystem::create_directory(dir_.path() / "empty");
  fails_with(in + "empty", "function 'empty' has no entries");
  // A damaged entry: listed as unreadable, and refused as the subject.
  const auto path = joblet::Store(dir_.path()).entry_path("fit", *joblet::Hash128::from_hex(other_scale_));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 1);
  fails_with(in + "fit --near " + other_scale_, "entry " + other_scale_ + " of 'fit' is unusable (");
  const CommandRun listed = explain("fit --near " + base_);
  EXPECT_EQ(listed.status, 0) << listed.output;
  EXPECT_TRUE(contains(listed.output, "1 entry of 'fit' unreadable, not compared")) << listed.output;
}

TEST(JobletCommand, ShowDescribesADumpFileWithoutLoadingIt) {
  TempDir dir;
  const std::map<std::string, joblet::NDArray<double>> arrays{{"field", joblet::NDArray<double>({4, 5}, 0.5)}};
  const std::map<std::string, double> parameters{{"temperature", 2.5}};
  const std::map<std::string, std::map<std::string, std::string>> labels{{"run1", {{"model", "ising"}}}};
  const auto value = std::make_tuple(arrays, parameters, labels, std::vector<float>(1000, 1.0f));
  joblet::dump(value, dir.path() / "named.h5", {.compress = 4});
  const CommandRun run = joblet_command("show " + (dir.path() / "named.h5").string());
  EXPECT_EQ(run.status, 0) << run.output;
  for (const char* expected :
       {"joblet dump format 1",
        "type: std::tuple<std::map<std::string, joblet::NDArray<double>, std::less<std::string>",
        "/value: the value's encoding", "/arrays/0 = /field: float64 (4, 5), 160 B, deflate level 4, shuffled",
        "/arrays/1: float32 (1000,), 3.9 KiB", "/ attributes: temperature = 2.5",
        "/run1 attributes: model = \"ising\""}) {
    EXPECT_TRUE(contains(run.output, expected)) << expected << " in:\n" << run.output;
  }
  const std::string text_file = (dir.path() / "notes.txt").string();
  std::FILE* out = std::fopen(text_file.c_str(), "w");
  ASSERT_NE(out, nullptr);
  std::fputs("not HDF5\n", out);
  std::fclose(out);
  const CommandRun refused = joblet_command("show " + text_file);
  EXPECT_EQ(refused.status, 1) << refused.output;
  EXPECT_TRUE(contains(refused.output, "joblet: ")) << refused.output;
  EXPECT_NE(joblet_command("show " + (dir.path() / "missing.h5").string()).status, 0);
}

TEST(JobletCommand, EachCommandsHelpListsEveryOptionItTakes) {
  for (const std::string command :
       {"cache stats", "cache ls", "cache show", "cache explain", "cache clear", "cache prune", "status", "info"}) {
    const CommandRun run = joblet_command(command + " --help");
    EXPECT_EQ(run.status, 0) << command << ": " << run.output;
    EXPECT_TRUE(contains(run.output, "-d,--dir")) << command << ": " << run.output;
  }
  EXPECT_TRUE(contains(joblet_command("cache prune --help").output, "--older-than"));
  EXPECT_TRUE(contains(joblet_command("cache ls --help").output, "-l,--long"));
}

TEST(JobletCommand, BashCompletesCommandsOptionsAndDirectories) {
  TempDir dir;
  std::filesystem::create_directory(dir.path() / "cache-one");
  const std::string script = dir.path().string() + "/complete.sh";
  {
    std::FILE* out = std::fopen(script.c_str(), "w");
    ASSERT_NE(out, nullptr);
    // complete WORD...: what bash would offer for the last word.
    std::fputs(
        "source <(\"$1\" completion bash) || exit 1\n"
        "complete_words() { COMP_WORDS=(\"$@\"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _joblet;"
        " echo \"[${COMPREPLY[*]}]\"; }\n"
        "complete_words joblet ca\n"
        "complete_words joblet cache ''\n"
        "complete_words joblet cache prune --m\n"
        "complete_words joblet --dir /x cache pr\n"
        "complete_words joblet cache ls --dir \"$2/cache-\"\n"
        "complete_words joblet status --\n"
        "complete_words joblet cache ls --function ''\n",
        out);
    std::fclose(out);
  }
  FILE* pipe = popen(("bash " + script + " " + JOBLET_CLI + " " + dir.path().string() + " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  while (const std::size_t got = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, got);
  EXPECT_EQ(pclose(pipe), 0) << output;
  EXPECT_EQ(output,
            "[cache]\n"
            "[stats ls show explain clear prune]\n"
            "[--max-size --max-items]\n"
            "[prune]\n"
            "[" +
                dir.path().string() +
                "/cache-one]\n"
                "[--help --dir --watch --interval]\n"
                "[]\n");
  EXPECT_NE(joblet_command("completion fish").status, 0);
}

}  // namespace
