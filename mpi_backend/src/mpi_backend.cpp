// The mpi backend: registered on a communicator, it starts one run per parallel call
// (mpi_run.cpp), on every rank of it.
#include "joblet/mpi.hpp"

#include <sched.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "joblet/backend.hpp"
#include "joblet/cpu.hpp"
#include "joblet/detail/cpu_budget.hpp"
#include "joblet/settings.hpp"
#include "mpi_compute.hpp"
#include "mpi_failures.hpp"
#include "mpi_liveness.hpp"
#include "mpi_meetings.hpp"
#include "mpi_run.hpp"

namespace joblet {
namespace {

using detail::check;

// Up to this many ranks, results are streamed to every rank (mpi_delivery.hpp);
// JOBLET_MPI_STREAM_RANKS changes it.
constexpr int kStreamAllUpTo = 32;

// Read at the start of each call, before its first collective: a rank that threw after it
// would leave the others waiting in it.
int stream_all_up_to() {
  const auto ranks = detail::integer_setting("JOBLET_MPI_STREAM_RANKS");  // >= 1 when set
  if (!ranks) return kStreamAllUpTo;
  return static_cast<int>(std::min<long long>(*ranks, std::numeric_limits<int>::max()));
}

MPI_Comm g_communicator = MPI_COMM_WORLD;
// Whether every rank runs on one node (then /dev/shm is a folder they all see).
bool g_single_node = true;

class MpiBackend final : public Backend {
 public:
  int effective_n_jobs(int n_jobs) const override {
    int size = 1;
    MPI_Comm_size(g_communicator, &size);
    if (n_jobs < 0) return std::max(size + 1 + n_jobs, 1);
    return std::min(n_jobs, size);
  }
  int default_n_jobs() const override { return -1; }
  bool all_agree(bool value) override { return detail::meet_to_agree(value); }
  std::int64_t first_process_value(std::int64_t value) override { return detail::meet_to_share(value); }
  bool shares_memory() const noexcept override { return false; }
  bool needs_all_tasks() const noexcept override { return true; }
  bool starts_every_call() const noexcept override { return true; }
  std::unique_ptr<Run> start(std::shared_ptr<Job> job) override {
    if (detail::runs_mpi_tasks()) {
      // The ranks are running different tasks of the outer mpi call: they would never meet in
      // this call's collectives. (Inside a task of a call that every rank runs whole, e.g. a
      // sequential one, the ranks do meet, and a nested mpi call is fine.)
      throw ConfigError(
          "a Parallel call inside a task cannot use the mpi backend: the ranks run different tasks "
          "and would wait for each other forever; name backend \"threads\" or \"processes\" for the "
          "inner call");
    }
    if (!job->results_encodable()) {
      throw ConfigError("backend 'mpi' sends results between ranks, but the result type " + job->result_type_name() +
                        " cannot be encoded: give it and every class it holds a cereal serialize() function, or use "
                        "backend \"threads\"");
    }
    return detail::start_mpi_run(std::move(job), stream_all_up_to(), g_single_node);
  }
};

// Ranks on one node that can run on the same CPUs (mpirun --bind-to none, srun without
// binding) share them: each rank's calls get its share, so that ranks x threads = cores.
// Ranks bound to their own cores keep all of theirs.
void share_node_cpus(MPI_Comm communicator) {
  MPI_Comm node;
  check(MPI_Comm_split_type(communicator, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
  int local_ranks = 1;
  MPI_Comm_size(node, &local_ranks);
  cpu_set_t mine;
  CPU_ZERO(&mine);
  sched_getaffinity(0, sizeof mine, &mine);
  std::vector<cpu_set_t> all(static_cast<std::size_t>(local_ranks));
  check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, node), "MPI_Allgather");
  MPI_Comm_free(&node);
  int world = 1;
  MPI_Comm_size(communicator, &world);
  g_single_node = local_ranks == world;
  int sharing = 0;
  for (cpu_set_t& other : all) {
    cpu_set_t common;
    CPU_AND(&common, &mine, &other);
    if (CPU_COUNT(&common) > 0) ++sharing;
  }
  detail::set_process_cpu_budget(std::max(1, cpu_count() / std::max(sharing, 1)));
}

}  // namespace

void register_mpi_backend(MPI_Comm communicator) {
  g_communicator = communicator;
  detail::open_meetings(communicator);
  share_node_cpus(communicator);
  detail::start_liveness_watch(communicator, !g_single_node);
  static const bool registered = [] {
    register_backend("mpi", [] { return std::make_unique<MpiBackend>(); });
    detail::install_failure_reports();
    return true;
  }();
  (void)registered;
}

}  // namespace joblet
