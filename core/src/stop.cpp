#include "joblet/detail/stop.hpp"

#include <signal.h>

#include <cstdlib>

#include "joblet/detail/mpi_hooks.hpp"
#include "joblet/detail/runtime.hpp"
#include "joblet/detail/signals.hpp"

namespace joblet::detail {
namespace {

// Asks running calls to stop. A SIGTERM with no call running takes its course (the program
// ends at once, as it would without joblet: there is nothing to save).
bool on_stop_signal(int signal) noexcept {
  ProcessRuntime& process = process_runtime();
  process.stop_signal.store(signal);
  process.stop_requested.store(true);
  return !(signal == SIGTERM && process.running_calls.load() == 0);
}

}  // namespace

bool stop_requested() noexcept { return process_runtime().stop_requested.load(std::memory_order_relaxed); }
int stop_signal() noexcept { return process_runtime().stop_signal.load(std::memory_order_relaxed); }

RunningCall::RunningCall() noexcept { process_runtime().running_calls.fetch_add(1); }
RunningCall::~RunningCall() { process_runtime().running_calls.fetch_sub(1); }

void enable_graceful_stop() {
  process_runtime().graceful_stop_enabled.store(true);
  for (int signal : {SIGTERM, SIGUSR1}) {
    if (!program_handles_signal(signal)) listen_to_signal(signal, on_stop_signal);
  }
}

bool graceful_stop_enabled() noexcept { return process_runtime().graceful_stop_enabled.load(); }

void set_exit_hook(void (*hook)(int)) noexcept { process_runtime().exit_hook.store(hook); }

void set_mpi_hooks(const MpiHooks* hooks) noexcept { process_runtime().mpi_hooks.store(hooks); }
const MpiHooks* mpi_hooks() noexcept { return process_runtime().mpi_hooks.load(); }

void exit_process(int status) {
  if (auto hook = process_runtime().exit_hook.load()) hook(status);
  std::exit(status);
}

}  // namespace joblet::detail
