#include "mpi_liveness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>

#include "joblet/detail/log.hpp"
#include "joblet/settings.hpp"
#include "mpi_failures.hpp"

namespace joblet::detail {
namespace {

constexpr auto kHeartbeat = std::chrono::seconds(1);
// The exit status of a job stopped this way: EX_TEMPFAIL, "run it again", as at a time limit.
constexpr int kLostExit = 75;

}  // namespace

MpiLiveness::MpiLiveness(MpiTransport& transport, const std::vector<RankIdentity>& identities, bool across_nodes)
    : transport_(transport), identities_(identities) {
  const long long seconds = detail::integer_setting("JOBLET_MPI_LOST_AFTER").value_or(10);
  enabled_ = across_nodes && seconds > 0 && transport.size() > 1;
  if (!enabled_) return;
  lost_after_ = std::chrono::seconds(seconds);
  const auto now = Clock::now();
  next_heartbeat_ = now;
  last_check_ = now;
  last_heard_.assign(static_cast<std::size_t>(transport.size()), now);
}

void MpiLiveness::heard_from(int rank) noexcept {
  if (enabled_ && rank >= 0 && static_cast<std::size_t>(rank) < last_heard_.size()) {
    last_heard_[static_cast<std::size_t>(rank)] = Clock::now();
  }
}

void MpiLiveness::check(const Grants* grants) {
  if (!enabled_) return;
  const auto now = Clock::now();
  if (now - last_check_ > 2 * kHeartbeat) {
    // This rank was away from the call (its thread ran the program's own code between the items
    // of a generator): the others, running the same program, may have been too, so their
    // silence meanwhile proves nothing.
    std::fill(last_heard_.begin(), last_heard_.end(), now);
  }
  last_check_ = now;
  // Called on every progress round of a call: the rest, O(ranks) on rank 0, once a second.
  if (now < next_heartbeat_) return;
  if (transport_.rank() == 0) {
    transport_.send_to_all(kHeartbeatTag, {});
  } else {
    transport_.send(0, kHeartbeatTag, {});
  }
  next_heartbeat_ = now + kHeartbeat;
  bool any_lost = false;
  std::vector<int> silent;  // for three heartbeats or more: with a lost rank, likely lost too
  for (int rank = 0; rank < transport_.size(); ++rank) {
    if (rank == transport_.rank() || (transport_.rank() != 0 && rank != 0)) continue;
    const auto silence = now - last_heard_[static_cast<std::size_t>(rank)];
    if (silence > lost_after_) any_lost = true;
    if (silence > 3 * kHeartbeat) silent.push_back(rank);
  }
  if (any_lost) abort_for(silent, grants);
}

void MpiLiveness::abort_for(const std::vector<int>& lost, const Grants* grants) const {
  // By host: a lost node usually takes several ranks with it.
  std::map<std::string, std::string> ranks_by_host;
  for (int rank : lost) {
    const auto& who = identities_[static_cast<std::size_t>(rank)];
    std::string& ranks = ranks_by_host[who.host];
    if (!ranks.empty()) ranks += ", ";
    ranks += fmt::format("{} (pid {})", rank, who.pid);
    if (grants == nullptr) continue;
    std::string held;
    for (int slot = 0; slot < Grants::kPerRank; ++slot) {
      const auto& range = grants->held[rank * Grants::kPerRank + slot];
      for (std::uint64_t task = range.begin.load(); task < range.end.load(); ++task) {
        if (grants->job->finished(task)) continue;
        if (!held.empty()) held += " ";
        held += std::to_string(task);
      }
    }
    ranks += held.empty() ? " holding no task" : " holding tasks " + held;
  }
  std::string hosts;
  for (const auto& [host, ranks] : ranks_by_host) {
    if (!hosts.empty()) hosts += "; ";
    hosts += fmt::format("{}: rank {}", host, ranks);
  }
  log().critical(
      "lost {} (nothing heard for {} s: the node died, or its network is cut). This parallel call cannot go on "
      "without {}, so the job stops now; the results computed so far are in the cache: run the same command again "
      "to compute the rest (JOBLET_MPI_LOST_AFTER sets how long a silence means a lost node)",
      hosts, std::chrono::duration_cast<std::chrono::seconds>(lost_after_).count(),
      lost.size() == 1 ? "it" : "them");
  log().flush();
  MPI_Abort(MPI_COMM_WORLD, kLostExit);
  std::_Exit(kLostExit);
}

}  // namespace joblet::detail
