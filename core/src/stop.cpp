#include "joblet/detail/stop.hpp"

#include "joblet/detail/mpi_hooks.hpp"
#include "joblet/detail/signals.hpp"

#include <signal.h>

#include <atomic>
#include <cstdlib>

namespace joblet::detail {
namespace {
std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};
std::atomic<int> g_running{0};
std::atomic<bool> g_enabled{false};
std::atomic<void (*)(int)> g_exit_hook{nullptr};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "signal handlers need lock-free atomics");

// Asks running calls to stop. A SIGTERM with no call running takes its course (the program
// ends at once, as it would without joblet: there is nothing to save).
bool on_stop_signal(int signal) noexcept {
  g_signal.store(signal);
  g_stop.store(true);
  return !(signal == SIGTERM && g_running.load() == 0);
}
}  // namespace

bool stop_requested() noexcept { return g_stop.load(std::memory_order_relaxed); }
int stop_signal() noexcept { return g_signal.load(std::memory_order_relaxed); }

RunningCall::RunningCall() noexcept { g_running.fetch_add(1); }
RunningCall::~RunningCall() { g_running.fetch_sub(1); }

void enable_graceful_stop() {
  g_enabled.store(true);
  for (int signal : {SIGTERM, SIGUSR1}) {
    if (!program_handles_signal(signal)) listen_to_signal(signal, on_stop_signal);
  }
}

bool graceful_stop_enabled() noexcept { return g_enabled.load(); }

void set_exit_hook(void (*hook)(int)) noexcept { g_exit_hook.store(hook); }

namespace {
std::atomic<const MpiHooks*> g_mpi_hooks{nullptr};
}
void set_mpi_hooks(const MpiHooks* hooks) noexcept { g_mpi_hooks.store(hooks); }
const MpiHooks* mpi_hooks() noexcept { return g_mpi_hooks.load(); }

void exit_process(int status) {
  if (auto hook = g_exit_hook.load()) hook(status);
  std::exit(status);
}

}  // namespace joblet::detail
