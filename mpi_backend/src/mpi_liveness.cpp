#include "mpi_liveness.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "joblet/detail/log.hpp"
#include "joblet/error.hpp"
#include "joblet/settings.hpp"
#include "mpi_failures.hpp"
#include "mpi_meetings.hpp"

namespace joblet::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kHeartbeat = std::chrono::seconds(1);
// How often the thread takes in what arrived. More often than the heartbeat: while the main
// thread computes, these are the process's only calls into MPI, and a message (or a step of
// setting up a connection) waits for the next one.
constexpr auto kPoll = std::chrono::milliseconds(100);
constexpr int kHeartbeatTag = 1;
constexpr int kGreetingTag = 2;
// The exit status of a job stopped this way: EX_TEMPFAIL, "run it again", as at a time limit.
constexpr int kLostExit = 75;

struct Identity {
  std::int64_t pid;
  char host[64];
};

class LivenessWatch {
 public:
  LivenessWatch(MPI_Comm communicator, Clock::duration lost_after) : lost_after_(lost_after) {
    check(MPI_Comm_dup(communicator, &comm_), "MPI_Comm_dup");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    Identity mine{};
    mine.pid = static_cast<std::int64_t>(::getpid());
    const std::string host = ErrorSite::here().host;
    std::strncpy(mine.host, host.c_str(), sizeof mine.host - 1);
    identities_.resize(static_cast<std::size_t>(size_));
    check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, identities_.data(), sizeof mine, MPI_BYTE, comm_),
          "MPI_Allgather");
    left_ = std::make_unique<std::atomic<bool>[]>(static_cast<std::size_t>(size_));
    greet();
    thread_ = std::thread([this] { watch(); });
  }

  ~LivenessWatch() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
    // Heartbeats to ranks that finalised first may never be received: MPI ends them with the job.
    for (MPI_Request& request : sends_) MPI_Request_free(&request);
    MPI_Comm_free(&comm_);
  }

  void rank_left(int rank) noexcept {
    if (rank >= 0 && rank < size_) left_[static_cast<std::size_t>(rank)].store(true);
  }

 private:
  // Rank 0 watches every rank, the others rank 0.
  bool watched(int rank) const noexcept {
    return rank != rank_ && (rank_ == 0 || rank == 0) && !left_[static_cast<std::size_t>(rank)].load();
  }

  // One message each way between rank 0 and every rank, before the thread starts: the connections
  // the heartbeats use are then made here, where every rank waits for them, rather than by the
  // first heartbeats while the main threads compute (and call into MPI for nothing else).
  void greet() {
    std::vector<MPI_Request> requests;
    for (int rank = 0; rank < size_; ++rank) {
      if (!watched(rank)) continue;
      requests.resize(requests.size() + 2);
      check(MPI_Irecv(nullptr, 0, MPI_BYTE, rank, kGreetingTag, comm_, &requests.end()[-2]), "MPI_Irecv");
      check(MPI_Isend(nullptr, 0, MPI_BYTE, rank, kGreetingTag, comm_, &requests.end()[-1]), "MPI_Isend");
    }
    check(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  }

  void watch() {
    const auto started = Clock::now();
    std::vector<Clock::time_point> last_heard(static_cast<std::size_t>(size_), started);
    auto last_beat = started - kHeartbeat;
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      try {
        if (const auto now = Clock::now(); now - last_beat >= kHeartbeat) {
          last_beat = now;
          beat();
        }
        listen(last_heard);
      } catch (const std::exception& e) {
        log().error(
            "rank {} stopped watching whether the other ranks are alive ({}): a node that dies now is noticed only "
            "when the launcher ends the job; set JOBLET_MPI_LOST_AFTER=0 to run without the watch",
            rank_, e.what());
        return;
      }
      const auto now = Clock::now();
      std::vector<int> lost;
      std::vector<int> silent;  // for three heartbeats or more: with a lost rank, likely lost too
      for (int rank = 0; rank < size_; ++rank) {
        if (!watched(rank)) continue;
        const auto silence = now - last_heard[static_cast<std::size_t>(rank)];
        if (silence > lost_after_) lost.push_back(rank);
        if (silence > 3 * kHeartbeat) silent.push_back(rank);
      }
      if (!lost.empty()) abort_for(silent);
      lock.lock();
      wake_.wait_for(lock, kPoll, [this] { return stopping_; });
    }
  }

  void beat() {
    for (int rank = 0; rank < size_; ++rank) {
      if (!watched(rank)) continue;
      MPI_Request request;
      check(MPI_Isend(nullptr, 0, MPI_BYTE, rank, kHeartbeatTag, comm_, &request), "MPI_Isend");
      sends_.push_back(request);
    }
    std::erase_if(sends_, [](MPI_Request& request) {
      int done = 0;
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      return done != 0;
    });
  }

  void listen(std::vector<Clock::time_point>& last_heard) {
    for (;;) {
      int arrived = 0;
      MPI_Status status;
      check(MPI_Iprobe(MPI_ANY_SOURCE, kHeartbeatTag, comm_, &arrived, &status), "MPI_Iprobe");
      if (!arrived) return;
      check(MPI_Recv(nullptr, 0, MPI_BYTE, status.MPI_SOURCE, kHeartbeatTag, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
      last_heard[static_cast<std::size_t>(status.MPI_SOURCE)] = Clock::now();
    }
  }

  [[noreturn]] void abort_for(const std::vector<int>& lost) const {
    // Rank 0 knows which tasks of the running call each rank holds.
    const Grants* grants = noted_grants();
    // By host: a lost node usually takes several ranks with it.
    std::map<std::string, std::string> ranks_by_host;
    for (int rank : lost) {
      const Identity& who = identities_[static_cast<std::size_t>(rank)];
      std::string& ranks = ranks_by_host[std::string(who.host, strnlen(who.host, sizeof who.host))];
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
    if (rank_ == 0 && grants == nullptr) hosts += ", between parallel calls";
    log().critical(
        "lost {} (nothing heard for {} s: the node died, or its network is cut). The job cannot go on without {}, "
        "so it stops now; the results computed so far are in the cache: run the same command again to compute the "
        "rest (JOBLET_MPI_LOST_AFTER sets how long a silence means a lost node)",
        hosts, std::chrono::duration_cast<std::chrono::seconds>(lost_after_).count(), lost.size() == 1 ? "it" : "them");
    log().flush();
    MPI_Abort(MPI_COMM_WORLD, kLostExit);
    std::_Exit(kLostExit);
  }

  Clock::duration lost_after_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<Identity> identities_;
  std::unique_ptr<std::atomic<bool>[]> left_;  // ranks that announced they finalise
  std::vector<MPI_Request> sends_;             // the watch thread's only
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// Never destroyed at exit: a process that ends without MPI_Finalize (exit() in a failure) ends
// its thread with it, rather than joining it while MPI and the logger may be gone.
LivenessWatch* g_watch = nullptr;

}  // namespace

void start_liveness_watch(MPI_Comm communicator, bool across_nodes) {
  stop_liveness_watch();
  int size = 1;
  MPI_Comm_size(communicator, &size);
  if (!across_nodes || size < 2) return;
  // Every rank takes part, or none: the shortest setting of any rank, and none if one waits forever.
  long long seconds = integer_setting("JOBLET_MPI_LOST_AFTER").value_or(10);
  check(MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_LONG_LONG, MPI_MIN, communicator), "MPI_Allreduce");
  if (seconds <= 0) return;
  g_watch = new LivenessWatch(communicator, std::chrono::seconds(seconds));
}

void liveness_rank_left(int rank) noexcept {
  if (g_watch) g_watch->rank_left(rank);
}

void stop_liveness_watch() noexcept {
  delete g_watch;
  g_watch = nullptr;
}

}  // namespace joblet::detail
