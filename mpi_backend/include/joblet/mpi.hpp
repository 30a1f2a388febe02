#pragma once
/// @file
/// The "mpi" backend: the same Parallel call on every rank of an MPI job (SPMD).
///
/// The contract: every rank of the communicator reaches the same Parallel call with the same
/// task list, like any MPI collective. Ranks claim task indices from rank 0 as they go (rank 0
/// computes too), run them, and every rank receives every result, so the call returns the same
/// vector on every rank. A task's error is rethrown on every rank as its own type where
/// joblet/exceptions.hpp can make it again (else as a joblet::TaskError), naming the rank, host,
/// pid and task. A call where ranks disagree on the number of tasks fails on
/// every rank with a ConfigError instead of hanging.
///
/// joblet::Session registers the backend (and makes it the default) when a launcher started
/// more than one rank; call register_mpi_backend() yourself only if you initialise MPI yourself.
///
/// This header includes `<mpi.h>` without the MPI-2 C++ bindings (joblet uses MPI's C API only).
/// A program that still uses those bindings includes `<mpi.h>` before joblet's headers.

// joblet uses MPI's C API only. Open MPI's and MPICH's <mpi.h> otherwise also parse their MPI-2
// C++ bindings (dropped by MPI-3), which cost every file that includes joblet 1.5 s of compiling.
// A program that still uses those bindings includes <mpi.h> before joblet's headers.
// The macros below are defined for <mpi.h> only and undefined again: not in the API reference.
/// @cond
#if !defined(OMPI_SKIP_MPICXX)
#define OMPI_SKIP_MPICXX 1
#define JOBLET_DEFINED_OMPI_SKIP_MPICXX
#endif
#if !defined(MPICH_SKIP_MPICXX)
#define MPICH_SKIP_MPICXX 1
#define JOBLET_DEFINED_MPICH_SKIP_MPICXX
#endif
#include <mpi.h>
#ifdef JOBLET_DEFINED_OMPI_SKIP_MPICXX
#undef OMPI_SKIP_MPICXX
#undef JOBLET_DEFINED_OMPI_SKIP_MPICXX
#endif
#ifdef JOBLET_DEFINED_MPICH_SKIP_MPICXX
#undef MPICH_SKIP_MPICXX
#undef JOBLET_DEFINED_MPICH_SKIP_MPICXX
#endif
/// @endcond

namespace joblet {

namespace detail {
bool install_mpi_session_hooks() noexcept;
/// Any program that includes this header lets joblet::Session initialise MPI when a launcher
/// started several ranks (this initialiser also makes the linker keep the MPI support).
inline const bool mpi_session_hooks_installed = install_mpi_session_hooks();
}  // namespace detail

/// Registers the "mpi" backend for calls on `communicator` (MPI must be initialised, ideally
/// with MPI_THREAD_MULTIPLE). Collective: every rank of the communicator calls it. It also
/// gives each rank its share of the node's CPUs for threads calls (hybrid MPI + threads).
void register_mpi_backend(MPI_Comm communicator = MPI_COMM_WORLD);

}  // namespace joblet
