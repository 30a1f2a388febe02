#pragma once
// The one owner of joblet's signal handlers. Modules add listeners (the graceful stop of a time
// limit, the MPI backend's reports of a dying rank); the first listener of a signal installs
// the dispatcher, which calls every listener in the order added, then, unless one of them
// handled the signal, what the signal did before joblet: the program's own handler, or the
// default action (a fatal signal still kills, and the exit status still says which signal).

#include <signal.h>

namespace joblet::detail {

// Runs inside a signal handler: async-signal-safe code only. Returns true when it handled the
// signal (the process goes on), false to let the signal take its course.
using SignalListener = bool (*)(int signal) noexcept;

// Adds a listener; at most 4 per signal (more is a bug: std::logic_error).
void listen_to_signal(int signal, SignalListener listener);

// Whether the program had its own handler for `signal` (or ignored it) before joblet's: then a
// policy such as the graceful stop leaves the signal to the program.
bool program_handles_signal(int signal) noexcept;

}  // namespace joblet::detail
