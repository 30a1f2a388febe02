#include "joblet/detail/task_watchdog.hpp"

#include <fmt/format.h>

namespace joblet::detail {

std::string TaskWatchdog::describe(std::size_t task, std::string_view consequence) const {
  return fmt::format("task {} ran past the timeout of {:.3g} s; {}", task,
                     std::chrono::duration<double>(timeout_.value_or(std::chrono::nanoseconds(0))).count(),
                     consequence);
}

}  // namespace joblet::detail
