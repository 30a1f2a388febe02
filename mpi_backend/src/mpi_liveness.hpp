#pragma once
// Whether the other ranks of a call are still there. On one node a rank that dies is noticed by
// its launcher (its process ends, and mpirun or srun end the job). Across nodes, a node that
// dies or is cut off leaves its ranks silent and nobody is told: the others would wait for
// them until the job's time limit. So in a call that spans nodes rank 0 and every other rank
// send each other an empty HEARTBEAT message every second, and a rank not heard from for
// JOBLET_MPI_LOST_AFTER seconds (default 10) is lost. MPI cannot go on without it, so the rank
// that notices says which node, which ranks and which tasks they held, and ends the job: what
// was computed is in the cache, and running the same command again computes the rest.

#include <chrono>
#include <vector>

#include "mpi_meetings.hpp"
#include "mpi_transport.hpp"

namespace joblet::detail {

struct Grants;

class MpiLiveness {
 public:
  // Off when the ranks share a node, or lost_after is zero.
  MpiLiveness(MpiTransport& transport, const std::vector<RankIdentity>& identities, bool across_nodes);

  // Any message from `rank` shows it is alive.
  void heard_from(int rank) noexcept;
  // Sends the heartbeats that are due; if a rank this one watches (rank 0 watches all, the
  // others rank 0) has been silent too long, reports it and aborts the MPI job. `grants`
  // (rank 0) names the tasks the lost ranks held.
  void check(const Grants* grants);

 private:
  using Clock = std::chrono::steady_clock;
  [[noreturn]] void abort_for(const std::vector<int>& lost, const Grants* grants) const;

  MpiTransport& transport_;
  const std::vector<RankIdentity>& identities_;
  bool enabled_ = false;
  Clock::duration lost_after_{};
  Clock::time_point next_heartbeat_{};
  Clock::time_point last_check_{};
  std::vector<Clock::time_point> last_heard_;
};

}  // namespace joblet::detail
