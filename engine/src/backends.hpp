#pragma once
// The built-in backends, registered by the registry under their names.
#include <chrono>
#include <cstddef>
#include <memory>

#include "joblet/backend.hpp"

namespace joblet::detail {

std::unique_ptr<Backend> make_sequential_backend();
std::unique_ptr<Backend> make_threads_backend();
std::unique_ptr<Backend> make_processes_backend();

// Adaptive batch size of one worker ("batch_size = auto"): each claim should take about
// `target` so that the per-claim cost vanishes for tiny tasks, but never more than a share of
// what is left, so that the last claims stay small and every worker finishes at about the
// same time (guided self-scheduling). A fixed batch size bypasses all of this.
class BatchSizer {
 public:
  BatchSizer(std::size_t fixed, std::chrono::nanoseconds target, int workers) noexcept
      : fixed_(fixed), target_ns_(static_cast<double>(target.count())), workers_(workers < 1 ? 1 : workers) {}

  std::size_t next(std::size_t unclaimed) noexcept;
  void observe(std::size_t tasks, std::chrono::nanoseconds elapsed) noexcept;

 private:
  std::size_t fixed_;
  double target_ns_;
  int workers_;
  double ns_per_task_ = -1;  // running estimate; negative until the first claim is timed
  std::size_t last_ = 1;
};

}  // namespace joblet::detail
