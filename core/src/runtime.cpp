#include "joblet/detail/runtime.hpp"

#include <pthread.h>
#include <unistd.h>

namespace joblet::detail {

constinit ProcessRuntime g_process_runtime;
constinit thread_local ThreadContext g_thread_context;

namespace {
constinit std::atomic<int> g_process_id{0};
}  // namespace

int process_id() noexcept {
  if (const int known = g_process_id.load(std::memory_order_relaxed); known != 0) return known;
  // Registered before the first value is kept, so no fork() can copy a value into a child.
  static const bool forgets_in_children =
      pthread_atfork(nullptr, nullptr, [] { g_process_id.store(0, std::memory_order_relaxed); }) == 0;
  const int pid = static_cast<int>(::getpid());
  if (forgets_in_children) g_process_id.store(pid, std::memory_order_relaxed);
  return pid;
}

}  // namespace joblet::detail
