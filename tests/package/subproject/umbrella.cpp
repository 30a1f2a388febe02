// <joblet/joblet.hpp> in a build of joblet without its mpi backend: no <mpi.h>, no joblet::mpi.
#include <joblet/joblet.hpp>

#if JOBLET_HAS_MPI
#error "JOBLET_MPI=OFF, yet joblet says it has MPI"
#endif

int answer() { return joblet::Parallel().n_workers(); }
