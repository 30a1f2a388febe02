#pragma once
// How the ranks of an mpi call share its tasks. Rank 0 owns the task counter: its compute thread
// takes batches from it directly, and its calling thread grants batches to the other ranks,
// which claim them (CLAIM, answered by GRANT; mpi_transport.hpp) one outstanding claim at a time.
//
// Each rank sizes its claims from the durations of its own tasks (detail/batch_sizer.hpp); rank 0
// grants no more than a share of what is left, so that all ranks finish together.
//
// Latency matters at batch size 1 and for long tasks: a rank asks for its next batch a round trip
// before the current one is expected to end, so that the answer is there when it is needed. A
// rank whose batches take a few µs (tiny_batches) keeps two claims or batches coming: it would
// otherwise wait a whole round trip, or, with more ranks than cores, a turn of rank 0 on a core,
// for every batch.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "joblet/backend.hpp"
#include "joblet/detail/batch_sizer.hpp"
#include "mpi_compute.hpp"
#include "mpi_failures.hpp"

namespace joblet::detail {

class MpiTransport;

// Rank 0's task counter. Thread-safe.
class MpiTaskCounter {
 public:
  MpiTaskCounter(const Job& job, int ranks, int n_workers);

  // The next tasks for `rank`: at most `count`, and at most a share of what is left; empty when
  // none are left or the call was cancelled.
  IndexRange grant(std::uint64_t count, int rank);
  // Rank 0's own next batch, of the size set last.
  IndexRange grant_own();
  void set_own_batch(std::uint64_t count);
  // What each rank holds, for the failure reports.
  const Grants& grants() const noexcept { return grants_; }

 private:
  IndexRange grant_locked(std::uint64_t count, int rank);

  const Job& job_;
  int n_workers_;
  std::mutex mutex_;
  std::size_t next_ = 0;
  std::uint64_t own_batch_ = 1;
  Grants grants_;
};

// The calling thread's side: sizes this rank's batches, claims them (ranks other than 0) and
// answers the other ranks' claims (rank 0).
class MpiClaims {
 public:
  MpiClaims(const Job& job, MpiTransport& transport, MpiComputeThreads& compute);

  // Sends the next claim when it is time to, with the outcomes `riding` gives for rank 0;
  // returns whether it did.
  bool ask_for_work(const std::function<std::string()>& riding);
  // Rank 0: answers a CLAIM message from `rank`; returns the outcomes that rode on it.
  std::string_view answer(int rank, std::string_view claim);
  // A GRANT message: the tasks go to the compute threads.
  void accept(std::string_view grant);
  // The compute threads finished these batches: the next batch sizes follow their durations.
  void observe(const std::vector<MpiComputeThreads::Finished>& finished);
  // No claim goes out any more.
  void stop() noexcept { exhausted_ = true; }

  // Whether this rank's batches were measured to take a few µs at most: less than handing them
  // to another thread costs (mpi_run.cpp), or a round trip to rank 0.
  bool tiny_batches() const noexcept;
  bool exhausted() const noexcept { return exhausted_; }
  bool outstanding() const noexcept { return outstanding_ > 0; }
  // When the next claim should go out (0: not planned).
  std::int64_t next_claim_ns() const noexcept { return next_claim_ns_; }

 private:
  std::uint64_t next_batch_size();
  bool time_to_prefetch(const MpiComputeThreads::Backlog& backlog);

  const Job& job_;
  MpiTransport& transport_;
  MpiComputeThreads& compute_;
  std::size_t fixed_batch_;
  BatchSizer sizer_;
  bool exhausted_ = false;                   // no more tasks for this rank
  int outstanding_ = 0;                      // claims not answered yet
  std::deque<std::int64_t> claims_sent_ns_;  // when they went out, oldest first
  std::int64_t next_claim_ns_ = 0;
  double round_trip_ns_ = -1;
};

}  // namespace joblet::detail
