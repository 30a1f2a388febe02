#pragma once
// When a rank dies, mpirun or srun names the rank and the signal; this adds which task it was
// running, printed by the dying rank itself from a fatal-signal handler.

#include "joblet/backend.hpp"

namespace joblet::detail {

// The task tracker of the call this rank is running (nullptr when none).
void note_running_task(const RunningTask* tracker, int rank) noexcept;
// Installs handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT that print
// "joblet: rank R (pid P on HOST) died from SIGSEGV while running task I" to stderr and then
// die from the signal as before. Signals the program already handles are left alone.
void install_fatal_signal_report();

}  // namespace joblet::detail
