#pragma once
// When a rank dies, mpirun or srun names the rank and the signal; these reports add which task
// it was running (see mpi_failures.cpp).

#include <atomic>
#include <cstdint>
#include <memory>

#include "joblet/backend.hpp"

namespace joblet::detail {

// Rank 0's record of what it handed to each rank and was not reported yet: the running batch of
// every rank and the (up to two) batches it asked for ahead (mpi_claims.hpp).
struct Grants {
  static constexpr int kPerRank = 3;
  struct Held {
    std::atomic<std::uint64_t> begin{0};
    std::atomic<std::uint64_t> end{0};
  };
  Grants(const Job* job_, int ranks_) : job(job_), ranks(ranks_), held(new Held[ranks_ * kPerRank]) {}
  void record(int rank, std::uint64_t begin, std::uint64_t end) {
    Held& slot = held[rank * kPerRank + next_slot(rank)];
    slot.begin.store(begin);
    slot.end.store(end);
  }
  const Job* job;
  int ranks;
  std::unique_ptr<Held[]> held;

 private:
  // An empty slot, or else the oldest batch: grants to one rank only move forward, and its
  // oldest batch was started first.
  int next_slot(int rank) const {
    const Held* slots = &held[rank * kPerRank];
    int oldest = 0;
    for (int slot = 0; slot < kPerRank; ++slot) {
      if (slots[slot].begin.load() == slots[slot].end.load()) return slot;
      if (slots[slot].begin.load() < slots[oldest].begin.load()) oldest = slot;
    }
    return oldest;
  }
};

// The task tracker of the call this rank runs (nullptr when none), and its rank.
void note_running_task(const RunningTask* tracker, int rank) noexcept;
// Rank 0: the grants of the running call (nullptr when none).
void note_grants(const Grants* grants) noexcept;
const Grants* noted_grants() noexcept;
// Installs the reports: fatal-signal and SIGTERM handlers (chained to whatever was installed
// before, such as the MPI library's), and an exit() hook.
void install_failure_reports();

}  // namespace joblet::detail
