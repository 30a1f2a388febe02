// The `joblet cache` command, run as a program on a real cache.

#include <gtest/gtest.h>
#include <sys/wait.h>

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
       {"cache stats", "cache ls", "cache show", "cache clear", "cache prune", "status", "info"}) {
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
            "[stats ls show clear prune]\n"
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
