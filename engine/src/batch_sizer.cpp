#include <algorithm>
#include <cmath>

#include "joblet/detail/batch_sizer.hpp"

namespace joblet::detail {

std::size_t BatchSizer::next(std::size_t unclaimed) noexcept {
  if (fixed_ > 0) return last_ = fixed_;
  // The first claim is a single task: its duration is the first estimate.
  if (ns_per_task_ < 0) return 1;
  const double ideal = target_ns_ / std::max(ns_per_task_, 1.0);
  // Grow at most 8x per claim: one unusually fast task must not make a worker swallow the
  // whole input.
  const double growth_capped = std::min(ideal, static_cast<double>(last_) * 8.0);
  const std::size_t balance_cap = std::max<std::size_t>(unclaimed / (2 * static_cast<std::size_t>(workers_)), 1);
  last_ = std::clamp<std::size_t>(static_cast<std::size_t>(growth_capped), 1, balance_cap);
  return last_;
}

void BatchSizer::observe(std::size_t tasks, std::chrono::nanoseconds elapsed) noexcept {
  if (fixed_ > 0 || tasks == 0) return;
  const double per_task = static_cast<double>(elapsed.count()) / static_cast<double>(tasks);
  // Weighted toward the latest claim so that a change of task cost is followed quickly.
  ns_per_task_ = ns_per_task_ < 0 ? per_task : 0.3 * ns_per_task_ + 0.7 * per_task;
}

}  // namespace joblet::detail
