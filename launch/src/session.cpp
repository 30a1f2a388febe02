#include "joblet/session.hpp"

#include <fmt/format.h>

#include <atomic>
#include <exception>

#include "joblet/backend.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/mpi_hooks.hpp"
#include "joblet/memory.hpp"

namespace joblet {
namespace detail {
namespace {
std::atomic<const MpiHooks*> g_hooks{nullptr};
}
void set_mpi_hooks(const MpiHooks* hooks) noexcept { g_hooks.store(hooks); }
const MpiHooks* mpi_hooks() noexcept { return g_hooks.load(); }
}  // namespace detail

Session::Session(int& argc, char**& argv, SessionOptions options) : environment_(Environment::detect()) {
  const bool launched_many = environment_.ranks != 1 &&
                             (environment_.launcher == Launcher::mpirun || environment_.launcher == Launcher::srun);
  if (launched_many || options.always_init_mpi) {
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
    detail::log().info("this Slurm job has {} tasks but the program runs in its batch script, outside srun: it uses "
                       "this node's CPUs only (start it with `srun` to use every task)",
                       environment_.slurm_tasks);
  }
  detail::set_process_rank(mpi_ && size_ > 1 ? rank_ : -1);
  if (mpi_ && size_ > 1) set_log_identity(fmt::format("rank {} {}", rank_, ErrorSite::here().host));
  detail::log().debug("session: {}; default backend {}", environment_.describe(), joblet::default_backend());
}

Session::~Session() {
  if (!mpi_) return;
  const detail::MpiHooks* mpi = detail::mpi_hooks();
  if (std::uncaught_exceptions() > 0 && size_ > 1) {
    // Another rank may be waiting for this one in a collective: finalising could hang the job.
    detail::log().critical("rank {} is leaving its Session while an exception is thrown; aborting the MPI job so "
                           "that no other rank waits for it forever",
                           rank_);
    mpi->abort(1);
  }
  if (owns_mpi_) mpi->finalize();
}

std::string Session::default_backend() const { return joblet::default_backend(); }

}  // namespace joblet
