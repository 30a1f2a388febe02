#pragma once
#include <filesystem>
#include <optional>
#include <vector>

namespace joblet::detail {
// The CPU quota of this process's cgroups (v1 cpu controller or v2 cpu.max), in CPUs, read
// from files under `prefix` ("/" on a real system; a fake tree in tests). nullopt: no quota.
std::optional<double> cgroup_cpu_limit(const std::filesystem::path& prefix);
// CPUs in this process's affinity mask (at least 1).
int affinity_cpu_count();
// The CPUs in this process's affinity mask, by number.
std::vector<int> affinity_cpus();
// How many physical cores `cpus` span, from the topology under `prefix`
// (sys/devices/system/cpu/cpuN/topology); nullopt where a CPU's topology cannot be read.
std::optional<int> physical_cores(const std::filesystem::path& prefix, const std::vector<int>& cpus);
}  // namespace joblet::detail
