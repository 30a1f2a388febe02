#pragma once
#include <filesystem>
#include <optional>

namespace joblet::detail {
// The CPU quota of this process's cgroups (v1 cpu controller or v2 cpu.max), in CPUs, read
// from files under `prefix` ("/" on a real system; a fake tree in tests). nullopt: no quota.
std::optional<double> cgroup_cpu_limit(const std::filesystem::path& prefix);
// CPUs in this process's affinity mask.
int affinity_cpu_count();
}  // namespace joblet::detail
