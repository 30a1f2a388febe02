// What a campaign's observers get back from run_deferring (joblet/detail/campaign_start.hpp).
#include "joblet/detail/campaign_start.hpp"

#include "joblet/cached_call.hpp"
#include "joblet/error.hpp"

namespace joblet::detail {

bool is_put_aside(const std::exception_ptr& error) noexcept {
  // ComputingElsewhere keeps its type across processes too (engine/src/exceptions.cpp).
  if (!error) return false;
  try {
    std::rethrow_exception(error);
  } catch (const ComputingElsewhere&) {
    return true;
  } catch (...) {
    return false;
  }
}

bool lost_task(const std::exception& error) noexcept {
  return dynamic_cast<const WorkerDiedError*>(&error) != nullptr ||
         dynamic_cast<const TimeoutError*>(&error) != nullptr ||
         dynamic_cast<const RetriesExhaustedError*>(&error) != nullptr;
}

bool lost_task(const std::exception_ptr& error) noexcept {
  if (!error) return false;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return lost_task(e);
  } catch (...) {
    return false;
  }
}

std::vector<std::size_t> put_aside(std::span<const std::size_t> indices, std::span<const std::exception_ptr> errors) {
  std::vector<std::size_t> aside;
  std::exception_ptr first_failure;
  for (std::size_t at = 0; at < errors.size() && at < indices.size(); ++at) {
    if (!errors[at]) continue;
    if (is_put_aside(errors[at])) {
      aside.push_back(indices[at]);
    } else if (!first_failure) {
      first_failure = errors[at];
    }
  }
  if (first_failure) std::rethrow_exception(first_failure);
  return aside;
}

}  // namespace joblet::detail
