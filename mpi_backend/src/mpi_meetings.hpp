#pragma once
// Where the ranks of the mpi backend meet (the start of every parallel call, all_agree,
// checkpoints) and how a rank leaves the job, so that no rank waits forever for one that
// skipped a call or finalised MPI (see mpi_meetings.cpp).

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace joblet::detail {

// Throws Error naming `what` and MPI's explanation unless `status` is MPI_SUCCESS.
void check(int status, const char* what);

struct RankIdentity {
  long pid = 0;
  std::string host;
};

// Collective over `communicator`: the private communicators meetings and departures use.
void open_meetings(MPI_Comm communicator);
// The communicator each call's own is duplicated from (the group of `communicator` above).
MPI_Comm meetings_communicator() noexcept;
// The start of a parallel call of `tasks` tasks whose results have type `type_hash`: every
// rank's identity, once every rank reached the same call. Throws the same ConfigError on every
// rank when they reached different calls, and a ConfigError naming the rank when one left.
std::vector<RankIdentity> meet_for_call(std::uint64_t tasks, std::uint64_t type_hash);
// Whether `value` holds on every rank (Backend::all_agree), met like a call.
bool meet_to_agree(bool value);
// The `value` rank 0 passed (Backend::first_process_value), met like a call.
std::int64_t meet_to_share(std::int64_t value);
// Before MPI_Finalize: announces that this rank leaves, waits until every other rank did, and
// logs an error when ranks made different calls.
void leave_meetings() noexcept;

}  // namespace joblet::detail
