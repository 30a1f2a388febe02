// The mpi backend. On each rank the calling thread is the communicator: all of this rank's MPI
// calls come from it; it records outcomes and watches timeouts, while one compute thread per
// rank runs tasks. Rank 0 owns the task counter: its compute thread takes work from it
// directly, and its calling thread grants work to the other ranks.
//
// A call starts with a meeting of every rank (mpi_meetings.cpp): ranks that reached different
// calls, or a rank that left the job, fail the call on every rank instead of hanging it.
//
// Messages, on a communicator duplicated for each call so that they never mix with the
// program's own or with another call's:
//   CLAIM  rank -> 0   "give me up to k tasks"           (one outstanding per rank)
//   GRANT  0 -> rank   [begin, end); empty: none are left
//   FRAMES any -> any  outcomes of finished tasks (detail/frames.hpp)
// To leave a call, a rank waits for the answer to its last claim, stops sending, and joins a
// reduce-scatter of how many FRAMES messages every rank sent to every other one; it then
// receives until it has all that was sent to it and its own sends completed. No message is left
// in flight, whether the call ended normally, failed or was abandoned, so no rank can hang on
// another — in O(log N) collective steps rather than N² point-to-point messages.
//
// Where results go: up to kStreamAllUpTo ranks (JOBLET_MPI_STREAM_RANKS), each rank streams its results to every other
// rank (generators yield as results arrive everywhere). Beyond that, N - 1 messages per batch
// would swamp the network, so results go to rank 0 only, which ends the call with one tree
// broadcast of all of them (MPI_Ibcast). With ResultsTo::root that broadcast carries nothing
// but the end of the call. Failures always go to every rank at once, so that every rank stops
// and throws the same error. Every rank posts the two end-of-call broadcasts exactly once per
// call in gather modes, also when the call fails, so no collective is left unmatched.
//
// Latency matters at batch size 1 and for long tasks, and three things keep it low (measured
// with Open MPI 4.1): MPI_Iprobe is called again after a miss (ob1 progresses the network only
// after looking for a match, so a message that just arrived is seen by the second call); the
// communicating thread's timer slack is 1 µs during a call (Linux's default 50 µs would be
// added to every poll interval); and a rank asks for its next batch a round trip before the
// current one is expected to end, so that the answer is there when it is needed.
#include "joblet/mpi.hpp"

#include <fmt/format.h>
#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "joblet/backend.hpp"
#include "joblet/cpu.hpp"
#include "joblet/detail/cpu_budget.hpp"
#include "joblet/detail/frames.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/result_folder.hpp"
#include "joblet/settings.hpp"
#include "mpi_failures.hpp"
#include "mpi_meetings.hpp"

namespace joblet {
namespace {

// Set on the threads that run the tasks of an mpi call.
thread_local bool t_runs_mpi_tasks = false;

using Clock = Job::Clock;
using detail::check;
using detail::FrameHeader;

enum Tag : int { kClaimTag = 1, kGrantTag = 2, kFramesTag = 3 };

// A claim should take about this long to run, so that the round trip to rank 0 stays small
// against the work it buys; and, with many ranks, at least kClaimCostBound per rank, so that
// rank 0 (which serves one claim in about 5 µs on a cluster) stays at most half busy serving
// claims, however many ranks ask (docs/mpi-scaling.md).
constexpr auto kBatchTarget = std::chrono::milliseconds(1);
constexpr auto kClaimCostBound = std::chrono::microseconds(10);
// Below this estimated duration a rank always holds one batch in reserve; above it, it asks
// for the next one shortly before the current one should end, so the last batches stay
// balanced.
constexpr auto kPrefetchBelow = std::chrono::milliseconds(2);
// Up to this many ranks, results are streamed to every rank (see the top of this file);
// JOBLET_MPI_STREAM_RANKS changes it.
constexpr int kStreamAllUpTo = 32;

// Read at the start of each call, before its first collective: a rank that threw after it
// would leave the others waiting in it.
int stream_all_up_to() {
  const auto ranks = detail::integer_setting("JOBLET_MPI_STREAM_RANKS");  // >= 1 when set
  if (!ranks) return kStreamAllUpTo;
  return static_cast<int>(std::min<long long>(*ranks, std::numeric_limits<int>::max()));
}
// Longest sleep between polls of the network while a call runs.
constexpr auto kPollCap = std::chrono::microseconds(100);
// Messages above this size are split: MPI counts bytes in an int.
constexpr std::size_t kMaxMessageBytes = std::size_t{1} << 30;

MPI_Comm g_communicator = MPI_COMM_WORLD;
// Whether every rank runs on one node (then /dev/shm is a folder they all see).
bool g_single_node = true;

std::int64_t now_ns() { return Clock::now().time_since_epoch().count(); }

// The compute thread(s) of this rank and what they share with the calling thread.
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
  RunningTask tracker;                            // the task the newest thread runs
  std::atomic<std::int64_t> abandoned{-1};        // the task the caller gave up on
  std::atomic<std::int64_t> batch_started_ns{0};  // the running batch: when it started
  std::atomic<std::uint64_t> batch_tasks{0};      // and how many tasks it has

  // Rank 0 only: the task counter, taken from under `mutex` by the compute thread for itself
  // and by the calling thread for the others.
  bool owns_counter = false;
  std::size_t next = 0;
  int n_workers = 1;
  std::unique_ptr<detail::Grants> grants;
  std::atomic<std::uint64_t> own_batch{1};  // rank 0's batch size, from its calling thread
  // Where result arrays above max_nbytes go instead of messages (shared by every rank).
  std::unique_ptr<detail::ResultFolder> results;

  // With `mutex` held: the next tasks for `rank`, never more than a share of what is left so
  // that all ranks finish together.
  IndexRange grant_locked(std::uint64_t count, int rank) {
    if (job->cancelled() || next >= job->size()) return {};
    const std::size_t left = job->size() - next;
    const std::size_t share = std::max<std::size_t>(left / (2 * static_cast<std::size_t>(n_workers)), 1);
    const std::size_t take =
        std::min<std::size_t>({static_cast<std::size_t>(std::max<std::uint64_t>(count, 1)), share, left});
    const IndexRange range{next, next + take};
    next += take;
    grants->record(rank, range.begin, range.end);
    return range;
  }

  void loop() {
    std::unique_lock lock(mutex);
    for (;;) {
      if (queue.empty() && owns_counter && !no_more_work) {
        const IndexRange own = grant_locked(own_batch.load(std::memory_order_relaxed), 0);
        if (own.empty()) {
          no_more_work = true;
        } else {
          queue.push_back(own);
        }
      }
      work_ready.wait(lock, [&] { return !queue.empty() || no_more_work; });
      if (queue.empty()) return;
      const IndexRange range = queue.front();
      queue.pop_front();
      ++busy;
      lock.unlock();
      batch_tasks.store(range.size(), std::memory_order_relaxed);
      batch_started_ns.store(now_ns(), std::memory_order_relaxed);
      outcomes_ready.notify_one();  // the caller may want to ask for the next batch now
      std::string frames;
      std::optional<detail::ResultWriter> result_files;  // large arrays to files, references in frames
      if (results && results->enabled()) result_files.emplace(*results, frames);
      const auto start = Clock::now();
      for (std::size_t index = range.begin; index < range.end && !job->stopping(); ++index) {
        tracker.started_ns.store(now_ns(), std::memory_order_relaxed);
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

// Sets this thread's timer slack for as long as it lives.
class TimerSlack {
 public:
  explicit TimerSlack(unsigned long nanoseconds) : previous_(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)) {
    prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0);
  }
  ~TimerSlack() {
    if (previous_ > 0) prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(previous_), 0, 0, 0);
  }
  TimerSlack(const TimerSlack&) = delete;
  TimerSlack& operator=(const TimerSlack&) = delete;

 private:
  long previous_;
};

class MpiRun final : public Run {
 public:
  MpiRun(std::shared_ptr<Job> job, int n_workers, int stream_ranks)
      : job_(std::move(job)), n_workers_(n_workers), compute_(std::make_shared<ComputeState>()) {
    // The meeting never blocks, and fails on every rank when the ranks reached different calls
    // or one left the job; only once every rank is here may blocking collectives follow.
    identities_ = detail::meet_for_call(job_->size(), std::hash<std::string>{}(job_->result_type_name()));
    check(MPI_Comm_dup(detail::meetings_communicator(), &comm_), "MPI_Comm_dup");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    sent_to_.assign(static_cast<std::size_t>(size_), 0);
    compute_->job = job_;
    compute_->n_workers = n_workers_;
    make_result_folder();
    if (job_->settings().results_to_root) {
      delivery_ = Delivery::root_only;
    } else if (size_ > stream_ranks) {
      delivery_ = Delivery::gather_then_broadcast;
    }
    if (rank_ == 0) {
      compute_->owns_counter = true;
      compute_->grants = std::make_unique<detail::Grants>(job_.get(), size_);
      compute_->own_batch.store(next_batch_size());
      detail::note_grants(compute_->grants.get());
    }
    if (rank_ < n_workers_ && job_->size() > 0) {
      start_compute_thread();
    } else {
      // Ranks beyond n_jobs only receive results; a call without tasks (every rank still meets
      // in it, to agree on that) has nothing to claim.
      exhausted_ = true;
      compute_->no_more_work = true;
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
    if (rank_ == 0) detail::note_grants(nullptr);
  }

  void wait(Clock::time_point deadline) override {
    const std::size_t recorded_before = recorded_;
    auto backoff = std::chrono::microseconds(1);
    while (recorded_ == recorded_before && !job_->cancelled() && job_->results_here()) {
      const bool progressed = progress();
      if (recorded_ != recorded_before || Clock::now() >= deadline) return;
      if (progressed) {
        backoff = std::chrono::microseconds(1);
        continue;
      }
      // Nothing to do: sleep on the compute thread's signal, and poll MPI again soon — sooner
      // while an answer from rank 0 is due, or when the next claim should go out.
      auto nap = std::min(backoff, claim_outstanding_ ? std::chrono::microseconds(20) : kPollCap);
      if (claim_at_ns_ > 0) {
        nap = std::min(nap, std::chrono::microseconds(std::max<std::int64_t>((claim_at_ns_ - now_ns()) / 1000, 1)));
      }
      std::unique_lock lock(compute_->mutex);
      compute_->outcomes_ready.wait_for(lock, nap, [&] { return !compute_->finished.empty(); });
      backoff = std::min(backoff * 2, kPollCap);
    }
  }

  void cancel() noexcept override { job_->cancel(); }

 private:
  // --- setting up ------------------------------------------------------------------------

  ErrorSite site_of(int rank, std::size_t task) const {
    const detail::RankIdentity& who = identities_[static_cast<std::size_t>(rank)];
    return ErrorSite{task, rank, who.host, who.pid};
  }

  void start_compute_thread() {
    std::thread([state = compute_] {
      t_runs_mpi_tasks = true;
      state->loop();
    }).detach();
  }

  // Large result arrays travel as files that every rank maps: in /dev/shm (or temp_folder)
  // when all ranks share a node, else in temp_folder or the cache directory, which a cluster
  // keeps on a filesystem every node sees. Rank 0 picks the folder and removes it.
  void make_result_folder() {
    const JobSettings& settings = job_->settings();
    if (settings.max_nbytes == std::numeric_limits<std::size_t>::max()) return;
    std::string path;
    if (rank_ == 0) {
      std::string root = settings.temp_folder;
      if (root.empty() && !g_single_node) {
        root = (std::filesystem::absolute(default_cache_dir()) / ".results").string();
      }
      compute_->results = std::make_unique<detail::ResultFolder>(settings.max_nbytes, root);
      path = compute_->results->path();
    }
    unsigned long long length = path.size();
    check(MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, 0, comm_), "MPI_Bcast");
    path.resize(length);
    check(MPI_Bcast(path.data(), static_cast<int>(length), MPI_CHAR, 0, comm_), "MPI_Bcast");
    if (rank_ != 0) {
      compute_->results = std::make_unique<detail::ResultFolder>(
          settings.max_nbytes, detail::ResultFolder::SharedPath{path, /*remove_when_done=*/false});
    }
  }

  // --- one round of everything -------------------------------------------------------------

  bool progress() {
    if (job_->stopping() && !job_->cancelled()) job_->cancel();  // a graceful stop: no new task starts
    bool progressed = receive();
    progressed = take_local_outcomes() || progressed;
    progressed = ask_for_work() || progressed;
    progressed = test_sends() || progressed;
    if (delivery_ != Delivery::stream_to_all) progressed = advance_final_broadcast(false) || progressed;
    if (job_->settings().timeout) enforce_timeout();
    return progressed;
  }

  bool receive() {
    bool any = false;
    bool probed_again = false;
    for (;;) {
      int flag = 0;
      MPI_Status status;
      check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &status), "MPI_Iprobe");
      if (!flag) {
        // Open MPI's ob1 looks for a match before progressing the network: a message that
        // arrived since the last poll is only seen by a second probe.
        if (probed_again) return any;
        probed_again = true;
        continue;
      }
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
          IndexRange range;
          {
            std::lock_guard lock(compute_->mutex);
            range = compute_->grant_locked(count, source);
          }
          std::uint64_t reply[2] = {range.begin, range.end};
          send(source, kGrantTag, std::string(reinterpret_cast<const char*>(reply), sizeof reply));
          break;
        }
        case kGrantTag: {
          std::uint64_t reply[2];
          std::memcpy(reply, message_.data(), sizeof reply);
          claim_outstanding_ = false;
          const double round_trip = static_cast<double>(now_ns() - claim_sent_ns_);
          round_trip_ns_ = round_trip_ns_ < 0 ? round_trip : 0.7 * round_trip_ns_ + 0.3 * round_trip;
          accept_grant({reply[0], reply[1]});
          break;
        }
        case kFramesTag:
          ++frames_received_;
          record_frames(message_, source, nullptr, nullptr);
          break;
        default:
          throw Error(fmt::format("mpi backend: unexpected message tag {} from rank {}", status.MPI_TAG, source));
      }
    }
  }

  static bool is_failure(const char* frame) {
    FrameHeader header;
    std::memcpy(&header, frame, sizeof header);
    return header.length > 0 && frame[sizeof header] != '\0';
  }

  // Whether this rank keeps the successful outcomes of other ranks.
  bool keeps_results() const noexcept { return delivery_ != Delivery::root_only || rank_ == 0; }

  // Records each outcome in `frames` (made on rank `source`). The frames of outcomes recorded
  // here first go on: failures to every rank; successes to `fresh` (to be sent on) and, on
  // rank 0 in gather modes, to the end-of-call broadcast.
  void record_frames(const std::string& frames, int source, std::string* fresh, std::string* failures) {
    std::size_t at = 0;
    while (at + sizeof(FrameHeader) <= frames.size()) {
      FrameHeader header;
      std::memcpy(&header, frames.data() + at, sizeof header);
      if (header.index >= job_->size() || header.length > frames.size() - at - sizeof header) {
        throw Error(fmt::format("mpi backend: a malformed outcome from rank {} (task {}, {} bytes)", source,
                                header.index, header.length));
      }
      const std::size_t whole = sizeof header + header.length;
      const bool failure = is_failure(frames.data() + at);
      if (!failure && !keeps_results()) {
        // ResultsTo::root: this rank's successes go to rank 0 without being kept here.
        if (fresh != nullptr) fresh->append(frames, at, whole);
        at += whole;
        continue;
      }
      const auto* payload = reinterpret_cast<const std::byte*>(frames.data() + at + sizeof header);
      std::optional<detail::ResultReader> result_files;  // maps arrays that came as files
      if (compute_->results && compute_->results->enabled()) {
        result_files.emplace(*compute_->results, std::span<const std::byte>(payload, header.length));
      }
      if (job_->complete_encoded(header.index, {payload, header.length}, site_of(source, header.index))) {
        ++recorded_;
        std::string* next = failure ? failures : fresh;
        if (next != nullptr) next->append(frames, at, whole);
        // Rank 0 ends gather-mode calls with a broadcast: of every outcome, or (results to the
        // root only) of the failures, so that no rank can finish without having seen them.
        if (rank_ == 0 &&
            (delivery_ == Delivery::gather_then_broadcast || (failure && delivery_ == Delivery::root_only))) {
          gathered_.append(frames, at, whole);
        }
      }
      at += whole;
    }
  }

  // Sends outcomes this rank recorded first: failures to every rank; successes to every rank
  // or, in gather modes, to rank 0 only.
  void send_on(std::string successes, std::string failures) {
    if (stopped_sending_) return;
    if (!failures.empty()) send_to_all(kFramesTag, std::move(failures));
    if (successes.empty()) return;
    if (delivery_ == Delivery::stream_to_all) {
      send_to_all(kFramesTag, std::move(successes));
    } else if (rank_ != 0) {
      send(0, kFramesTag, std::move(successes));
      ++sent_to_[0];
    }
  }

  // This rank's finished batches: recorded here, and sent to every other rank in one message.
  bool take_local_outcomes() {
    std::deque<ComputeState::Finished> finished;
    {
      std::lock_guard lock(compute_->mutex);
      finished.swap(compute_->finished);
    }
    std::string successes, failures;
    for (auto& batch : finished) {
      observe(batch.range.size(), batch.elapsed);
      record_frames(batch.frames, rank_, &successes, &failures);
    }
    send_on(std::move(successes), std::move(failures));
    if (rank_ == 0 && !finished.empty()) compute_->own_batch.store(next_batch_size(), std::memory_order_relaxed);
    return !finished.empty();
  }

  // --- claiming work (ranks other than 0) ----------------------------------------------------

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
    claim_at_ns_ = 0;
    if (rank_ == 0 || exhausted_ || claim_outstanding_ || job_->cancelled()) return false;
    {
      std::lock_guard lock(compute_->mutex);
      if (!compute_->queue.empty()) return false;
      if (compute_->busy > 0) {
        // Short batches: always keep one in reserve. Long ones: ask a round trip (with margin)
        // before the running batch should end.
        const bool short_batches = batch_ns_ >= 0 && batch_ns_ < std::chrono::nanoseconds(kPrefetchBelow).count();
        if (!short_batches) {
          if (ns_per_task_ < 0) return false;  // nothing measured yet: wait for the first batch
          const double lead = std::max(2.0 * std::max(round_trip_ns_, 0.0), 200e3);
          const double expected =
              ns_per_task_ * static_cast<double>(compute_->batch_tasks.load(std::memory_order_relaxed));
          const auto ask_at =
              compute_->batch_started_ns.load(std::memory_order_relaxed) + static_cast<std::int64_t>(expected - lead);
          if (now_ns() < ask_at) {
            claim_at_ns_ = ask_at;
            return false;
          }
        }
      }
    }
    const std::uint64_t count = next_batch_size();
    claim_outstanding_ = true;
    claim_sent_ns_ = now_ns();
    send(0, kClaimTag, std::string(reinterpret_cast<const char*>(&count), sizeof count));
    return true;
  }

  // Adaptive batch size from this rank's measured task durations.
  std::uint64_t next_batch_size() {
    if (job_->settings().batch_size > 0) return job_->settings().batch_size;
    if (ns_per_task_ < 0) return 1;
    const double target = std::max(static_cast<double>(std::chrono::nanoseconds(kBatchTarget).count()),
                                   static_cast<double>(std::chrono::nanoseconds(kClaimCostBound).count()) * size_);
    const double ideal = target / std::max(ns_per_task_, 1.0);
    const double capped = std::min(ideal, static_cast<double>(last_batch_) * 8.0);
    last_batch_ = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(capped), 1, std::uint64_t{1} << 30);
    return last_batch_;
  }

  void observe(std::size_t tasks, Clock::duration elapsed) {
    if (tasks == 0) return;
    const double per_task = static_cast<double>(std::chrono::nanoseconds(elapsed).count()) / static_cast<double>(tasks);
    ns_per_task_ = ns_per_task_ < 0 ? per_task : 0.3 * ns_per_task_ + 0.7 * per_task;
    batch_ns_ = ns_per_task_ * static_cast<double>(std::max<std::uint64_t>(last_batch_, 1));
  }

  // --- sending -------------------------------------------------------------------------------

  void post(int destination, int tag, const std::shared_ptr<const std::string>& data) {
    if (data->size() > kMaxMessageBytes) {
      throw SerializationError(fmt::format(
          "mpi backend: {} bytes of results in one message exceed what MPI can send at once; return large arrays "
          "through the cache or files instead",
          data->size()));
    }
    MPI_Request request;
    check(MPI_Isend(data->data(), static_cast<int>(data->size()), MPI_BYTE, destination, tag, comm_, &request),
          "MPI_Isend");
    sends_.push_back({data, request});
  }

  void send(int destination, int tag, std::string bytes) {
    post(destination, tag, std::make_shared<const std::string>(std::move(bytes)));
  }

  void send_to_all(int tag, std::string bytes) {
    auto data = std::make_shared<const std::string>(std::move(bytes));
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      post(peer, tag, data);
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
    if (now_ns() - started <= timeout.count()) return;
    const auto task = static_cast<std::size_t>(index);
    compute_->abandoned.store(index);
    std::string frames;
    detail::append_frame(frames, task, [&](std::string& out) {
      Job::encode_error(std::make_exception_ptr(TimeoutError(
                            fmt::format("task {} ran past the timeout of {:.3g} s; the call stopped waiting for it",
                                        task, std::chrono::duration<double>(timeout).count()))),
                        out);
    });
    std::string successes, failures;
    record_frames(frames, rank_, &successes, &failures);
    send_on(std::move(successes), std::move(failures));
    // The stuck thread keeps its batch; another one takes over the rest of this rank's work.
    if (job_->settings().keep_going && !job_->cancelled()) start_compute_thread();
  }

  // --- the end-of-call broadcasts (gather modes) -------------------------------------------

  // Whether this rank has nothing more to do before the call's end: rank 0 when every outcome
  // is in; another rank when its own work is done and sent.
  bool ready_for_final_broadcast() {
    if (job_->cancelled()) return true;
    if (rank_ == 0) return recorded_ >= job_->size();
    std::lock_guard lock(compute_->mutex);
    return exhausted_ && compute_->busy == 0 && compute_->queue.empty() && compute_->finished.empty();
  }

  // Posts, then completes, the two broadcasts: {completed, bytes}, then the bytes. With
  // `blocking`, waits for them (when leaving). Returns whether anything changed.
  bool advance_final_broadcast(bool blocking) {
    FinalBroadcast& f = final_;
    if (f.done) return false;
    if (!f.posted) {
      if (!blocking && !ready_for_final_broadcast()) return false;
      if (rank_ == 0) {
        const bool completed = !job_->cancelled() && recorded_ >= job_->size();
        f.data.swap(gathered_);
        f.header[0] = completed ? 1 : 0;
        f.header[1] = f.data.size();
        if (f.data.size() > kMaxMessageBytes) {
          throw SerializationError(
              fmt::format("mpi backend: {} bytes of results exceed what one broadcast can send; "
                          "return large arrays through the cache or files instead",
                          f.data.size()));
        }
      }
      check(MPI_Ibcast(f.header, 2, MPI_UINT64_T, 0, comm_, &f.request), "MPI_Ibcast");
      f.posted = true;
    }
    bool changed = false;
    for (;;) {
      int done = 0;
      if (blocking) {
        while (!done) {
          check(MPI_Test(&f.request, &done, MPI_STATUS_IGNORE), "MPI_Test");
          if (!done) progress_idle_without_broadcast();
        }
      } else {
        check(MPI_Test(&f.request, &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (!done) return changed;
      }
      changed = true;
      if (!f.header_done) {
        f.header_done = true;
        if (rank_ != 0) f.data.resize(f.header[1]);
        check(MPI_Ibcast(f.data.data(), static_cast<int>(f.header[1]), MPI_BYTE, 0, comm_, &f.request), "MPI_Ibcast");
        continue;
      }
      f.done = true;
      if (rank_ != 0) {
        record_frames(f.data, 0, nullptr, nullptr);  // failures first: they decide how the call ends
        if (f.header[0] == 1 && delivery_ == Delivery::root_only) job_->finish_without_results();
      }
      std::string().swap(f.data);
      return true;
    }
  }

  void progress_idle_without_broadcast() {
    bool progressed = receive();
    progressed = test_sends() || progressed;
    if (!progressed) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }

  // --- leaving -----------------------------------------------------------------------------

  void leave() {
    const bool complete = !job_->results_here() || (job_->input_complete() && recorded_ >= job_->size());
    if (!complete) job_->cancel();
    {
      std::lock_guard lock(compute_->mutex);
      compute_->queue.clear();
      compute_->no_more_work = true;
    }
    compute_->work_ready.notify_all();
    // An outstanding claim is answered before this rank says it stops; no new one goes out (a
    // claim posted while the others leave could be answered after their communicator is gone).
    while (claim_outstanding_) progress_idle();
    exhausted_ = true;
    // Tasks still running finish (after a graceful stop, however long they take; a task
    // abandoned at its timeout is not waited for), and their outcomes go out like the others,
    // so every rank ends with the same view of what was done.
    while (compute_busy()) progress_idle();
    take_local_outcomes();
    if (delivery_ != Delivery::stream_to_all) advance_final_broadcast(/*blocking=*/true);
    stopped_sending_ = true;
    // How many FRAMES messages every rank sent to this one; then receive until all are in.
    long long expected = 0;
    MPI_Request request;
    check(MPI_Ireduce_scatter_block(sent_to_.data(), &expected, 1, MPI_LONG_LONG, MPI_SUM, comm_, &request),
          "MPI_Ireduce_scatter_block");
    for (int done = 0; !done;) {
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (!done) progress_idle();  // rank 0 keeps answering claims meanwhile
    }
    while (frames_received_ < expected || !sends_.empty()) progress_idle();
    if (compute_->results && compute_->results->enabled()) {
      // Whatever a task abandoned at its timeout writes from here on would never be read: it
      // stays inline, so that no rank recreates the folder after rank 0 removed it.
      if (rank_ != 0) compute_->results->remove_now();  // only closes it: rank 0 owns the folder
      // Every rank has mapped the result files it received before rank 0 removes the folder.
      MPI_Request barrier;
      check(MPI_Ibarrier(comm_, &barrier), "MPI_Ibarrier");
      for (int done = 0; !done;) {
        check(MPI_Test(&barrier, &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (!done) progress_idle();
      }
      // Now, not when the ComputeState goes: an abandoned compute thread keeps that alive
      // after the call returned.
      if (rank_ == 0) compute_->results->remove_now();
    }
    MPI_Comm_free(&comm_);
  }

  bool compute_busy() {
    std::lock_guard lock(compute_->mutex);
    return compute_->busy > 0 && compute_->abandoned.load() < 0;
  }

  void progress_idle() {
    if (!progress()) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }

  struct PendingSend {
    std::shared_ptr<const std::string> data;
    MPI_Request request;
  };

  enum class Delivery { stream_to_all, gather_then_broadcast, root_only };
  struct FinalBroadcast {  // the end-of-call broadcasts of the gather modes
    bool posted = false;
    bool header_done = false;
    bool done = false;
    std::uint64_t header[2] = {0, 0};  // {1 when the call completed, bytes of results}
    std::string data;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  TimerSlack slack_{1000};
  std::shared_ptr<Job> job_;
  Delivery delivery_ = Delivery::stream_to_all;
  FinalBroadcast final_;
  std::string gathered_;  // rank 0 in gather modes: the frames the final broadcast carries
  int n_workers_;
  std::shared_ptr<ComputeState> compute_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<detail::RankIdentity> identities_;
  bool exhausted_ = false;
  bool claim_outstanding_ = false;
  std::int64_t claim_sent_ns_ = 0;
  std::int64_t claim_at_ns_ = 0;  // when the next claim should go out (0: not planned)
  double round_trip_ns_ = -1;
  bool stopped_sending_ = false;
  std::size_t recorded_ = 0;
  std::vector<long long> sent_to_;  // FRAMES messages sent to each rank
  long long frames_received_ = 0;
  std::vector<PendingSend> sends_;
  std::string message_;
  double ns_per_task_ = -1;
  double batch_ns_ = -1;
  std::uint64_t last_batch_ = 1;
};

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
  bool shares_memory() const noexcept override { return false; }
  bool needs_all_tasks() const noexcept override { return true; }
  bool starts_every_call() const noexcept override { return true; }
  std::unique_ptr<Run> start(std::shared_ptr<Job> job) override {
    if (t_runs_mpi_tasks) {
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
                        " cannot be encoded: give it a cereal serialize() function, or use backend \"threads\"");
    }
    const int n_workers = job->settings().n_workers;
    return std::make_unique<MpiRun>(std::move(job), n_workers, stream_all_up_to());
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
  static const bool registered = [] {
    register_backend("mpi", [] { return std::make_unique<MpiBackend>(); });
    detail::install_failure_reports();
    return true;
  }();
  (void)registered;
}

}  // namespace joblet
