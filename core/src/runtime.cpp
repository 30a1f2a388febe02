#include "joblet/detail/runtime.hpp"

namespace joblet::detail {

constinit ProcessRuntime g_process_runtime;
constinit thread_local ThreadContext g_thread_context;

}  // namespace joblet::detail
