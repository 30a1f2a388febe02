#include "joblet/environment.hpp"

#include <fmt/format.h>

#include <limits>

#include "joblet/detail/env.hpp"
#include "joblet/settings.hpp"
#include "joblet/error.hpp"

namespace joblet {
namespace {

std::optional<int> integer_variable(const char* name) {
  const auto value = detail::foreign_env_integer(name);
  if (!value || *value < std::numeric_limits<int>::min() || *value > std::numeric_limits<int>::max()) {
    return std::nullopt;
  }
  return static_cast<int>(*value);
}

}  // namespace

Environment Environment::detect() {
  Environment env;
  env.slurm_job_id = detail::env_string("SLURM_JOB_ID").value_or("");
  env.slurm_step_id = detail::env_string("SLURM_STEP_ID").value_or("");
  env.slurm_array_job_id = detail::env_string("SLURM_ARRAY_JOB_ID").value_or("");
  env.slurm_array_task_id = integer_variable("SLURM_ARRAY_TASK_ID");
  env.slurm_array_task_count = integer_variable("SLURM_ARRAY_TASK_COUNT");
  env.slurm_tasks = integer_variable("SLURM_NTASKS").value_or(0);

  // Open MPI's mpirun says how many ranks it started before MPI is initialised.
  if (auto size = integer_variable("OMPI_COMM_WORLD_SIZE")) {
    env.launcher = Launcher::mpirun;
    env.ranks = *size;
    env.rank = integer_variable("OMPI_COMM_WORLD_RANK").value_or(0);
    return env;
  }
  // A Slurm step (srun): SLURM_STEP_ID is set in steps only, not in the batch script.
  if (!env.slurm_step_id.empty()) {
    env.launcher = Launcher::srun;
    env.ranks = integer_variable("SLURM_STEP_NUM_TASKS").value_or(integer_variable("SLURM_NTASKS").value_or(1));
    env.rank = integer_variable("SLURM_PROCID").value_or(0);
    return env;
  }
  // MPICH's Hydra and other PMI-1/2 launchers.
  if (auto size = integer_variable("PMI_SIZE")) {
    env.launcher = Launcher::mpirun;
    env.ranks = *size;
    env.rank = integer_variable("PMI_RANK").value_or(0);
    return env;
  }
  // A PMIx launcher that does not export the size: only MPI can tell.
  if (detail::env_string("PMIX_RANK")) {
    env.launcher = Launcher::mpirun;
    env.ranks = 0;
    env.rank = integer_variable("PMIX_RANK").value_or(0);
    return env;
  }
  if (!env.slurm_job_id.empty()) env.launcher = Launcher::slurm_batch;
  return env;
}

bool Environment::launched_many() const {
  return ranks != 1 && (launcher == Launcher::mpirun || launcher == Launcher::srun);
}

std::string_view launcher_name(Launcher launcher) {
  switch (launcher) {
    case Launcher::mpirun:
      return "mpirun";
    case Launcher::srun:
      return "srun";
    case Launcher::slurm_batch:
      return "sbatch script (no job step)";
    case Launcher::none:
      break;
  }
  return "none";
}

std::string Environment::describe() const {
  std::string text(launcher_name(launcher));
  if (launcher == Launcher::mpirun || launcher == Launcher::srun) {
    text += ranks > 0 ? fmt::format(", rank {} of {}", rank, ranks) : fmt::format(", rank {}", rank);
  }
  if (!slurm_job_id.empty()) {
    text += ", Slurm job " + slurm_job_id;
    if (!slurm_step_id.empty()) text += " step " + slurm_step_id;
  }
  if (slurm_array_task_id) {
    text += fmt::format(", array element {}", *slurm_array_task_id);
    if (slurm_array_task_count) text += fmt::format(" of {}", *slurm_array_task_count);
  }
  return text;
}


}  // namespace joblet
