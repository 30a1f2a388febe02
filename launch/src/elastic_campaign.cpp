// Elastic campaigns: every process that runs the same campaign computes what no other process is
// computing, so that jobs started at any moment, on any nodes, share one campaign through the
// cache alone, with no server. A process first computes every task that nobody holds the
// compute-once lock of, putting the others aside at once (Campaign::run_deferring); when none
// is left, it waits on the locks of those put aside, taking over the ones whose holder died
// (Campaign::run_waiting), and the call then loads every result. A process that joins late
// finds most results present and computes only what is left.
#include "elastic_campaign.hpp"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "joblet/detail/log.hpp"
#include "joblet/error.hpp"

namespace joblet::detail {
namespace {

thread_local std::optional<ElasticRound> t_round;

class RoundScope {
 public:
  RoundScope(std::size_t tasks, std::size_t left) noexcept { t_round = ElasticRound{tasks, tasks - left}; }
  ~RoundScope() { t_round.reset(); }
  RoundScope(const RoundScope&) = delete;
  RoundScope& operator=(const RoundScope&) = delete;
};

// Where this process starts in the task list: processes that start together would otherwise all
// reach for the same first tasks, and every task but one would cost each of them a failed lock.
std::size_t starting_point(std::size_t tasks) {
  if (tasks == 0) return 0;
  const ErrorSite here = ErrorSite::here();
  const std::string who = here.host + ":" + std::to_string(here.pid);
  return std::hash<std::string>{}(who) % tasks;
}

}  // namespace

std::optional<ElasticRound> elastic_round() noexcept { return t_round; }

void run_elastic_campaign(CallStart& call, Campaign& campaign, const std::string& name) {
  // A collective call (mpi) runs each round on every rank at once, so every rank must pass the
  // same tasks: no filtering on what one rank sees in the cache, no per-process order. The
  // backend deals the tasks among the ranks itself.
  const bool collective = call.collective();
  const std::size_t total = call.size();
  std::vector<std::size_t> pending;
  pending.reserve(total);
  for (std::size_t index = 0; index < total; ++index) {
    if (collective || !campaign.in_cache(index)) pending.push_back(index);
  }
  if (pending.empty()) return;
  if (!collective) std::rotate(pending.begin(), pending.begin() + starting_point(pending.size()), pending.end());
  if (collective) {
    log().info("campaign {}: computing those of its {} tasks that are not in the cache and that no other process "
               "is computing",
               name, total);
  } else {
    log().info("campaign {}: {} of its {} tasks are not in the cache; computing those that no other process is "
               "computing",
               name, pending.size(), total);
  }
  std::vector<std::size_t> aside;
  {
    const RoundScope round(total, pending.size());
    aside = campaign.run_deferring(pending);
  }
  // Most of what was put aside is usually done by now: wait only for the rest.
  if (!collective) std::erase_if(aside, [&](std::size_t index) { return campaign.in_cache(index); });
  if (!call.all_agree(aside.empty())) {
    log().info("campaign {}: {} tasks are being computed by other processes; waiting for their results (a lock "
               "whose holder died is taken over)",
               name, aside.size());
    const RoundScope round(total, aside.size());
    campaign.run_waiting(aside);
  }
}

}  // namespace joblet::detail
