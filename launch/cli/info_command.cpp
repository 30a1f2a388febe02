#include "info_command.hpp"

#include <fmt/format.h>
#include <oneapi/tbb/version.h>
#include <sched.h>
#include <spdlog/version.h>
#include <sys/vfs.h>
#include <unistd.h>

#if defined(JOBLET_CLI_WITH_MPI)
#include <mpi.h>
#endif

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "joblet/backend.hpp"
#include "joblet/cpu.hpp"
#include "joblet/detail/cgroup.hpp"
#include "joblet/detail/filesystem_kind.hpp"
#include "joblet/environment.hpp"
#include "joblet/settings.hpp"

namespace joblet::cli {
namespace {

std::string filesystem_of(std::filesystem::path path) {
  // The cache may not exist yet: describe where it would be created.
  std::error_code error;
  path = std::filesystem::absolute(path, error);
  while (!path.empty() && !std::filesystem::exists(path, error)) path = path.parent_path();
  struct statfs info {};
  if (path.empty() || statfs(path.c_str(), &info) != 0) return "unknown";
  if (const auto* kind = detail::filesystem_kind(static_cast<unsigned long>(info.f_type))) {
    return fmt::format("{} ({})", kind->name, kind->note);
  }
  return fmt::format("type 0x{:x}", static_cast<unsigned long>(info.f_type));
}

std::string mpi_version() {
#if !defined(JOBLET_CLI_WITH_MPI)
  return "MPI: not built (JOBLET_MPI=OFF, or no MPI found)";
#else
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);  // allowed before MPI_Init
  std::string version(text, static_cast<std::size_t>(length));
  if (auto end = version.find_first_of(",\n"); end != std::string::npos) version.resize(end);
  return version;
#endif
}

}  // namespace

int run_info_command(const InfoArguments& arguments) {
  const Environment env = Environment::detect();
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const auto quota = detail::cgroup_cpu_limit("/");
  const std::string cache = arguments.cache_dir.empty() ? default_cache_dir() : arguments.cache_dir;

  fmt::print("launcher        {}\n", env.describe());
  fmt::print("node            {}\n", host);
  fmt::print("cpus            {} usable (affinity mask {}, cgroup quota {})\n", cpu_count(),
             detail::affinity_cpu_count(), quota ? fmt::format("{:.2f}", *quota) : std::string("none"));
  fmt::print("default backend {}\n",
             env.launched_many() ? "mpi (a launcher started several ranks)" : default_backend());
  fmt::print("backends        {}\n", fmt::join(backend_names(), ", "));
  fmt::print("cache           {} on {}\n", std::filesystem::absolute(cache).string(), filesystem_of(cache));
  fmt::print("versions        {}; oneTBB {}; spdlog {}.{}.{}\n", mpi_version(), TBB_runtime_version(), SPDLOG_VER_MAJOR,
             SPDLOG_VER_MINOR, SPDLOG_VER_PATCH);
  if (env.launcher == Launcher::slurm_batch && env.slurm_tasks > 1) {
    fmt::print("note            this Slurm job has {} tasks: start the program with srun to use them all\n",
               env.slurm_tasks);
  }
  fmt::print("\nsettings (environment variables; a malformed one is an error naming it)\n");
  for (const SettingInfo& setting : settings_catalogue()) {
    const char* value = std::getenv(std::string(setting.name).c_str());
    fmt::print("  {:<24} {:<14} {}\n", setting.name, setting.type,
               value && *value ? fmt::format("= {}", value) : fmt::format("(unset: {})", setting.default_value));
    fmt::print("  {:<24} {}\n", "", setting.meaning);
  }
  return 0;
}

}  // namespace joblet::cli
