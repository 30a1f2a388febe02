// cpu_count(): the affinity mask and the cgroup quota, on real processes and on fake cgroup trees.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>
#include <joblet/joblet.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include <joblet/detail/cgroup.hpp>

namespace {

namespace fs = std::filesystem;

class FakeRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("joblet-cgroup-" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "proc/self");
  }
  void TearDown() override { fs::remove_all(root_); }
  void write(const fs::path& relative, const std::string& text) {
    fs::create_directories((root_ / relative).parent_path());
    std::ofstream(root_ / relative) << text;
  }
  // Two packages of two cores of two hardware threads: CPUs 0-7, siblings n and n + 4 (as Linux
  // numbers them), core ids repeating in each package.
  void write_topology(int cpus) {
    for (int cpu = 0; cpu < cpus; ++cpu) {
      const std::string topology = "sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      write(topology + "physical_package_id", std::to_string((cpu % 4) / 2) + "\n");
      write(topology + "core_id", std::to_string(cpu % 2) + "\n");
    }
  }
  fs::path root_;
};

TEST_F(FakeRoot, CgroupV2QuotaIsRoundedUpByTheCaller) {
  write("proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n");
  write("proc/self/cgroup", "0::/slurm/job_42/step_0\n");
  write("sys/fs/cgroup/slurm/job_42/step_0/cpu.max", "250000 100000\n");
  write("sys/fs/cgroup/slurm/job_42/cpu.max", "max 100000\n");
  auto limit = joblet::detail::cgroup_cpu_limit(root_);
  ASSERT_TRUE(limit.has_value());
  EXPECT_DOUBLE_EQ(*limit, 2.5);
}

TEST_F(FakeRoot, TheSmallestQuotaUpTheHierarchyWins) {
  write("proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
  write("proc/self/cgroup", "0::/a/b\n");
  write("sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
  write("sys/fs/cgroup/a/cpu.max", "100000 100000\n");
  EXPECT_DOUBLE_EQ(*joblet::detail::cgroup_cpu_limit(root_), 1.0);
}

TEST_F(FakeRoot, CgroupV1CpuControllerIsRead) {
  write("proc/self/mountinfo",
        "35 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "36 25 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
  write("proc/self/cgroup", "5:memory:/job\n4:cpu,cpuacct:/job\n");
  write("sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us", "300000\n");
  write("sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
  EXPECT_DOUBLE_EQ(*joblet::detail::cgroup_cpu_limit(root_), 3.0);
}

TEST_F(FakeRoot, NoQuotaMeansNoLimit) {
  write("proc/self/mountinfo", "35 25 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
  write("proc/self/cgroup", "4:cpu:/\n");
  write("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
  write("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
  EXPECT_FALSE(joblet::detail::cgroup_cpu_limit(root_).has_value());
}

TEST_F(FakeRoot, AContainerSeesOnlyItsSubtree) {
  // Mounted with root /docker/abc: our path /docker/abc is the mount point itself.
  write("proc/self/mountinfo", "30 23 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
  write("proc/self/cgroup", "0::/docker/abc\n");
  write("sys/fs/cgroup/cpu.max", "150000 100000\n");
  EXPECT_DOUBLE_EQ(*joblet::detail::cgroup_cpu_limit(root_), 1.5);
}

TEST_F(FakeRoot, MissingFilesMeanNoLimit) { EXPECT_FALSE(joblet::detail::cgroup_cpu_limit(root_).has_value()); }

TEST_F(FakeRoot, PhysicalCoresCountHardwareThreadsOfACoreOnce) {
  write_topology(8);
  EXPECT_EQ(joblet::detail::physical_cores(root_, {0, 1, 2, 3, 4, 5, 6, 7}), 4);
  EXPECT_EQ(joblet::detail::physical_cores(root_, {0, 4}), 1);     // two threads of one core
  EXPECT_EQ(joblet::detail::physical_cores(root_, {0, 2}), 2);     // the same core id, two packages
  EXPECT_EQ(joblet::detail::physical_cores(root_, {1, 5, 3}), 2);  // only the CPUs given
}

TEST_F(FakeRoot, AnUnknownTopologyGivesNoCoreCount) {
  write_topology(2);
  EXPECT_FALSE(joblet::detail::physical_cores(root_, {0, 1, 2}).has_value());
  EXPECT_FALSE(joblet::detail::physical_cores(root_, {}).has_value());
}

// Runs `body` in a forked child and returns its exit status.
template <class Body>
int in_child(Body body) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

TEST(CpuCount, FollowsTheAffinityMask) {
  EXPECT_LE(joblet::cpu_count(), joblet::detail::affinity_cpu_count());
  const int seen = in_child([] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) return 99;
    return joblet::cpu_count();
  });
  EXPECT_EQ(seen, 1);
  // n_jobs = -1 then means one worker, which is a plain loop.
  const int workers = in_child([] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);
    return joblet::Parallel({.n_jobs = -1, .backend = "threads"}).backend_name() == "sequential" ? 1 : 2;
  });
  EXPECT_EQ(workers, 1);
}

TEST(CpuCount, PhysicalCoresAreAtMostTheCpusAndOneOnOneCpu) {
  EXPECT_GE(joblet::cpu_count(true), 1);
  EXPECT_LE(joblet::cpu_count(true), joblet::cpu_count());
  if (const auto cores = joblet::detail::physical_cores("/", joblet::detail::affinity_cpus())) {
    EXPECT_EQ(joblet::cpu_count(true), std::min(*cores, joblet::cpu_count()));
  }
  const int seen = in_child([] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) return 99;
    return joblet::cpu_count(/*only_physical_cores=*/true);
  });
  EXPECT_EQ(seen, 1);
}

TEST(CpuCount, FollowsARealCgroupQuota) {
  // A child cgroup (v1 cpu controller, as on this kind of machine) with a quota of half a CPU,
  // and a fresh process moved into it before it starts.
  const fs::path v1 = "/sys/fs/cgroup/cpu";
  const fs::path group = v1 / ("joblet-test-" + std::to_string(getpid()));
  std::error_code error;
  if (!fs::exists(v1 / "cpu.cfs_quota_us") || !fs::create_directory(group, error)) {
    GTEST_SKIP() << "no writable cgroup v1 cpu controller here";
  }
  std::ofstream(group / "cpu.cfs_period_us") << 100000;
  std::ofstream(group / "cpu.cfs_quota_us") << 50000;
  const pid_t pid = fork();
  if (pid == 0) {
    std::ofstream(group / "cgroup.procs") << getpid() << std::flush;
    execl(JOBLET_CPU_COUNT_PROBE, JOBLET_CPU_COUNT_PROBE, nullptr);
    _exit(98);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  fs::remove(group, error);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << "cpu_count() in a cgroup limited to half a CPU";
}

}  // namespace
