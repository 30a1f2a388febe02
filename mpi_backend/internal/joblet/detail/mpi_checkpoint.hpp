#pragma once
// For programs that must keep every rank in step across failures they cannot foresee, such as
// joblet's MPI test main (a failed assertion on one rank may skip a call the others make).

#include <vector>

namespace joblet::detail {

// A point every rank of the mpi backend reaches (the end of a test, say): `value` of every rank,
// in rank order. A rank that skipped a parallel call does not hang the others: the call they
// wait in fails on their side with a ConfigError, and the checkpoint waits until they come. After
// it every rank counts the same number of calls again. Throws ConfigError when a rank left the
// job (finalised MPI) instead of coming.
std::vector<long long> mpi_checkpoint(long long value);

// Tells every other rank that this one makes no more parallel calls, as MPI_Finalize does
// first: a rank waiting for this one in a call fails there instead of hanging.
void leave_mpi_calls() noexcept;

}  // namespace joblet::detail
