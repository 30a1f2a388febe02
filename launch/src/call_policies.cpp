// launch/'s policies for every Parallel call, installed as call observers (observer.hpp):
// campaigns are recorded for `joblet status`, a job-array element computes only its shard of a
// campaign, every other process cooperates with whoever else runs the same campaign
// (elastic_campaign.cpp), and a call stopped by a time limit ends the process with status 75.
// Installed with them: storage's files for the large results of process-based backends
// (result_files.cpp).
#include <signal.h>

#include <algorithm>
#include <memory>
#include <string_view>

#include "elastic_campaign.hpp"
#include "joblet/campaign.hpp"
#include "joblet/detail/env.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/stop.hpp"
#include "joblet/observer.hpp"
#include "joblet/session.hpp"
#include "joblet/settings.hpp"

namespace joblet::detail {

namespace {

// Which shard of a campaign this process computes: k of K.
struct Shard {
  std::size_t index = 0;
  std::size_t count = 1;
};

// From JOBLET_SHARD=k/K or, with JOBLET_SHARD=static in a Slurm job-array element, from
// SLURM_ARRAY_TASK_ID/_MIN/_COUNT. None for dynamic (the default: array elements share each
// campaign as elastic processes do, which measured faster than static shards on skewed task
// durations: bench/compare's array-skew) and off. Throws ConfigError for a malformed JOBLET_SHARD.
std::optional<Shard> active_shard() {
  const auto text = setting("JOBLET_SHARD");  // checked: off, static, dynamic, or k/K with 0 <= k < K
  if (!text || *text == "off" || *text == "dynamic") return std::nullopt;
  if (*text != "static") {
    const std::string_view whole = *text;
    const auto slash = whole.find('/');
    return Shard{static_cast<std::size_t>(*parse_integer(whole.substr(0, slash))),
                 static_cast<std::size_t>(*parse_integer(whole.substr(slash + 1)))};
  }
  const auto id = foreign_env_integer("SLURM_ARRAY_TASK_ID");
  if (!id) {
    if (first_time("shard-static-outside-array")) {
      log().warn(
          "JOBLET_SHARD=static, but this process is no job-array element (SLURM_ARRAY_TASK_ID is not set), so it "
          "runs whole calls; submit it with sbatch --array, or set JOBLET_SHARD=k/K to give it shard k of K");
    }
    return std::nullopt;
  }
  const long long first = foreign_env_integer("SLURM_ARRAY_TASK_MIN").value_or(0);
  const long long step = foreign_env_integer("SLURM_ARRAY_TASK_STEP").value_or(1);
  const long long count = foreign_env_integer("SLURM_ARRAY_TASK_COUNT").value_or(0);
  const long long offset = *id - first;
  if (step <= 0 || count <= 0 || offset < 0 || offset % step != 0 || offset / step >= count) {
    throw ConfigError("cannot tell which shard job-array element " + std::to_string(*id) +
                      " computes from SLURM_ARRAY_TASK_MIN/STEP/COUNT (an array with gaps?): set JOBLET_SHARD=k/K, "
                      "JOBLET_SHARD=dynamic to share each campaign, or JOBLET_SHARD=off to run whole calls");
  }
  return Shard{static_cast<std::size_t>(offset / step), static_cast<std::size_t>(count)};
}

// record_campaign(), or a warning (once) when it cannot be written; returns the name.
std::string record_campaign_quietly(Campaign& campaign) {
  try {
    // One process of an MPI job writes it (every rank would write the same record).
    if (process_rank() <= 0) return record_campaign(campaign.location(), campaign.function(), campaign.keys());
  } catch (const Error& e) {
    if (first_time("campaign-record")) {
      log().warn("cannot record this call's campaign for `joblet status`: {}", e.message());
    }
  }
  return campaign.function();
}

class CampaignPolicy final : public CallObserver {
 public:
  // In a shard, computes only the shard's tasks, then lets the call go on if every task is in
  // the cache (it then only loads results), or ends the process with status 0, leaving the
  // assembly to the last shard or to a run without a shard.
  void on_call_start(CallStart& call) override {
    Campaign* campaign = call.campaign();
    if (campaign == nullptr) return;
    const std::string name = record_campaign_quietly(*campaign);
    const auto shard = active_shard();
    if (!shard || shard->count < 2) {
      // Elastic rounds stop at their first failure, which a keep_going() call must not: it runs
      // whole, as a campaign of its own (its results still go to the shared cache).
      if (!call.nested() && !call.keep_going() && setting("JOBLET_ELASTIC").value_or("on") == "on") {
        run_elastic_campaign(call, *campaign, name);
      }
      return;
    }

    const std::size_t total = call.size();
    std::vector<std::size_t> mine;
    for (std::size_t index = shard->index; index < total; index += shard->count) mine.push_back(index);
    log().info("campaign {}: shard {} of {} computes {} of its {} tasks", name, shard->index, shard->count, mine.size(),
               total);
    campaign->run_only(mine);
    std::size_t in_cache = 0;
    for (std::size_t index = 0; index < total; ++index) in_cache += campaign->in_cache(index) ? 1 : 0;
    if (call.all_agree(in_cache == total)) return;  // every shard is done: assemble
    log().warn(
        "campaign {}: shard {} of {} done ({} tasks); {} of {} tasks are in the cache, so this process ends here. "
        "The last shard to finish, or a run without a shard (a dependent job), assembles the results; "
        "`joblet status` shows the progress",
        name, shard->index, shard->count, mine.size(), in_cache, total);
    exit_process(0);
  }
};

class TimeLimitPolicy final : public CallObserver {
 public:
  // SIGTERM/SIGUSR1 under Session (a Slurm time limit): the call let its running tasks finish;
  // say what is left and end with "incomplete, run again".
  void on_call_end(const CallEnd& end) override {
    if (end.stop_signal == 0 || end.nested) return;
    std::size_t tasks = end.tasks;
    std::size_t done = end.done;
    if (const auto round = elastic_round()) {  // a round of an elastic campaign: count the campaign's tasks
      tasks = round->tasks;
      done = round->done_before + end.done - std::min(end.failed, end.done);  // put aside: not done
    }
    log().warn(
        "stopped by {}: {} of {} tasks done, {} remaining; the results of cached tasks are in the cache: run "
        "the same command again to compute only what is missing",
        end.stop_signal == SIGUSR1 ? "SIGUSR1 (early warning of the time limit)" : "SIGTERM", done, tasks,
        tasks - std::min(done, tasks));
    exit_process(kIncompleteExitStatus);
  }
};

}  // namespace

void install_result_files() noexcept;  // result_files.cpp

bool install_launch_policies() noexcept {
  static const bool installed = [] {
    install_result_files();
    try {
      add_call_observer(std::make_shared<CampaignPolicy>());
      add_call_observer(std::make_shared<TimeLimitPolicy>());
      return true;
    } catch (...) {  // out of memory at start-up: calls run without the policies
      return false;
    }
  }();
  return installed;
}

}  // namespace joblet::detail
