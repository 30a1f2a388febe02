// What a campaign's observers get back from run_deferring (joblet/detail/campaign_start.hpp).
#include "joblet/detail/campaign_start.hpp"

#include "joblet/cached_call.hpp"
#include "joblet/error.hpp"

namespace joblet::detail {

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
