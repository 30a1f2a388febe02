// Large results of the processes backend travel through a per-call folder of files, mapped by
// the caller, instead of through the pipes (Config::max_nbytes, Config::temp_folder). The
// folder is gone when the call ends, however it ends.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

// The umbrella header: it installs storage's result files into the engine (launch/ composes them).
#include "joblet/joblet.hpp"
#include "support.hpp"

namespace {

using joblet::NDArray;
using joblet::testing::TempDir;

constexpr std::size_t kLarge = (std::size_t{2} << 20) / sizeof(double);  // 2 MiB: above the 1 MiB default

NDArray<double> filled(std::size_t n, double value) { return NDArray<double>({n}, value); }

std::size_t entries(const std::filesystem::path& directory) {
  return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(directory), {}));
}

joblet::Config processes(const TempDir& folder) {
  return {.n_jobs = 2, .backend = "processes", .temp_folder = folder.path().string()};
}

auto tasks_returning(std::size_t n, int count) {
  return std::views::iota(0, count) |
         std::views::transform([n](int i) { return joblet::delayed([n](int k) { return filled(n, k); }, i); });
}

TEST(ProcessResults, LargeArraysComeBackMappedAndTheFolderGoes) {
  TempDir folder;
  std::vector<NDArray<double>> results = joblet::Parallel(processes(folder))(tasks_returning(kLarge, 6));
  ASSERT_EQ(results.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(results[i].is_mapped());
    EXPECT_EQ(std::string(results[i].mapped_file()).rfind(folder.path().string(), 0), 0u);
    EXPECT_EQ(results[i], filled(kLarge, i));
  }
  EXPECT_EQ(entries(folder.path()), 0u);   // the call's folder is gone ...
  EXPECT_EQ(results[5](kLarge - 1), 5.0);  // ... and the mapped results stay valid
  results[0].mutable_at(0) = 42;           // private pages: writable
  EXPECT_EQ(results[0](0), 42.0);
}

TEST(ProcessResults, SmallArraysAndDisabledFoldersUseThePipe) {
  TempDir folder;
  auto small = joblet::Parallel(processes(folder))(tasks_returning(1000, 4));
  EXPECT_FALSE(small[3].is_mapped());
  EXPECT_EQ(small[3], filled(1000, 3));
  joblet::Config config = processes(folder);
  config.max_nbytes = joblet::disable_memmapping;
  auto large = joblet::Parallel(config)(tasks_returning(kLarge, 2));
  EXPECT_FALSE(large[1].is_mapped());
  EXPECT_EQ(large[1], filled(kLarge, 1));
  EXPECT_EQ(entries(folder.path()), 0u);
}

TEST(ProcessResults, ThresholdIsConfigurable) {
  TempDir folder;
  joblet::Config config = processes(folder);
  config.max_nbytes = 1000;                                          // bytes; arrays larger than this go to files
  auto results = joblet::Parallel(config)(tasks_returning(200, 2));  // 1600 bytes each
  EXPECT_TRUE(results[0].is_mapped());
  EXPECT_EQ(results[1], filled(200, 1));
}

struct Mixed {
  std::string name;
  std::vector<double> big;  // a std::vector travels through a file too, then is read back
  NDArray<float> field;
  std::vector<int> small;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(name, big, field, small);
  }
};

TEST(ProcessResults, ResultsMixingArraysAndOtherValues) {
  TempDir folder;
  auto results = joblet::Parallel(processes(folder))(std::views::iota(0, 4) | std::views::transform([](int i) {
                                                       return joblet::delayed(
                                                           [](int k) {
                                                             return Mixed{"task " + std::to_string(k),
                                                                          std::vector<double>(kLarge, k),
                                                                          NDArray<float>({512, 1024}, 0.5f * k),
                                                                          {k, k}};
                                                           },
                                                           i);
                                                     }));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(results[i].name, "task " + std::to_string(i));
    EXPECT_EQ(results[i].big, std::vector<double>(kLarge, i));
    EXPECT_TRUE(results[i].field.is_mapped());
    EXPECT_EQ(results[i].field(511, 1023), 0.5f * i);
    EXPECT_EQ(results[i].small, (std::vector<int>{i, i}));
  }
  EXPECT_EQ(entries(folder.path()), 0u);
}

TEST(ProcessResults, TheFolderGoesWhenATaskThrows) {
  TempDir folder;
  auto tasks = std::views::iota(0, 8) | std::views::transform([](int i) {
                 return joblet::delayed(
                     [](int k) {
                       if (k == 5) throw std::runtime_error("task 5 failed");
                       return filled(kLarge, k);
                     },
                     i);
               });
  EXPECT_THROW(joblet::Parallel(processes(folder))(tasks), std::runtime_error);
  EXPECT_EQ(entries(folder.path()), 0u);
}

TEST(ProcessResults, TheFolderGoesWhenAWorkerIsKilled) {
  TempDir folder;
  auto tasks = std::views::iota(0, 6) | std::views::transform([](int i) {
                 return joblet::delayed(
                     [](int k) {
                       if (k == 3) raise(SIGKILL);
                       return filled(kLarge, k);
                     },
                     i);
               });
  EXPECT_THROW(joblet::Parallel(processes(folder))(tasks), joblet::WorkerDiedError);
  EXPECT_EQ(entries(folder.path()), 0u);
}

TEST(ProcessResults, TheFolderDefaultsToSharedMemoryOrTheEnvironment) {
  TempDir folder;
  setenv("JOBLET_TEMP_FOLDER", folder.path().c_str(), 1);
  auto from_env = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks_returning(kLarge, 2));
  unsetenv("JOBLET_TEMP_FOLDER");
  EXPECT_EQ(std::string(from_env[0].mapped_file()).rfind(folder.path().string(), 0), 0u);
  auto by_default = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks_returning(kLarge, 2));
  ASSERT_TRUE(by_default[0].is_mapped());
  // /dev/shm when it has 2 GB free (joblib's rule), else TMPDIR or /tmp.
  const std::string file(by_default[0].mapped_file());
  EXPECT_TRUE(file.rfind("/dev/shm/joblet-", 0) == 0 || file.find("/joblet-") != std::string::npos) << file;
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(file).parent_path()));
}

TEST(ProcessResults, ThreadsAndOneWorkerNeverUseFiles) {
  TempDir folder;
  joblet::Config config = processes(folder);
  config.n_jobs = 1;  // runs in the caller
  EXPECT_FALSE(joblet::Parallel(config)(tasks_returning(kLarge, 2))[0].is_mapped());
  config.n_jobs = 2;
  config.backend = "threads";
  EXPECT_FALSE(joblet::Parallel(config)(tasks_returning(kLarge, 2))[0].is_mapped());
}

}  // namespace
