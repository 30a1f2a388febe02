#pragma once
/// @file
/// How this program was started — plain, by mpirun/mpiexec, by srun inside a Slurm job, or
/// directly in an sbatch script — read from the environment only (nothing is initialised).

#include <optional>
#include <string>

#include "joblet/settings.hpp"

namespace joblet {

enum class Launcher {
  none,         ///< started by hand or by a script outside Slurm
  mpirun,       ///< mpirun / mpiexec (OMPI_*, PMI_* or PMIX_* variables)
  srun,         ///< a Slurm job step (srun, or mpirun inside it registering a step)
  slurm_batch,  ///< the batch script of an sbatch job, outside any step
};

struct Environment {
  Launcher launcher = Launcher::none;
  /// Processes the launcher started for this program, and this one's index among them.
  /// ranks is 0 when the launcher does not say (PMIx alone): MPI must be asked.
  int ranks = 1;
  int rank = 0;
  /// Slurm: the job, its step, and the array element (empty when not in an array).
  std::string slurm_job_id;
  std::string slurm_step_id;
  std::string slurm_array_job_id;
  std::optional<int> slurm_array_task_id;
  std::optional<int> slurm_array_task_count;
  /// Tasks Slurm allocated to the job (SLURM_NTASKS), which a batch script run without srun
  /// leaves unused.
  int slurm_tasks = 0;

  /// Reads the variables of this process.
  static Environment detect();
  /// Whether a launcher started several ranks (or did not say how many): then a Session starts
  /// MPI and makes the mpi backend the default.
  bool launched_many() const;
  /// "srun, rank 3 of 8, Slurm job 1234 step 0, array element 2 of 4".
  std::string describe() const;
};

std::string_view launcher_name(Launcher launcher);


}  // namespace joblet
