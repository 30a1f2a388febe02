#pragma once
// How many CPUs a parallel call started here may use. Outside any task it is cpu_count(),
// unless this process was given a share of them (a forked worker, or an MPI rank sharing its
// node's CPUs with other ranks); inside a task of a threads call, that task's share.

namespace joblet::detail {

int cpu_budget();
// Gives this process a share of the CPUs it can see (at least 1).
void set_process_cpu_budget(int cpus);

}  // namespace joblet::detail
