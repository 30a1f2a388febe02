#pragma once
/// @file
/// How many CPUs this process may use, and what an n_jobs value means here.

namespace joblet {

/// CPUs this process may run on: the affinity mask (taskset, mpirun --bind-to, Slurm's task
/// plugin) capped by the cgroup CPU quota (containers, Slurm's cgroup plugin), rounded up.
/// Never std::thread::hardware_concurrency() alone, which sees every CPU of the node.
/// `only_physical_cores` (as joblib's): hardware threads of one core (SMT, hyper-threading)
/// count once; the logical count where the kernel does not show the topology.
int cpu_count(bool only_physical_cores = false);

/// The number of workers `n_jobs` asks for: n >= 1 as is; -1 all CPUs available to the
/// caller; -k all but k-1 (never fewer than 1). Inside a task of a parallel call, "all CPUs"
/// is that task's share, so nested calls do not oversubscribe. n_jobs == 0 throws ConfigError.
int effective_n_jobs(int n_jobs = -1);

}  // namespace joblet
