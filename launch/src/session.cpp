#include "joblet/session.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <atomic>
#include <exception>

#include "joblet/backend.hpp"
#include "joblet/detail/env.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/mpi_hooks.hpp"
#include "joblet/detail/stop.hpp"
#include "joblet/memory.hpp"
#include "joblet/settings.hpp"

namespace joblet {

Session::Session(int& argc, char**& argv, SessionOptions options) : environment_(Environment::detect()) {
  check_settings();  // a typo in a batch script fails the job now, not hours in
  if (environment_.launched_many() || options.always_init_mpi) {
    const detail::MpiHooks* mpi = detail::mpi_hooks();
    if (mpi == nullptr) {
      throw ConfigError(fmt::format(
          "this program was started by {} ({}) but was built without joblet's MPI support: link joblet::mpi (or "
          "the umbrella joblet::joblet) and include <joblet/joblet.hpp> or <joblet/mpi.hpp>",
          launcher_name(environment_.launcher), environment_.describe()));
    }
    owns_mpi_ = mpi->initialize(&argc, &argv);
    mpi_ = true;
    mpi->rank_and_size(&rank_, &size_);
    if (environment_.launcher == Launcher::srun && environment_.ranks > 1 && size_ == 1) {
      if (owns_mpi_) mpi->finalize();
      mpi_ = owns_mpi_ = false;
      throw ConfigError(fmt::format(
          "Slurm started {} tasks, but MPI sees a world of 1 in each (rank {} of 1): MPI was not started through "
          "Slurm's process manager, so every task would compute everything alone. Launch with `srun --mpi=pmix "
          "./program` (or set MpiDefault=pmix in slurm.conf), or use mpirun inside the job",
          environment_.ranks, environment_.rank));
    }
    if (size_ > 1) {
      mpi->register_backend();
      set_default_backend("mpi");
      // Ranks that miss the same cache key then compute it once; the others read it.
      detail::set_default_compute_once(true);
    }
  } else if (environment_.launcher == Launcher::slurm_batch && environment_.slurm_tasks > 1 &&
             detail::first_time("batch-without-srun")) {
    detail::log().info(
        "this Slurm job has {} tasks but the program runs in its batch script, outside srun: it uses "
        "this node's CPUs only (start it with `srun` to use every task)",
        environment_.slurm_tasks);
  }
  // Array elements and the job that assembles their results (JOBLET_SHARD=off) share one cache:
  // compute-once makes a miss take the lock and look again past what its network filesystem's
  // client last remembered (Store::load_unseen), instead of computing what another job published.
  if (!environment_.slurm_array_job_id.empty() || detail::setting("JOBLET_SHARD")) {
    detail::set_default_compute_once(true);
  }
  detail::set_process_rank(mpi_ && size_ > 1 ? rank_ : -1);
  if (mpi_ && size_ > 1) set_log_identity(fmt::format("rank {} {}", rank_, ErrorSite::here().host));
  if (auto pattern = detail::setting("JOBLET_LOG_FILE")) add_log_file(expand_log_file_name(*pattern));

  // A Slurm time limit (SIGTERM, or the --signal early warning SIGUSR1) stops calls gracefully;
  // the process then ends with status 75, after finalising MPI on every rank.
  detail::enable_graceful_stop();
  if (mpi_) {
    detail::set_exit_hook([](int) {
      if (const detail::MpiHooks* hooks = detail::mpi_hooks()) hooks->finalize();
    });
  }
  detail::log().debug("session: {}; default backend {}", environment_.describe(), joblet::default_backend());
}

std::string Session::expand_log_file_name(const std::string& pattern) const {
  // Slurm's filename patterns, so that one setting gives each process its own file.
  std::string name;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '%' || i + 1 == pattern.size()) {
      name += pattern[i];
      continue;
    }
    switch (pattern[++i]) {
      case 'j':
        name += environment_.slurm_job_id.empty() ? "nojob" : environment_.slurm_job_id;
        break;
      case 't':
        name += std::to_string(mpi_ ? rank_ : environment_.rank);
        break;
      case 'A':
        name += environment_.slurm_array_job_id.empty() ? "noarray" : environment_.slurm_array_job_id;
        break;
      case 'a':
        name += environment_.slurm_array_task_id ? std::to_string(*environment_.slurm_array_task_id) : "0";
        break;
      case 'N':
        name += ErrorSite::here().host;
        break;
      case 'p':
        name += std::to_string(getpid());
        break;
      case '%':
        name += '%';
        break;
      default:
        name += '%';
        name += pattern[i];
        break;
    }
  }
  return name;
}

Session::~Session() {
  if (!mpi_) return;
  const detail::MpiHooks* mpi = detail::mpi_hooks();
  if (std::uncaught_exceptions() > 0 && size_ > 1) {
    // Another rank may be waiting for this one in a collective: finalising could hang the job.
    detail::log().critical(
        "rank {} is leaving its Session while an exception is thrown; aborting the MPI job so "
        "that no other rank waits for it forever",
        rank_);
    mpi->abort(1);
  }
  if (owns_mpi_) mpi->finalize();
}

std::string Session::default_backend() const { return joblet::default_backend(); }

}  // namespace joblet
