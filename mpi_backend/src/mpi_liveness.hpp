#pragma once
// Whether the other ranks are still there. On one node a rank that dies is noticed by its
// launcher (its process ends, and mpirun or srun end the job). Across nodes, a node that dies or
// is cut off leaves its ranks silent and nobody is told: the others would wait for them, in a
// call, a meeting between calls or MPI_Finalize, until the job's time limit. So from the
// backend's registration to MPI_Finalize, a thread of each rank sends an empty message every
// second (rank 0 to every rank, the others to rank 0) on a communicator of its own, whatever the
// rank's main thread is doing, and a rank not heard from for JOBLET_MPI_LOST_AFTER seconds
// (default 10) is lost. MPI cannot go on without it, so the rank that notices says which node,
// which ranks and which tasks of the running call they held, and ends the job: what was computed
// is in the cache, and running the same command again computes the rest.

#include <mpi.h>

namespace joblet::detail {

// Collective over `communicator` (at registration). Watches only when the ranks span several
// nodes and JOBLET_MPI_LOST_AFTER is not 0; a second call replaces the first watch.
void start_liveness_watch(MPI_Comm communicator, bool across_nodes);
// `rank` announced that it finalises MPI: it is not expected to speak anymore.
void liveness_rank_left(int rank) noexcept;
// Ends the watch (before MPI_Finalize, once every rank announced that it finalises).
void stop_liveness_watch() noexcept;

}  // namespace joblet::detail
