#include "joblet/cpu.hpp"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "joblet/detail/cgroup.hpp"
#include "joblet/error.hpp"
#include "worker_context.hpp"

namespace joblet {
namespace detail {
namespace {

std::optional<std::string> read_first_line(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, separator)) parts.push_back(part);
  return parts;
}

bool has_token(const std::string& list, const std::string& token) {
  auto parts = split(list, ',');
  return std::find(parts.begin(), parts.end(), token) != parts.end();
}

// The quota in CPUs set in one cgroup directory, if any.
std::optional<double> quota_in(const std::filesystem::path& dir, bool v2) {
  if (v2) {
    auto line = read_first_line(dir / "cpu.max");  // "max 100000" or "150000 100000"
    if (!line) return std::nullopt;
    auto fields = split(*line, ' ');
    if (fields.size() != 2 || fields[0] == "max") return std::nullopt;
    const double quota = std::stod(fields[0]), period = std::stod(fields[1]);
    return period > 0 ? std::optional<double>(quota / period) : std::nullopt;
  }
  auto quota = read_first_line(dir / "cpu.cfs_quota_us");
  auto period = read_first_line(dir / "cpu.cfs_period_us");
  if (!quota || !period) return std::nullopt;
  const double q = std::stod(*quota), p = std::stod(*period);
  if (q <= 0 || p <= 0) return std::nullopt;  // -1: no quota
  return q / p;
}

struct Mount {
  std::string root;          // the cgroup path this mount shows
  std::filesystem::path at;  // where it is mounted
  bool v2;
};

}  // namespace

std::optional<double> cgroup_cpu_limit(const std::filesystem::path& prefix) {
  // Which cgroup filesystems are mounted where, and which cgroup this process is in.
  std::vector<Mount> mounts;
  {
    std::ifstream in(prefix / "proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
      const auto dash = line.find(" - ");
      if (dash == std::string::npos) continue;
      auto before = split(line.substr(0, dash), ' ');
      auto after = split(line.substr(dash + 3), ' ');
      if (before.size() < 5 || after.size() < 3) continue;
      if (after[0] == "cgroup2") {
        mounts.push_back({before[3], prefix / before[4].substr(1), true});
      } else if (after[0] == "cgroup" && has_token(after[2], "cpu")) {
        mounts.push_back({before[3], prefix / before[4].substr(1), false});
      }
    }
  }
  std::optional<double> limit;
  std::ifstream in(prefix / "proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {  // "hierarchy-id:controllers:path"
    const auto first = line.find(':');
    const auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    const bool v2 = controllers.empty();
    if (!v2 && !has_token(controllers, "cpu")) continue;
    for (const Mount& mount : mounts) {
      if (mount.v2 != v2) continue;
      // Inside a container the mount shows a subtree: strip its root from our path.
      std::string relative = path;
      if (mount.root != "/" && relative.rfind(mount.root, 0) == 0) relative = relative.substr(mount.root.size());
      std::filesystem::path dir = mount.at / std::filesystem::path(relative).relative_path();
      // A quota anywhere up the hierarchy applies; the smallest wins.
      for (;;) {
        if (auto quota = quota_in(dir, v2)) limit = limit ? std::min(*limit, *quota) : *quota;
        if (dir == mount.at || !dir.has_parent_path() || dir.parent_path() == dir) break;
        dir = dir.parent_path();
      }
    }
  }
  return limit;
}

std::vector<int> affinity_cpus() {
  std::vector<int> cpus;
  for (int capacity = 1024; capacity <= 1 << 20; capacity *= 2) {
    cpu_set_t* set = CPU_ALLOC(capacity);
    const std::size_t bytes = CPU_ALLOC_SIZE(capacity);
    CPU_ZERO_S(bytes, set);
    if (sched_getaffinity(0, bytes, set) == 0) {
      for (int cpu = 0; cpu < capacity; ++cpu) {
        if (CPU_ISSET_S(cpu, bytes, set)) cpus.push_back(cpu);
      }
      CPU_FREE(set);
      return cpus;
    }
    CPU_FREE(set);
    if (errno != EINVAL) break;  // EINVAL: the mask is larger than `capacity` CPUs
  }
  return cpus;
}

int affinity_cpu_count() { return std::max(static_cast<int>(affinity_cpus().size()), 1); }

std::optional<int> physical_cores(const std::filesystem::path& prefix, const std::vector<int>& cpus) {
  std::set<std::pair<std::string, std::string>> cores;  // {package, core}
  for (const int cpu : cpus) {
    const auto topology = prefix / "sys/devices/system/cpu" / ("cpu" + std::to_string(cpu)) / "topology";
    auto package = read_first_line(topology / "physical_package_id");
    auto core = read_first_line(topology / "core_id");
    if (!package || !core) return std::nullopt;
    cores.emplace(std::move(*package), std::move(*core));
  }
  if (cores.empty()) return std::nullopt;
  return static_cast<int>(cores.size());
}

}  // namespace detail

int cpu_count(bool only_physical_cores) {
  // The affinity mask is cheap to read and may change (taskset, a forked worker pinned
  // later); the cgroup quota is set before the program starts, so it is read once.
  static const std::optional<double> quota = detail::cgroup_cpu_limit("/");
  const std::vector<int> allowed = detail::affinity_cpus();
  int cpus = std::max(static_cast<int>(allowed.size()), 1);
  if (only_physical_cores) {
    if (const auto cores = detail::physical_cores("/", allowed)) cpus = std::min(cpus, *cores);
  }
  if (quota) cpus = std::min(cpus, static_cast<int>(std::ceil(*quota - 1e-9)));
  return std::max(cpus, 1);
}

int effective_n_jobs(int n_jobs) {
  if (n_jobs == 0) {
    throw ConfigError(
        "n_jobs == 0 is not valid: use 1 to run tasks one after the other in the caller, "
        "-1 for all CPUs, or a positive number of workers");
  }
  if (n_jobs > 0) return n_jobs;
  return std::max(detail::cpu_budget() + 1 + n_jobs, 1);
}

}  // namespace joblet
