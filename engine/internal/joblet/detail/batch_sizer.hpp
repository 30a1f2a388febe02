#pragma once
// Adaptive batch size of one worker ("batch_size = auto"), for every backend that claims work in
// batches (threads, processes, and each rank of the mpi backend): each claim should take about
// `target`, so that the per-claim cost vanishes for tiny tasks, but never more than a share of
// what is left, so that the last claims stay small and every worker finishes at about the same
// time (guided self-scheduling). A fixed batch size bypasses all of this.

#include <chrono>
#include <cstddef>

namespace joblet::detail {

class BatchSizer {
 public:
  BatchSizer(std::size_t fixed, std::chrono::nanoseconds target, int workers) noexcept
      : fixed_(fixed), target_ns_(static_cast<double>(target.count())), workers_(workers < 1 ? 1 : workers) {}

  // The size of the next claim, with `unclaimed` tasks left (pass SIZE_MAX when whoever grants
  // the claim applies the share itself, as the mpi backend's rank 0 does).
  std::size_t next(std::size_t unclaimed) noexcept;
  // A claim of `tasks` tasks took `elapsed`.
  void observe(std::size_t tasks, std::chrono::nanoseconds elapsed) noexcept;
  // The running estimate of one task's duration; negative until the first claim was timed.
  double ns_per_task() const noexcept { return ns_per_task_; }
  // The last size next() returned.
  std::size_t last() const noexcept { return last_; }

 private:
  std::size_t fixed_;
  double target_ns_;
  int workers_;
  double ns_per_task_ = -1;
  std::size_t last_ = 1;
};

}  // namespace joblet::detail
