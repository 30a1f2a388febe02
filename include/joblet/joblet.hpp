#pragma once
// joblet: joblib's Parallel/delayed, Memory and dump/load for C++ and HPC.
// One header for everything; each concept also has its own header.

#include "joblet/backend.hpp"
#include "joblet/cached_call.hpp"
#include "joblet/campaign.hpp"
#include "joblet/codec.hpp"
#include "joblet/config.hpp"
#include "joblet/cpu.hpp"
#include "joblet/delayed.hpp"
#include "joblet/dtype.hpp"
#include "joblet/dump.hpp"
#include "joblet/environment.hpp"
#include "joblet/error.hpp"
#include "joblet/exceptions.hpp"
#include "joblet/features.hpp"
#include "joblet/hash.hpp"
#include "joblet/log.hpp"
#include "joblet/memory.hpp"
#include "joblet/mmap_mode.hpp"
#include "joblet/ndarray.hpp"
#include "joblet/observer.hpp"
#include "joblet/outcome.hpp"
#include "joblet/parallel.hpp"
#include "joblet/progress.hpp"
#include "joblet/session.hpp"
#include "joblet/settings.hpp"
#include "joblet/shared_array.hpp"
#include "joblet/store.hpp"

#if JOBLET_HAS_MPI
#include "joblet/mpi.hpp"
#endif

/// Everything joblet offers a program: Parallel and delayed (joblib.Parallel), Memory (joblib.Memory),
/// dump and load (joblib.dump/load), NDArray and SharedArray, the backends and their observers, and
/// Session, which starts MPI and reads Slurm's environment. Names in joblet::detail are internals.
namespace joblet {}
