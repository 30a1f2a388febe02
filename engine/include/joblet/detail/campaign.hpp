#pragma once
// Parallel calls whose tasks are all calls of one cached function (delayed(cached, args...))
// are campaigns: their task keys are known before anything runs. That gives two things:
// `joblet status` can count done and missing tasks from the cache, and a Slurm job-array
// element can compute only its shard and leave the rest to the other elements.

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <tuple>
#include <vector>
#include <type_traits>

#include "joblet/delayed.hpp"
#include "joblet/hash.hpp"
#include "joblet/memory.hpp"

namespace joblet::detail {

template <class Task>
struct CachedTask : std::false_type {};

template <class F, class Ignore, class... Args>
struct CachedTask<Delayed<CachedFunction<F, Ignore>, Args...>> : std::true_type {
  using Task = Delayed<CachedFunction<F, Ignore>, Args...>;
  static Hash128 key(const Task& task) {
    return std::apply([&](const auto&... args) { return task.function().key(args...); }, task.arguments());
  }
  static bool in_cache(const Task& task) {
    return std::apply([&](const auto&... args) { return task.function().check_call_in_cache(args...); },
                      task.arguments());
  }
  static const CachedFunction<F, Ignore>& function(const Task& task) { return task.function(); }
};

// Which shard of a campaign this process computes: k of K, from JOBLET_SHARD=k/K or, in a
// Slurm job-array element, from SLURM_ARRAY_TASK_ID/_MIN/_COUNT. JOBLET_SHARD=off disables
// it. Throws ConfigError for a malformed JOBLET_SHARD.
struct Shard {
  std::size_t index = 0;
  std::size_t count = 1;
};
std::optional<Shard> active_shard();

// record_campaign(), or a warning (once) when it cannot be written; returns the name.
std::string record_campaign_quietly(const std::filesystem::path& location, const std::string& function,
                                    const std::vector<Hash128>& keys);
void log_shard_start(const std::string& campaign, const Shard& shard, std::size_t mine, std::size_t total);
// Logs what this shard did and what is left, and ends the process with status 0.
[[noreturn]] void end_shard(const std::string& campaign, const Shard& shard, std::size_t computed,
                            std::size_t in_cache, std::size_t total);

}  // namespace joblet::detail
