// Config scopes and call planning: which backend and how many workers a call gets.
#include <chrono>

#include "joblet/config.hpp"
#include "joblet/cpu.hpp"
#include "joblet/detail/call.hpp"
#include "joblet/detail/env.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/runtime.hpp"
#include "joblet/detail/task_scope.hpp"
#include "joblet/settings.hpp"
#include "worker_context.hpp"

namespace joblet {
namespace {

// The innermost ParallelConfig scope opened on this thread.
const ParallelConfig* innermost() noexcept { return detail::thread_context().innermost_config; }

template <class T>
void fill(std::optional<T>& field, const std::optional<T>& outer) {
  if (!field) field = outer;
}
}  // namespace

Config Config::merged_over(const Config& outer) const {
  Config merged = *this;
  fill(merged.n_jobs, outer.n_jobs);
  fill(merged.backend, outer.backend);
  fill(merged.verbose, outer.verbose);
  fill(merged.timeout, outer.timeout);
  fill(merged.batch_size, outer.batch_size);
  fill(merged.pre_dispatch, outer.pre_dispatch);
  fill(merged.prefer, outer.prefer);
  fill(merged.require, outer.require);
  fill(merged.results_to, outer.results_to);
  if (!merged.progress) merged.progress = outer.progress;
  fill(merged.max_nbytes, outer.max_nbytes);
  fill(merged.temp_folder, outer.temp_folder);
  fill(merged.trace, outer.trace);
  fill(merged.retries, outer.retries);
  if (!merged.retry_if) merged.retry_if = outer.retry_if;
  fill(merged.max_failures, outer.max_failures);
  return merged;
}

ParallelConfig::ParallelConfig(Config config)
    : merged_(innermost() ? config.merged_over(innermost()->merged_) : std::move(config)), outer_(innermost()) {
  detail::thread_context().innermost_config = this;
}

ParallelConfig::~ParallelConfig() { detail::thread_context().innermost_config = outer_; }

Config current_config() {
  Config config = innermost() ? innermost()->merged_ : Config{};
  if (!config.n_jobs) {
    if (auto n = detail::integer_setting("JOBLET_N_JOBS")) config.n_jobs = static_cast<int>(*n);
  }
  if (!config.backend) config.backend = detail::setting("JOBLET_BACKEND");
  if (!config.temp_folder) config.temp_folder = detail::setting("JOBLET_TEMP_FOLDER");
  if (!config.trace) config.trace = detail::setting("JOBLET_TRACE");
  if (!config.retries) {
    if (auto n = detail::integer_setting("JOBLET_RETRIES")) config.retries = static_cast<int>(*n);
  }
  if (!config.max_failures) {
    if (auto n = detail::integer_setting("JOBLET_MAX_FAILURES")) config.max_failures = static_cast<std::size_t>(*n);
  }
  return config;
}

namespace detail {

// joblib's default max_nbytes ('1M').
constexpr std::size_t kDefaultMaxNbytes = std::size_t{1} << 20;

CallPlan plan_call(const Config& explicit_config) {
  const Config config = explicit_config.merged_over(current_config());

  if (config.n_jobs && *config.n_jobs == 0) {
    throw ConfigError(
        "n_jobs == 0 is not valid: use 1 to run tasks one after the other in the caller, "
        "-1 for all CPUs, or a positive number of workers");
  }
  if (config.verbose && *config.verbose < 0) {
    throw ConfigError("verbose = " + std::to_string(*config.verbose) + " is not valid: use 0 (silent) or more");
  }
  if (config.timeout && !(config.timeout->count() > 0)) {
    throw ConfigError("timeout must be positive (got " + std::to_string(config.timeout->count()) +
                      " s); leave it unset for no timeout");
  }
  if (config.pre_dispatch && *config.pre_dispatch == 0) {
    throw ConfigError(
        "pre_dispatch = 0 is not valid: give how many tasks to read ahead (at least 1), or leave "
        "it unset to read the whole input first");
  }

  if (config.retries && *config.retries < 0) {
    throw ConfigError("retries = " + std::to_string(*config.retries) +
                      " is not valid: give how many more times a failed task may run (0 for none)");
  }
  if (config.max_failures && *config.max_failures == 0) {
    throw ConfigError(
        "max_failures = 0 is not valid: give after how many failed tasks the call stops (at least 1), or leave it "
        "unset for no limit");
  }

  CallPlan plan;
  // Which backend: a name wins; otherwise the preference; otherwise the default.
  if (config.backend) {
    plan.backend_name = *config.backend;
  } else if (config.prefer) {
    plan.backend_name = *config.prefer == Prefer::processes ? "processes" : "threads";
  } else {
    plan.backend_name = default_backend();
    // The mpi backend is a collective of every rank, but the ranks of a call run different
    // tasks: a nested call that names no backend stays inside this rank, on its threads.
    if (plan.backend_name == "mpi" && in_task()) plan.backend_name = "threads";
  }
  try {
    plan.backend = make_backend(plan.backend_name);
  } catch (const ConfigError& e) {
    // A name nobody wrote in the code came from the environment: say so, or the user looks
    // for it in the wrong place.
    const bool from_environment =
        !explicit_config.backend && config.backend && setting("JOBLET_BACKEND") == config.backend;
    if (!from_environment) throw;
    throw ConfigError(e.message() + "; the name comes from the environment variable JOBLET_BACKEND='" +
                      *config.backend + "': change or unset it");
  }

  if (config.require == Require::sharedmem && !plan.backend->shares_memory()) {
    if (explicit_config.backend) {
      throw ConfigError("require = sharedmem cannot be met by backend '" + plan.backend_name +
                        "', whose workers do not share the caller's memory; use backend \"threads\" or drop "
                        "the requirement");
    }
    plan.backend_name = "threads";
    plan.backend = make_backend(plan.backend_name);
  }

  const int n_jobs = config.n_jobs.value_or(plan.backend->default_n_jobs());
  plan.settings.n_workers = plan.backend->effective_n_jobs(n_jobs);
  plan.settings.cpu_budget = cpu_budget();
  plan.settings.batch_size = config.batch_size.value_or(auto_batch_size);
  if (config.timeout) {
    plan.settings.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(*config.timeout);
  }
  plan.settings.pre_dispatch = config.pre_dispatch;
  plan.settings.results_to_root = config.results_to == ResultsTo::root;
  plan.settings.max_nbytes = config.max_nbytes.value_or(kDefaultMaxNbytes);
  plan.settings.temp_folder = config.temp_folder.value_or("");
  plan.settings.trace = config.trace.value_or("");
  plan.settings.retries = config.retries.value_or(0);
  plan.settings.retry_if = config.retry_if;
  plan.settings.max_failures = config.max_failures.value_or(0);
  if (plan.settings.max_failures > 0 && plan.backend->starts_every_call()) {
    throw ConfigError("max_failures is not available on backend '" + plan.backend_name +
                      "' yet: its ranks would stop at different moments; leave max_failures unset there, or run the "
                      "call on \"threads\" or \"processes\"");
  }
  plan.verbose = config.verbose.value_or(0);
  plan.progress = config.progress;

  // One worker is a plain loop in the caller, except that enforcing a timeout needs the
  // caller free to watch the clock, which one worker (thread or process) gives.
  if (plan.settings.n_workers == 1 && plan.backend->sequential_when_one_worker() && plan.backend_name != "sequential" &&
      !plan.settings.timeout) {
    plan.backend_name = "sequential";
    plan.backend = make_backend(plan.backend_name);
  }
  // A child forked after oneTBB started its threads cannot use oneTBB.
  if (plan.backend_name == "threads" && in_forked_worker() && tbb_started()) {
    if (first_time("threads-in-forked-worker")) {
      log().info(
          "a parallel call inside a process worker runs sequentially: oneTBB cannot start threads in "
          "a child forked after the parent started its own");
    }
    plan.backend_name = "sequential";
    plan.backend = make_backend(plan.backend_name);
  }
  if (plan.backend_name == "sequential" && plan.settings.timeout && first_time("sequential-timeout")) {
    log().warn(
        "the sequential backend runs tasks in the caller's own thread and cannot enforce timeout; use "
        "backend \"threads\" or \"processes\" to have it enforced");
  }
  if (plan.settings.pre_dispatch && plan.backend->needs_all_tasks()) {
    if (first_time("pre_dispatch-" + plan.backend_name)) {
      log().info("pre_dispatch is ignored by backend '{}': its workers need every task before they start",
                 plan.backend_name);
    }
    plan.settings.pre_dispatch.reset();
  }
  // With the backend final: outcomes that arrive task by task from other processes, or that a
  // timeout may race, need a state per task; workers in other processes need every task made
  // before they start.
  // A failure limit names the tasks that never ran, which needs the same state.
  plan.settings.outcomes_per_task =
      !plan.backend->shares_memory() || plan.settings.timeout.has_value() || plan.settings.max_failures > 0;
  plan.settings.all_tasks_before_run = plan.backend->needs_all_tasks();
  return plan;
}

}  // namespace detail
}  // namespace joblet
