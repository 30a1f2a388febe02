#include "joblet/detail/signals.hpp"

#include <atomic>
#include <mutex>
#include <stdexcept>

namespace joblet::detail {
namespace {

constexpr int kMaxListeners = 4;

struct SignalState {
  std::atomic<SignalListener> listeners[kMaxListeners] = {};
  struct sigaction before {};  // what the signal did before joblet's dispatcher
  bool installed = false;
};

SignalState g_signals[NSIG];
std::mutex g_install_mutex;  // listen_to_signal only: never taken in a handler
static_assert(std::atomic<SignalListener>::is_always_lock_free, "signal handlers need lock-free atomics");

void take_previous_course(int signal, siginfo_t* info, void* context) {
  const struct sigaction& before = g_signals[signal].before;
  if ((before.sa_flags & SA_SIGINFO) != 0 && before.sa_sigaction != nullptr) {
    before.sa_sigaction(signal, info, context);
  } else if (before.sa_handler == SIG_IGN) {
    return;
  } else if (before.sa_handler != SIG_DFL && before.sa_handler != nullptr) {
    before.sa_handler(signal);
  } else {
    ::signal(signal, SIG_DFL);
    raise(signal);
  }
}

void dispatch(int signal, siginfo_t* info, void* context) {
  bool handled = false;
  for (const auto& slot : g_signals[signal].listeners) {
    if (const SignalListener listener = slot.load()) handled = listener(signal) || handled;
  }
  if (!handled) take_previous_course(signal, info, context);
}

}  // namespace

void listen_to_signal(int signal, SignalListener listener) {
  if (signal <= 0 || signal >= NSIG) throw std::logic_error("listen_to_signal: no such signal");
  std::lock_guard lock(g_install_mutex);
  SignalState& state = g_signals[signal];
  // Listeners are never removed: the first empty slot ends the list.
  for (auto& slot : state.listeners) {
    const SignalListener present = slot.load();
    if (present == listener) return;  // added already
    if (present != nullptr) continue;
    slot.store(listener);
    if (!state.installed) {
      struct sigaction dispatcher {};
      dispatcher.sa_sigaction = dispatch;
      // SA_NODEFER: taking the signal's previous course re-raises it inside the handler.
      dispatcher.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
      sigemptyset(&dispatcher.sa_mask);
      sigaction(signal, &dispatcher, &state.before);
      state.installed = true;
    }
    return;
  }
  throw std::logic_error("listen_to_signal: more than 4 listeners for one signal");
}

bool program_handles_signal(int signal) noexcept {
  std::lock_guard lock(g_install_mutex);
  const SignalState& state = g_signals[signal];
  struct sigaction before = state.before;
  if (!state.installed && sigaction(signal, nullptr, &before) != 0) return true;
  return (before.sa_flags & SA_SIGINFO) != 0 ? before.sa_sigaction != nullptr : before.sa_handler != SIG_DFL;
}

}  // namespace joblet::detail
