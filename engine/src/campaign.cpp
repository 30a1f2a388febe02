#include "joblet/detail/campaign.hpp"

#include <string_view>

#include "joblet/campaign.hpp"
#include "joblet/detail/env.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/stop.hpp"

namespace joblet::detail {

std::optional<Shard> active_shard() {
  if (auto text = env_string("JOBLET_SHARD")) {
    if (*text == "off") return std::nullopt;
    const std::string_view whole = *text;
    const auto slash = whole.find('/');
    std::optional<long long> index, count;
    if (slash != std::string_view::npos) {
      index = parse_integer(whole.substr(0, slash));
      count = parse_integer(whole.substr(slash + 1));
    }
    if (!index || !count || *index < 0 || *index >= *count) {
      throw ConfigError("JOBLET_SHARD='" + *text +
                        "' is not valid: write k/K, two whole numbers with 0 <= k < K "
                        "(this process computes shard k of K), or off to run whole calls, or unset it to take the "
                        "shard from SLURM_ARRAY_TASK_ID");
    }
    return Shard{static_cast<std::size_t>(*index), static_cast<std::size_t>(*count)};
  }
  const auto id = foreign_env_integer("SLURM_ARRAY_TASK_ID");
  if (!id) return std::nullopt;
  const long long first = foreign_env_integer("SLURM_ARRAY_TASK_MIN").value_or(0);
  const long long step = foreign_env_integer("SLURM_ARRAY_TASK_STEP").value_or(1);
  const long long count = foreign_env_integer("SLURM_ARRAY_TASK_COUNT").value_or(0);
  const long long offset = *id - first;
  if (step <= 0 || count <= 0 || offset < 0 || offset % step != 0 || offset / step >= count) {
    throw ConfigError("cannot tell which shard job-array element " + std::to_string(*id) +
                      " computes from SLURM_ARRAY_TASK_MIN/STEP/COUNT (an array with gaps?): set JOBLET_SHARD=k/K, "
                      "or JOBLET_SHARD=off to run whole calls");
  }
  return Shard{static_cast<std::size_t>(offset / step), static_cast<std::size_t>(count)};
}

std::string record_campaign_quietly(const std::filesystem::path& location, const std::string& function,
                                    const std::vector<Hash128>& keys) {
  try {
    // One process of an MPI job writes it (every rank would write the same record).
    if (process_rank() <= 0) return record_campaign(location, function, keys);
  } catch (const Error& e) {
    if (first_time("campaign-record")) {
      log().warn("cannot record this call's campaign for `joblet status`: {}", e.message());
    }
  }
  return function;
}

void log_shard_start(const std::string& campaign, const Shard& shard, std::size_t mine, std::size_t total) {
  log().info("campaign {}: shard {} of {} computes {} of its {} tasks", campaign, shard.index, shard.count, mine,
             total);
}

void end_shard(const std::string& campaign, const Shard& shard, std::size_t computed, std::size_t in_cache,
               std::size_t total) {
  log().warn("campaign {}: shard {} of {} done ({} tasks); {} of {} tasks are in the cache, so this process ends here. "
             "The last shard to finish, or a run without a shard (a dependent job), assembles the results; "
             "`joblet status` shows the progress",
             campaign, shard.index, shard.count, computed, in_cache, total);
  exit_process(0);
}

}  // namespace joblet::detail
