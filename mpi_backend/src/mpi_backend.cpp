// The mpi backend. On each rank the calling thread is the communicator: it talks MPI (all of
// this rank's MPI calls come from it), records outcomes and watches timeouts, while one
// compute thread per rank runs tasks. Rank 0's calling thread also hands out task indices.
//
// Messages, on a communicator duplicated for each call so that they never mix with the
// program's own or with another call's:
//   CLAIM  rank -> 0   "give me up to k tasks"           (one outstanding per rank)
//   GRANT  0 -> rank   [begin, end); empty: none are left
//   FRAMES any -> any  outcomes of finished tasks (detail/frames.hpp), sent to every rank
//   STOP   any -> any  "I send you nothing more; I sent you m FRAMES messages"
// A rank leaves a call once it sent STOP to everyone, received STOP from everyone with all
// the FRAMES announced, and all of its own sends completed: no message is left in flight,
// whether the call ended normally, failed or was abandoned, so no rank can hang on another.
#include "joblet/mpi.hpp"

#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "joblet/backend.hpp"
#include "joblet/cpu.hpp"
#include "joblet/detail/cpu_budget.hpp"
#include "joblet/detail/frames.hpp"
#include "joblet/detail/log.hpp"
#include "mpi_failures.hpp"

namespace joblet {
namespace {

using Clock = Job::Clock;
using detail::FrameHeader;

enum Tag : int { kClaimTag = 1, kGrantTag = 2, kFramesTag = 3, kStopTag = 4 };

// A claim should take about this long to run, so that the round trip to rank 0 stays small
// against the work it buys.
constexpr auto kBatchTarget = std::chrono::milliseconds(1);
// Below this estimated duration a rank asks for its next batch while it runs the current one,
// hiding the round trip; above it, asking only when idle keeps the last batches balanced.
constexpr auto kPrefetchBelow = std::chrono::milliseconds(2);
// Messages above this size are split: MPI counts bytes in an int.
constexpr std::size_t kMaxMessageBytes = std::size_t{1} << 30;

MPI_Comm g_communicator = MPI_COMM_WORLD;

void check(int status, const char* what) {
  if (status != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(status, text, &length);
    throw Error(fmt::format("mpi backend: {} failed: {}", what, std::string(text, static_cast<std::size_t>(length))));
  }
}

struct RankIdentity {
  long pid;
  char host[64];
};

// The compute thread of this rank and what it shares with the calling thread.
struct ComputeState {
  std::shared_ptr<Job> job;
  std::mutex mutex;
  std::condition_variable work_ready;
  std::condition_variable outcomes_ready;
  std::deque<IndexRange> queue;
  bool no_more_work = false;
  int busy = 0;  // threads running a batch now
  struct Finished {
    IndexRange range;
    std::string frames;
    Clock::duration elapsed;
  };
  std::deque<Finished> finished;
  RunningTask tracker;                      // the task the newest thread runs
  std::atomic<std::int64_t> abandoned{-1};  // the task the caller gave up on

  void loop() {
    std::unique_lock lock(mutex);
    for (;;) {
      work_ready.wait(lock, [&] { return !queue.empty() || no_more_work; });
      if (queue.empty()) return;
      const IndexRange range = queue.front();
      queue.pop_front();
      ++busy;
      lock.unlock();
      outcomes_ready.notify_one();  // the caller may want to ask for the next batch now
      std::string frames;
      const auto start = Clock::now();
      for (std::size_t index = range.begin; index < range.end && !job->cancelled(); ++index) {
        tracker.started_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        tracker.index.store(static_cast<std::int64_t>(index), std::memory_order_release);
        detail::append_frame(frames, index, [&](std::string& out) { job->run_encoded(index, out); });
        tracker.index.store(-1, std::memory_order_release);
      }
      const auto elapsed = Clock::now() - start;
      lock.lock();
      --busy;
      finished.push_back({range, std::move(frames), elapsed});
      outcomes_ready.notify_one();
    }
  }
};

class MpiRun final : public Run {
 public:
  MpiRun(std::shared_ptr<Job> job, MPI_Comm parent, int n_workers)
      : job_(std::move(job)),
        n_workers_(n_workers),
        sizer_batch_(job_->settings().batch_size),
        compute_(std::make_shared<ComputeState>()) {
    check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    check_same_call();
    exchange_identities();
    sent_to_.assign(static_cast<std::size_t>(size_), 0);
    received_from_.assign(static_cast<std::size_t>(size_), 0);
    stop_from_.assign(static_cast<std::size_t>(size_), -1);
    compute_->job = job_;
    if (rank_ < n_workers_) {
      start_compute_thread();
    } else {
      exhausted_ = true;  // ranks beyond n_jobs only receive results
    }
    if (rank_ == 0) {
      grants_ = std::make_unique<detail::Grants>(job_.get(), size_);
      detail::note_grants(grants_.get());
    }
    detail::note_running_task(&compute_->tracker, rank_);
  }

  ~MpiRun() override {
    try {
      leave();
    } catch (const std::exception& e) {
      detail::log().critical("rank {} could not leave a parallel call cleanly: {}; aborting the MPI job", rank_,
                             e.what());
      MPI_Abort(MPI_COMM_WORLD, 70);
    }
    detail::note_running_task(nullptr, rank_);
    detail::note_grants(nullptr);
  }

  void wait(Clock::time_point deadline) override {
    const std::size_t recorded_before = recorded_;
    auto backoff = std::chrono::microseconds(1);
    while (recorded_ == recorded_before && !job_->cancelled()) {
      const bool progressed = progress();
      if (recorded_ != recorded_before || Clock::now() >= deadline) return;
      if (progressed) {
        backoff = std::chrono::microseconds(1);
        continue;
      }
      // Nothing to do: sleep on the compute thread's signal, and poll MPI again soon.
      // Rank 0 polls more often while other ranks may be waiting for a grant.
      const auto cap = rank_ == 0 && !all_claims_answered() ? std::chrono::microseconds(50)
                                                            : std::chrono::microseconds(1000);
      std::unique_lock lock(compute_->mutex);
      compute_->outcomes_ready.wait_for(lock, std::min(backoff, cap), [&] { return !compute_->finished.empty(); });
      backoff = std::min(backoff * 2, cap);
    }
  }

  void cancel() noexcept override { job_->cancel(); }

 private:
  // --- setting up ------------------------------------------------------------------------

  // Every rank must bring the same call: compare task counts and result types.
  void check_same_call() {
    struct Signature {
      unsigned long long tasks;
      unsigned long long type_hash;
    } mine{job_->size(), std::hash<std::string>{}(job_->result_type_name())};
    std::vector<Signature> all(static_cast<std::size_t>(size_));
    check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, comm_), "MPI_Allgather");
    std::string differences;
    for (int r = 0; r < size_; ++r) {
      const auto& other = all[static_cast<std::size_t>(r)];
      if (other.tasks != all[0].tasks || other.type_hash != all[0].type_hash) {
        differences += fmt::format("; rank {}: {} tasks", r, other.tasks);
        if (other.type_hash != all[0].type_hash) differences += " with another result type";
      }
    }
    if (!differences.empty()) {
      MPI_Comm_free(&comm_);
      throw ConfigError(fmt::format(
          "ranks reached this parallel call with different task lists (rank 0: {} tasks{}): every rank must make "
          "the same calls with the same tasks, like an MPI collective",
          all[0].tasks, differences));
    }
  }

  void exchange_identities() {
    RankIdentity mine{static_cast<long>(getpid()), {}};
    const std::string host = ErrorSite::here().host;
    std::strncpy(mine.host, host.c_str(), sizeof mine.host - 1);
    identities_.resize(static_cast<std::size_t>(size_));
    check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, identities_.data(), sizeof mine, MPI_BYTE, comm_),
          "MPI_Allgather");
  }

  ErrorSite site_of(int rank, std::size_t task) const {
    const RankIdentity& who = identities_[static_cast<std::size_t>(rank)];
    return ErrorSite{task, rank, who.host, who.pid};
  }

  void start_compute_thread() {
    std::thread([state = compute_] { state->loop(); }).detach();
    ++compute_threads_;
  }

  // --- one round of everything -------------------------------------------------------------

  bool progress() {
    bool progressed = receive();
    progressed = take_local_outcomes() || progressed;
    progressed = ask_for_work() || progressed;
    progressed = test_sends() || progressed;
    if (job_->settings().timeout) enforce_timeout();
    return progressed;
  }

  bool receive() {
    bool any = false;
    for (;;) {
      int flag = 0;
      MPI_Status status;
      check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &status), "MPI_Iprobe");
      if (!flag) return any;
      int bytes = 0;
      MPI_Get_count(&status, MPI_BYTE, &bytes);
      message_.resize(static_cast<std::size_t>(bytes));
      check(MPI_Recv(message_.data(), bytes, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, comm_, MPI_STATUS_IGNORE),
            "MPI_Recv");
      any = true;
      const int source = status.MPI_SOURCE;
      switch (status.MPI_TAG) {
        case kClaimTag: {
          std::uint64_t count = 0;
          std::memcpy(&count, message_.data(), sizeof count);
          const IndexRange range = grant(count, source);
          std::uint64_t reply[2] = {range.begin, range.end};
          send(source, kGrantTag, std::string(reinterpret_cast<const char*>(reply), sizeof reply));
          if (range.empty()) ++ranks_told_exhausted_;
          break;
        }
        case kGrantTag: {
          std::uint64_t reply[2];
          std::memcpy(reply, message_.data(), sizeof reply);
          claim_outstanding_ = false;
          accept_grant({reply[0], reply[1]});
          break;
        }
        case kFramesTag:
          ++received_from_[static_cast<std::size_t>(source)];
          record_frames(message_, source, /*forward=*/false);
          break;
        case kStopTag: {
          std::uint64_t count = 0;
          std::memcpy(&count, message_.data(), sizeof count);
          stop_from_[static_cast<std::size_t>(source)] = static_cast<long long>(count);
          break;
        }
        default:
          throw Error(fmt::format("mpi backend: unexpected message tag {} from rank {}", status.MPI_TAG, source));
      }
    }
  }

  // Records each outcome in `frames` (made on rank `source`); with `forward`, also sends the
  // outcomes this rank recorded first to every other rank.
  void record_frames(const std::string& frames, int source, bool forward) {
    std::string fresh;
    std::size_t at = 0;
    while (at + sizeof(FrameHeader) <= frames.size()) {
      FrameHeader header;
      std::memcpy(&header, frames.data() + at, sizeof header);
      if (header.index >= job_->size() || header.length > frames.size() - at - sizeof header) {
        throw Error(fmt::format("mpi backend: a malformed outcome from rank {} (task {}, {} bytes)", source,
                                header.index, header.length));
      }
      const auto* payload = reinterpret_cast<const std::byte*>(frames.data() + at + sizeof header);
      if (job_->complete_encoded(header.index, {payload, header.length}, site_of(source, header.index))) {
        ++recorded_;
        if (forward) fresh.append(frames, at, sizeof header + header.length);
      }
      at += sizeof header + header.length;
    }
    if (forward && !fresh.empty() && !stopped_sending_) send_to_all(kFramesTag, std::move(fresh));
  }

  bool take_local_outcomes() {
    std::deque<ComputeState::Finished> finished;
    {
      std::lock_guard lock(compute_->mutex);
      finished.swap(compute_->finished);
    }
    for (auto& batch : finished) {
      observe(batch.range.size(), batch.elapsed);
      record_frames(batch.frames, rank_, /*forward=*/true);
    }
    return !finished.empty();
  }

  // --- claiming work -------------------------------------------------------------------------

  // Rank 0 only: the next tasks for a rank that asked for `count`, never more than a share of
  // what is left so that all ranks finish together.
  IndexRange grant(std::uint64_t count, int rank) {
    if (job_->cancelled() || next_ >= job_->size()) return {};
    const std::size_t left = job_->size() - next_;
    const std::size_t share = std::max<std::size_t>(left / (2 * static_cast<std::size_t>(n_workers_)), 1);
    const std::size_t take =
        std::min<std::size_t>({static_cast<std::size_t>(std::max<std::uint64_t>(count, 1)), share, left});
    const IndexRange range{next_, next_ + take};
    next_ += take;
    grants_->record(rank, range.begin, range.end);
    return range;
  }

  void accept_grant(IndexRange range) {
    {
      std::lock_guard lock(compute_->mutex);
      if (range.empty()) {
        exhausted_ = true;
        compute_->no_more_work = true;
      } else {
        compute_->queue.push_back(range);
      }
    }
    compute_->work_ready.notify_all();
  }

  bool ask_for_work() {
    if (exhausted_ || claim_outstanding_ || job_->cancelled()) return false;
    {
      std::lock_guard lock(compute_->mutex);
      if (!compute_->queue.empty()) return false;
      // While a batch runs, ask ahead only when batches are short (see kPrefetchBelow).
      const bool prefetch = batch_ns_ >= 0 && batch_ns_ < std::chrono::nanoseconds(kPrefetchBelow).count();
      if (compute_->busy > 0 && !prefetch) return false;
    }
    const std::uint64_t count = next_batch_size();
    if (rank_ == 0) {
      accept_grant(grant(count, 0));
    } else {
      claim_outstanding_ = true;
      send(0, kClaimTag, std::string(reinterpret_cast<const char*>(&count), sizeof count));
    }
    return true;
  }

  // Adaptive batch size from this rank's measured task durations (as BatchSizer does).
  std::uint64_t next_batch_size() {
    if (sizer_batch_ > 0) return sizer_batch_;
    if (ns_per_task_ < 0) return 1;
    const double ideal = std::chrono::nanoseconds(kBatchTarget).count() / std::max(ns_per_task_, 1.0);
    const double capped = std::min(ideal, static_cast<double>(last_batch_) * 8.0);
    last_batch_ = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(capped), 1, std::uint64_t{1} << 30);
    return last_batch_;
  }

  void observe(std::size_t tasks, Clock::duration elapsed) {
    if (tasks == 0) return;
    const double per_task = static_cast<double>(std::chrono::nanoseconds(elapsed).count()) / static_cast<double>(tasks);
    ns_per_task_ = ns_per_task_ < 0 ? per_task : 0.3 * ns_per_task_ + 0.7 * per_task;
    batch_ns_ = ns_per_task_ * static_cast<double>(tasks);
  }

  bool all_claims_answered() const noexcept { return ranks_told_exhausted_ >= n_workers_ - 1; }

  // --- sending -------------------------------------------------------------------------------

  void send(int destination, int tag, std::string bytes) {
    auto data = std::make_shared<const std::string>(std::move(bytes));
    if (data->size() > kMaxMessageBytes) {
      throw SerializationError(fmt::format(
          "mpi backend: {} bytes of results in one message exceed what MPI can send at once; return large arrays "
          "through the cache or files instead",
          data->size()));
    }
    MPI_Request request;
    check(MPI_Isend(data->data(), static_cast<int>(data->size()), MPI_BYTE, destination, tag, comm_, &request),
          "MPI_Isend");
    sends_.push_back({std::move(data), request});
  }

  void send_to_all(int tag, std::string bytes) {
    auto data = std::make_shared<const std::string>(std::move(bytes));
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      MPI_Request request;
      check(MPI_Isend(data->data(), static_cast<int>(data->size()), MPI_BYTE, peer, tag, comm_, &request),
            "MPI_Isend");
      sends_.push_back({data, request});
      if (tag == kFramesTag) ++sent_to_[static_cast<std::size_t>(peer)];
    }
  }

  bool test_sends() {
    if (sends_.empty()) return false;
    const std::size_t before = sends_.size();
    std::erase_if(sends_, [&](PendingSend& pending) {
      int done = 0;
      check(MPI_Test(&pending.request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      return done != 0;
    });
    return sends_.size() != before;
  }

  // --- timeouts --------------------------------------------------------------------------

  void enforce_timeout() {
    const auto timeout = *job_->settings().timeout;
    const auto index = compute_->tracker.index.load(std::memory_order_acquire);
    if (index < 0 || compute_->abandoned.load() == index) return;
    const auto started = compute_->tracker.started_ns.load(std::memory_order_relaxed);
    if (compute_->tracker.index.load(std::memory_order_acquire) != index) return;
    if (Clock::now().time_since_epoch().count() - started <= timeout.count()) return;
    const auto task = static_cast<std::size_t>(index);
    compute_->abandoned.store(index);
    std::string frames;
    detail::append_frame(frames, task, [&](std::string& out) {
      Job::encode_error(std::make_exception_ptr(TimeoutError(
                            fmt::format("task {} ran past the timeout of {:.3g} s; the call stopped waiting for it",
                                        task, std::chrono::duration<double>(timeout).count()))),
                        out);
    });
    record_frames(frames, rank_, /*forward=*/true);
    // The stuck thread keeps its batch; another one takes over the rest of this rank's work.
    if (job_->settings().keep_going && !job_->cancelled()) start_compute_thread();
  }

  // --- leaving -----------------------------------------------------------------------------

  void leave() {
    const bool complete = job_->input_complete() && recorded_ >= job_->size();
    if (!complete) job_->cancel();
    {
      std::lock_guard lock(compute_->mutex);
      compute_->queue.clear();
      compute_->no_more_work = true;
    }
    compute_->work_ready.notify_all();
    // An outstanding claim is answered before this rank says it stops.
    while (claim_outstanding_) progress_idle();
    stopped_sending_ = true;
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      const std::uint64_t count = sent_to_[static_cast<std::size_t>(peer)];
      send(peer, kStopTag, std::string(reinterpret_cast<const char*>(&count), sizeof count));
    }
    while (!everyone_stopped() || !sends_.empty()) progress_idle();
    // No task of this call runs after it returns, except one abandoned at its timeout.
    {
      std::unique_lock lock(compute_->mutex);
      compute_->outcomes_ready.wait(lock, [&] {
        return compute_->busy == 0 || compute_->abandoned.load() >= 0;
      });
    }
    MPI_Comm_free(&comm_);
  }

  bool everyone_stopped() const {
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      const auto expected = stop_from_[static_cast<std::size_t>(peer)];
      if (expected < 0 || received_from_[static_cast<std::size_t>(peer)] < expected) return false;
    }
    return true;
  }

  void progress_idle() {
    if (!progress()) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }

  struct PendingSend {
    std::shared_ptr<const std::string> data;
    MPI_Request request;
  };

  std::shared_ptr<Job> job_;
  int n_workers_;
  std::uint64_t sizer_batch_;
  std::shared_ptr<ComputeState> compute_;
  std::unique_ptr<detail::Grants> grants_;  // rank 0 only
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<RankIdentity> identities_;
  std::size_t next_ = 0;  // rank 0: the next index to grant
  bool exhausted_ = false;
  bool claim_outstanding_ = false;
  int ranks_told_exhausted_ = 0;
  bool stopped_sending_ = false;
  std::size_t recorded_ = 0;
  std::vector<long long> sent_to_, received_from_, stop_from_;
  std::vector<PendingSend> sends_;
  std::string message_;
  double ns_per_task_ = -1;
  double batch_ns_ = -1;
  std::uint64_t last_batch_ = 1;
  int compute_threads_ = 0;
};

class MpiBackend final : public Backend {
 public:
  int effective_n_jobs(int n_jobs) const override {
    int size = 1;
    MPI_Comm_size(g_communicator, &size);
    if (n_jobs == 0) {
      throw ConfigError("n_jobs == 0 is not valid: -1 uses every rank, a positive number that many ranks");
    }
    if (n_jobs < 0) return std::max(size + 1 + n_jobs, 1);
    return std::min(n_jobs, size);
  }
  int default_n_jobs() const override { return -1; }
  bool shares_memory() const noexcept override { return false; }
  bool needs_all_tasks() const noexcept override { return true; }
  std::unique_ptr<Run> start(std::shared_ptr<Job> job) override {
    if (!job->results_encodable()) {
      throw ConfigError("backend 'mpi' sends results between ranks, but the result type " + job->result_type_name() +
                        " cannot be encoded: give it a cereal serialize() function, or use backend \"threads\"");
    }
    const int n_workers = job->settings().n_workers;
    return std::make_unique<MpiRun>(std::move(job), g_communicator, n_workers);
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
  share_node_cpus(communicator);
  static const bool registered = [] {
    register_backend("mpi", [] { return std::make_unique<MpiBackend>(); });
    detail::install_failure_reports();
    return true;
  }();
  (void)registered;
}

}  // namespace joblet
