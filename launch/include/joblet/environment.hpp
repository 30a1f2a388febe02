#pragma once
/// @file
/// How this program was started — plain, by mpirun/mpiexec, by srun inside a Slurm job, or
/// directly in an sbatch script — read from the environment only (nothing is initialised).

#include <optional>
#include <string>

#include "joblet/settings.hpp"

namespace joblet {

/// What started this process, as its environment variables tell.
enum class Launcher {
  none,         ///< started by hand or by a script outside Slurm
  mpirun,       ///< mpirun / mpiexec (OMPI_*, PMI_* or PMIX_* variables)
  srun,         ///< a Slurm job step (srun, or mpirun inside it registering a step)
  slurm_batch,  ///< the batch script of an sbatch job, outside any step
};

/// How this process was started (detect()): the launcher, this process's rank among those it
/// started, and the Slurm job, step and array element it belongs to.
struct Environment {
  Launcher launcher = Launcher::none;  ///< what started the process
  /// Processes the launcher started for this program; 0 when the launcher does not say (PMIx
  /// alone): MPI must be asked.
  int ranks = 1;
  /// This process's index among them, from 0.
  int rank = 0;
  std::string slurm_job_id;                   ///< SLURM_JOB_ID; empty outside Slurm
  std::string slurm_step_id;                  ///< SLURM_STEP_ID; empty outside a job step
  std::string slurm_array_job_id;             ///< SLURM_ARRAY_JOB_ID; empty when not in a job array
  std::optional<int> slurm_array_task_id;     ///< SLURM_ARRAY_TASK_ID: this element of the job array
  std::optional<int> slurm_array_task_count;  ///< SLURM_ARRAY_TASK_COUNT: how many elements the array has
  /// Tasks Slurm allocated to the job (SLURM_NTASKS), which a batch script run without srun
  /// leaves unused.
  int slurm_tasks = 0;

  /// Reads the variables of this process. Never throws for malformed values: a number that does
  /// not parse counts as unset.
  static Environment detect();
  /// Whether a launcher started several ranks (or did not say how many): then a Session starts
  /// MPI and makes the mpi backend the default.
  bool launched_many() const;
  /// The parts that are known, in one line for logs and errors: "srun, rank 3 of 8, Slurm job
  /// 1234 step 0, array element 2 of 4".
  std::string describe() const;
};

/// The launcher as describe() names it: "none", "mpirun", "srun" or "sbatch script (no job step)".
std::string_view launcher_name(Launcher launcher);

}  // namespace joblet
