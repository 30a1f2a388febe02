// bench_mpi: the MPI side of bench/compare. Run under mpirun; one measurement per MPI job, and it
// is the job's first parallel call. The timer starts after MPI_Init, register_mpi_backend() and a
// barrier, so mpirun's start-up is left out; rank 0 stops it when the call has returned there
// and prints the line.
//
//   joblet-mpi        joblet::Parallel with backend "mpi" on every rank (rank 0 computes too)
//   mpi-raw           a hand-written master/worker loop, one index per request (see master_worker)
//   mpi-pingpong-raw  8-byte MPI_Send/MPI_Recv ping-pong between ranks 0 and 1: µs one way
//
// Workloads (sizes from workloads.hpp, as bench_engine): tiny, tiny-batch1 (µs per task),
// sleep10ms (efficiency = (tasks × 10 ms / ranks) / wall), and claim-throughput-R: tasks at
// batch size 1 on R ranks, in tasks per second, where a task returns at once except on rank 0,
// where it sleeps 1 ms: nearly every index then reaches a rank through a claim to rank 0, so the
// figure is the rate at which rank 0 serves claims (and results are spread to every rank).
//
// node-loss-campaign is no measurement: it is the cached campaign that bench/node_loss_bench
// runs across the cluster's nodes and kills a node of (it prints how many tasks it computed).
//
//   mpirun --oversubscribe --bind-to none -n 2 bench_mpi --workload tiny --system joblet-mpi [--quick]
//   -> tiny joblet-mpi 0.52 us
#include <mpi.h>
#include <joblet/joblet.hpp>
#include <joblet/mpi.hpp>

#include <cstdint>
#include <cstdlib>
#include <ranges>
#include <string>
#include <thread>
#include <vector>

#include "workloads.hpp"

namespace {

using namespace joblet::bench;

constexpr const char* kUsage =
    "--workload tiny|tiny-batch1|sleep10ms|claim-throughput-R|node-loss-campaign --system "
    "joblet-mpi|mpi-raw|mpi-pingpong-raw "
    "[--workers N (ignored: every rank works)] [--quick]";

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// The tasks: task i is task(argument(i)), and returns argument(i).
using Task = std::int64_t (*)(std::int64_t);
using Argument = std::int64_t (*)(std::size_t);

std::int64_t identity(std::int64_t i) { return i; }
// Returns at once, except on rank 0, which serves claims and is kept from taking the work.
std::int64_t identity_off_root(std::int64_t i) {
  if (world_rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return i;
}

std::int64_t sleep_task(std::int64_t milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return milliseconds;
}

std::int64_t index_argument(std::size_t i) { return static_cast<std::int64_t>(i); }

std::int64_t sleep_argument(std::size_t) { return sizes(false).sleep_each.count(); }

void check_results(const std::vector<std::int64_t>& results, std::size_t n, Argument argument) {
  check(results.size() == n, "result count");
  for (std::size_t i = 0; i < n; ++i) check(results[i] == argument(i), "result value");
}

// Seconds that `call` takes on rank 0, all ranks starting it together.
template <class Call>
double timed_on_all_ranks(Call call) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = Clock::now();
  call();
  return seconds_since(start);
}

// ---- joblet-mpi -----------------------------------------------------------------------------

// Seconds of one call on every rank (n_jobs = -1: all ranks); checks every rank's results.
double joblet_seconds(std::size_t n, std::size_t batch_size, Task task, Argument argument) {
  const joblet::Config config{.n_jobs = -1, .backend = "mpi", .batch_size = batch_size};
  std::vector<std::int64_t> results;
  const double seconds = timed_on_all_ranks([&] {
    results = joblet::Parallel(config)(std::views::iota(std::size_t{0}, n) | std::views::transform([&](std::size_t i) {
                                         return joblet::delayed(task, argument(i));
                                       }));
  });
  check_results(results, n, argument);
  return seconds;
}

// ---- node-loss-campaign ---------------------------------------------------------------------

// Tasks that sleep, so that six ranks on two cores do not slow each other down: what the
// timings of bench/node_loss_bench show is joblet's and Slurm's reaction to a lost node.
std::int64_t campaign_task(std::int64_t i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  return i * i;
}

// The campaign's tasks computed by this run (summed over the ranks, on rank 0). Memoized in
// $NODE_LOSS_CACHE with compute-once, as joblet::Session sets it up across ranks.
std::int64_t node_loss_campaign(bool quick) {
  const char* cache = std::getenv("NODE_LOSS_CACHE");
  if (cache == nullptr || *cache == '\0') throw std::runtime_error("NODE_LOSS_CACHE (the campaign's cache) is not set");
  const joblet::Memory memory(cache, {.compute_once = true});
  const auto task = memory.cache("bench.campaign_task", campaign_task);
  const std::size_t n = quick ? 48 : 96;
  const joblet::Config config{.n_jobs = -1, .backend = "mpi", .batch_size = 1};
  const auto results = joblet::Parallel(config)(
      std::views::iota(std::size_t{0}, n) |
      std::views::transform([&](std::size_t i) { return joblet::delayed(task, static_cast<std::int64_t>(i)); }));
  for (std::size_t i = 0; i < n; ++i) check(results[i] == static_cast<std::int64_t>(i * i), "campaign result");
  std::int64_t computed = static_cast<std::int64_t>(memory.statistics().misses);
  MPI_Allreduce(MPI_IN_PLACE, &computed, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  return computed;
}

// ---- mpi-raw ----------------------------------------------------------------------------------

enum Tag : int { kRequestTag = 11, kIndexTag = 12 };

// The master/worker loop a C++ MPI programmer writes first. Every rank, rank 0 included, is a
// worker on its main thread: it sends rank 0 a request carrying its previous result
// ({index, value}, index -1 on the first request), receives the next index (-1: none left) and
// runs that task. Rank 0 also runs the master on a second thread (MPI_THREAD_MULTIPLE): a
// blocking MPI_Recv from any rank, the result stored, the next index sent back. At the end
// rank 0 broadcasts the results, so that every rank holds all of them, as joblet's backend
// guarantees. Blocking calls throughout: OpenMPI busy-polls inside them. `handed_out` (rank 0):
// how many tasks each rank ran.
std::vector<std::int64_t> master_worker(std::size_t n, Task task, Argument argument,
                                        std::vector<std::size_t>& handed_out) {
  const int rank = world_rank();
  const int size = world_size();
  std::vector<std::int64_t> results(n);
  std::thread master;
  handed_out.assign(static_cast<std::size_t>(size), 0);
  if (rank == 0) {
    master = std::thread([&] {
      std::size_t next = 0;
      for (int finished = 0; finished < size;) {
        std::int64_t request[2];
        MPI_Status status;
        MPI_Recv(request, 2, MPI_INT64_T, MPI_ANY_SOURCE, kRequestTag, MPI_COMM_WORLD, &status);
        if (request[0] >= 0) results[static_cast<std::size_t>(request[0])] = request[1];
        std::int64_t index = -1;
        if (next < n) {
          index = static_cast<std::int64_t>(next++);
          ++handed_out[static_cast<std::size_t>(status.MPI_SOURCE)];
        } else {
          ++finished;
        }
        MPI_Send(&index, 1, MPI_INT64_T, status.MPI_SOURCE, kIndexTag, MPI_COMM_WORLD);
      }
    });
  }
  std::int64_t request[2] = {-1, 0};
  for (;;) {
    MPI_Send(request, 2, MPI_INT64_T, 0, kRequestTag, MPI_COMM_WORLD);
    std::int64_t index = -1;
    MPI_Recv(&index, 1, MPI_INT64_T, 0, kIndexTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (index < 0) break;
    request[0] = index;
    request[1] = task(argument(static_cast<std::size_t>(index)));
  }
  if (rank == 0) master.join();
  MPI_Bcast(results.data(), static_cast<int>(n), MPI_INT64_T, 0, MPI_COMM_WORLD);
  return results;
}

double raw_seconds(std::size_t n, Task task, Argument argument) {
  std::vector<std::int64_t> results;
  std::vector<std::size_t> handed_out;
  const double seconds = timed_on_all_ranks([&] { results = master_worker(n, task, argument, handed_out); });
  check_results(results, n, argument);
  if (world_rank() == 0) {
    std::string counts;
    for (const std::size_t count : handed_out) counts.append(" ").append(std::to_string(count));
    note("mpi-raw: tasks run by rank 0, 1, ...:%s", counts.c_str());
  }
  return seconds;
}

// ---- mpi-pingpong-raw -------------------------------------------------------------------------

// µs one way of an 8-byte message between ranks 0 and 1 (half the median round trip of
// batches, after a warm-up); the other ranks wait.
double pingpong_us(bool quick) {
  const int rank = world_rank();
  const int per_batch = quick ? 2000 : 10000;
  std::vector<double> batches;
  std::int64_t word = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  for (int batch = 0; batch < 6; ++batch) {
    const auto start = Clock::now();
    for (int i = 0; i < per_batch && rank < 2; ++i) {
      if (rank == 0) {
        MPI_Send(&word, 1, MPI_INT64_T, 1, 0, MPI_COMM_WORLD);
        MPI_Recv(&word, 1, MPI_INT64_T, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else {
        MPI_Recv(&word, 1, MPI_INT64_T, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        ++word;
        MPI_Send(&word, 1, MPI_INT64_T, 0, 0, MPI_COMM_WORLD);
      }
    }
    if (batch > 0) batches.push_back(seconds_since(start) / per_batch / 2 * 1e6);  // batch 0 warms up
  }
  check(rank != 0 || word == 6 * per_batch, "ping-pong count");
  std::sort(batches.begin(), batches.end());
  MPI_Barrier(MPI_COMM_WORLD);
  return batches[batches.size() / 2];
}

// ---- main -------------------------------------------------------------------------------------

bool run(const Options& options) {
  const Sizes s = sizes(options.quick);
  const int ranks = world_size();
  const std::string& w = options.workload;
  const std::string& system = options.system;
  const bool joblet = system == "joblet-mpi";
  if (!joblet && system != "mpi-raw" && system != "mpi-pingpong-raw") return false;
  if (system == "mpi-pingpong-raw" && ranks < 2) throw std::runtime_error("the ping-pong needs 2 ranks");

  // The seconds of one call of n tasks at this batch size (raw: always one index per request).
  auto seconds = [&](std::size_t n, std::size_t batch_size, Task task, Argument argument) {
    return joblet ? joblet_seconds(n, batch_size, task, argument) : raw_seconds(n, task, argument);
  };
  double value = 0;
  const char* unit = "us";
  if ((w == "tiny" || w == "tiny-batch1") && system == "mpi-pingpong-raw") {
    value = pingpong_us(options.quick);
  } else if (w == "tiny" || w == "tiny-batch1") {
    const std::size_t batch_size = w == "tiny" ? joblet::auto_batch_size : 1;
    value = seconds(s.tiny_tasks, batch_size, identity, index_argument) / static_cast<double>(s.tiny_tasks) * 1e6;
  } else if (w == "sleep10ms" && system != "mpi-pingpong-raw") {
    const double ideal =
        static_cast<double>(s.sleep_tasks) * std::chrono::duration<double>(s.sleep_each).count() / ranks;
    value = ideal / seconds(s.sleep_tasks, joblet::auto_batch_size, sleep_task, sleep_argument);
    unit = "efficiency";
  } else if (w == "node-loss-campaign" && joblet) {
    value = static_cast<double>(node_loss_campaign(options.quick));
    unit = "tasks";
  } else if (w.starts_with("claim-throughput-") && system != "mpi-pingpong-raw") {
    if (w != "claim-throughput-" + std::to_string(ranks))
      throw std::runtime_error(w + " must run on that many ranks, not " + std::to_string(ranks));
    value = static_cast<double>(s.tiny_tasks) / seconds(s.tiny_tasks, 1, identity_off_root, index_argument);
    unit = "tasks/s";
  } else {
    return false;
  }
  if (world_rank() == 0) print_measurement(w, system, value, unit);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  if (provided < MPI_THREAD_MULTIPLE) {
    std::fprintf(stderr, "bench_mpi: the MPI library does not provide MPI_THREAD_MULTIPLE\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  joblet::register_mpi_backend();
  const int status = bench_main(argc, argv, kUsage, run);
  if (status != 0) MPI_Abort(MPI_COMM_WORLD, status);  // the other ranks may wait in a call
  MPI_Finalize();
  return 0;
}
