// One call of the mpi backend on one rank. The calling thread is the communicator: all of this
// rank's MPI calls come from it; it records outcomes and watches timeouts, while a compute thread
// runs tasks (mpi_compute.hpp). The run ties together the call's messages (mpi_transport.hpp),
// who computes what (mpi_claims.hpp) and where outcomes go (mpi_delivery.hpp).
//
// A call starts with a meeting of every rank (mpi_meetings.cpp): ranks that reached different
// calls, or a rank that left the job, fail the call on every rank instead of hanging it.
//
// To leave a call, a rank waits for the answer to its last claim, stops sending, and joins a
// reduce-scatter of how many FRAMES messages every rank sent to every other one; it then receives
// until it has all that was sent to it and its own sends completed. No message is left in flight,
// whether the call ended normally, failed or was abandoned, so no rank can hang on another.
#include "mpi_run.hpp"

#include <sys/prctl.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "joblet/detail/frames.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/result_files.hpp"
#include "joblet/detail/task_watchdog.hpp"
#include "mpi_claims.hpp"
#include "mpi_compute.hpp"
#include "mpi_delivery.hpp"
#include "mpi_failures.hpp"
#include "mpi_meetings.hpp"
#include "mpi_transport.hpp"

namespace joblet::detail {
namespace {

using Clock = Job::Clock;
using std::chrono::microseconds;

// Longest sleep between polls of the network while a call runs.
constexpr auto kPollCap = microseconds(100);
// For this long after any progress (a claim sent included), the calling thread polls without
// sleeping, yielding its core to any thread that wants it: a sleep costs a wake-up, and with
// more ranks than cores, a whole turn of the scheduler before the answer is seen. Then it naps,
// so that a rank waiting for a slow answer (a loaded node, a slow network) leaves the cores to
// the ranks that compute.
constexpr auto kSpinWindow = microseconds(50);
constexpr int kSpinsBetweenRounds = 64;

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
  // The meeting never blocks, and fails on every rank when the ranks reached different calls or
  // one left the job; only once every rank is here may blocking collectives follow.
  MpiRun(std::shared_ptr<Job> job, int stream_ranks, bool single_node)
      : job_(std::move(job)),
        identities_(meet_for_call(job_->size(), std::hash<std::string>{}(job_->result_type_name()))),
        transport_(meetings_communicator()),
        delivery_(*job_, transport_, identities_, stream_ranks, single_node),
        compute_(std::make_shared<MpiComputeThreads>(
            job_,
            rank() == 0 ? std::make_unique<MpiTaskCounter>(*job_, transport_.size(), job_->settings().n_workers)
                        : nullptr,
            delivery_.result_folder())),
        claims_(*job_, transport_, *compute_),
        watchdog_(job_->settings().timeout) {
    if (const MpiTaskCounter* counter = compute_->counter()) note_grants(&counter->grants());
    if (rank() < job_->settings().n_workers && job_->size() > 0) {
      compute_->start_thread();
    } else {
      // Ranks beyond n_jobs only receive results; a call without tasks (every rank still meets
      // in it, to agree on that) has nothing to claim.
      claims_.stop();
      compute_->stop();
    }
    note_running_task(&compute_->running_task(), rank());
  }

  ~MpiRun() override {
    try {
      leave();
    } catch (const std::exception& e) {
      log().critical("rank {} could not leave a parallel call cleanly: {}; aborting the MPI job", rank(), e.what());
      MPI_Abort(MPI_COMM_WORLD, 70);
    }
    note_running_task(nullptr, rank());
    if (rank() == 0) note_grants(nullptr);
  }

  void wait(Clock::time_point deadline) override {
    const std::size_t recorded_before = delivery_.recorded();
    auto backoff = microseconds(1);
    while (delivery_.recorded() == recorded_before && !job_->cancelled() && job_->results_here()) {
      const bool progressed = progress();
      const auto now = Clock::now();
      if (progressed) last_progress_ = now;
      if (delivery_.recorded() != recorded_before || now >= deadline) return;
      if (progressed) {
        backoff = microseconds(1);
        continue;
      }
      if (now - last_progress_ < kSpinWindow) {
        // Only a message or a finished batch can move the call on soon: wait for those alone.
        for (int i = 0; i < kSpinsBetweenRounds && !transport_.message_waiting() && !compute_->has_finished(); ++i) {
          std::this_thread::yield();
        }
        continue;
      }
      // Nothing to do: sleep on the compute thread's signal, and poll MPI again soon — sooner
      // while an answer from rank 0 is due, or when the next claim should go out.
      auto nap = std::min(backoff, claims_.outstanding() ? microseconds(20) : kPollCap);
      if (const std::int64_t claim_at = claims_.next_claim_ns(); claim_at > 0) {
        const std::int64_t now_ns = Clock::now().time_since_epoch().count();
        nap = std::min(nap, microseconds(std::max<std::int64_t>((claim_at - now_ns) / 1000, 1)));
      }
      compute_->wait_for_finished(nap);
      backoff = std::min(backoff * 2, kPollCap);
    }
  }

  void cancel() noexcept override { job_->cancel(); }

 private:
  int rank() const noexcept { return transport_.rank(); }

  // One round of everything.
  bool progress() {
    if (job_->stopping() && !job_->cancelled()) job_->cancel();  // a graceful stop: no new task starts
    bool progressed = receive();
    progressed = compute_here() || progressed;
    progressed = take_local_outcomes() || progressed;
    progressed = ask_for_work() || progressed;
    progressed = transport_.test_sends() || progressed;
    if (delivery_.gathers()) progressed = advance_final_broadcast() || progressed;
    enforce_timeout();
    return progressed;
  }

  bool receive() {
    return transport_.receive([this](const MpiMessage& message) {
      switch (message.tag) {
        case kClaimTag:
          delivery_.receive(claims_.answer(message.source, message.bytes), message.source);
          break;
        case kGrantTag:
          claims_.accept(message.bytes);
          break;
        case kFramesTag:
          delivery_.receive(message.bytes, message.source);
          break;
      }
    });
  }

  // Handing a batch to the compute thread and its outcomes back costs two thread switches, more
  // than a batch of a few µs takes: a rank other than 0 runs such batches itself, once measured,
  // after sending its next claim. Rank 0 answers the claims and must not; nor a call with a
  // timeout, whose watchdog runs on this thread.
  bool compute_here() {
    if (!compute_here_allowed_) return false;
    const bool here = claims_.tiny_batches() && !job_->cancelled();
    if (here != computing_here_) compute_->run_on_caller(here);  // it locks: only on a change
    computing_here_ = here;
    if (!computing_here_) return false;
    const IndexRange range = compute_->take_here();
    if (range.empty()) return false;
    ask_for_work();
    compute_->run_here(range);
    return true;
  }

  bool ask_for_work() {
    return claims_.ask_for_work([this] { return delivery_.take_held_for_root(); });
  }

  // This rank's finished batches: recorded here, and sent on in one message — or, while this
  // thread runs batches of a few µs, held, so that a task costs one message each way, not one
  // per rank: rank 0's ride on the next claim, which follows within µs.
  bool take_local_outcomes() {
    const auto finished = compute_->take_finished();
    claims_.observe(finished);
    for (const auto& batch : finished) delivery_.record_own(batch.frames);
    delivery_.send_own(/*hold=*/computing_here_ && !claims_.exhausted() && !job_->cancelled());
    return !finished.empty();
  }

  // The stuck thread keeps its batch; another one takes over the rest of this rank's work.
  void enforce_timeout() {
    watchdog_.check(std::span<WatchedSlot>(&compute_->running_task(), 1), [&](WatchedSlot&, std::size_t task) {
      std::string frames;
      append_frame(frames, task, [&](std::string& out) {
        Job::encode_error(
            std::make_exception_ptr(TimeoutError(watchdog_.describe(task, "the call stopped waiting for it"))), out);
      });
      delivery_.record_own(frames);
      delivery_.send_own();
      if (job_->settings().keep_going && !job_->cancelled()) compute_->start_thread();
      return true;
    });
  }

  // Rank 0 posts the end-of-call broadcasts once every outcome is in; another rank once its own
  // work is done and sent.
  bool advance_final_broadcast() {
    if (!delivery_.final_broadcast_posted() && ready_for_final_broadcast()) delivery_.post_final_broadcast();
    return delivery_.advance_final_broadcast();
  }

  bool ready_for_final_broadcast() {
    if (job_->cancelled()) return true;
    if (rank() == 0) return delivery_.recorded() >= job_->size();
    return claims_.exhausted() && compute_->idle();
  }

  // --- leaving -----------------------------------------------------------------------------

  void leave() {
    const bool complete = !job_->results_here() || (job_->input_complete() && delivery_.recorded() >= job_->size());
    if (!complete) job_->cancel();
    compute_->stop();
    // An outstanding claim is answered before this rank says it stops; no new one goes out (a
    // claim posted while the others leave could be answered after their communicator is gone).
    while (claims_.outstanding()) progress_idle();
    claims_.stop();
    // Tasks still running finish (after a graceful stop, however long they take; a task
    // abandoned at its timeout is not waited for), and their outcomes go out like the others,
    // so every rank ends with the same view of what was done.
    while (compute_->running_unabandoned()) progress_idle();
    take_local_outcomes();
    if (delivery_.gathers()) {
      delivery_.post_final_broadcast();
      while (!delivery_.final_broadcast_done()) {
        if (!delivery_.advance_final_broadcast()) progress_idle_without_broadcast();
      }
    }
    transport_.start_drain();
    while (!transport_.drained()) progress_idle();  // rank 0 keeps answering claims meanwhile
    close_result_folder();
  }

  void close_result_folder() {
    const std::shared_ptr<ResultFiles>& folder = delivery_.result_folder();
    if (!folder) return;
    // Whatever a task abandoned at its timeout writes from here on would never be read: it stays
    // inline, so that no rank recreates the folder after rank 0 removed it.
    if (rank() != 0) folder->remove_now();  // only closes it: rank 0 owns the folder
    // Every rank has read (or mapped) the result files it received before any is removed.
    barrier();
    // Each rank removes what it wrote, then rank 0 the folder: its own view of the folder, on
    // another node's network filesystem client, may not list the others' files yet.
    folder->remove_own_files();
    barrier();
    // Now, not when the compute threads let go of it: an abandoned one keeps it alive after the
    // call returned.
    if (rank() == 0) folder->remove_now();
  }

  void barrier() {
    MPI_Request request;
    check(MPI_Ibarrier(transport_.communicator(), &request), "MPI_Ibarrier");
    for (int done = 0; !done;) {
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (!done) progress_idle();
    }
  }

  void progress_idle() {
    if (!progress()) std::this_thread::sleep_for(microseconds(20));
  }

  void progress_idle_without_broadcast() {
    bool progressed = receive();
    progressed = transport_.test_sends() || progressed;
    if (!progressed) std::this_thread::sleep_for(microseconds(20));
  }

  // The calling thread's timer slack is 1 µs during a call, the meeting included: Linux's default
  // 50 µs would be added to every poll interval.
  TimerSlack slack_{1000};
  std::shared_ptr<Job> job_;
  std::vector<RankIdentity> identities_;
  MpiTransport transport_;
  MpiDelivery delivery_;
  std::shared_ptr<MpiComputeThreads> compute_;
  MpiClaims claims_;
  TaskWatchdog watchdog_;
  const bool compute_here_allowed_ = rank() != 0 && !job_->settings().timeout;
  bool computing_here_ = false;
  Clock::time_point last_progress_{};
};

}  // namespace

std::unique_ptr<Run> start_mpi_run(std::shared_ptr<Job> job, int stream_ranks, bool single_node) {
  return std::make_unique<MpiRun>(std::move(job), stream_ranks, single_node);
}

}  // namespace joblet::detail
