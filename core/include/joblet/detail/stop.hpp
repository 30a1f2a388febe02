#pragma once
// Graceful stop, for Slurm time limits: SIGTERM (or the early-warning SIGUSR1) asks running
// parallel calls to stop starting tasks; they let running tasks finish — cached results are
// published as each finishes — then end the process with status 75 ("incomplete: run the same
// command again"), which a resubmitted job turns into a resume.

namespace joblet::detail {

// "Incomplete, run again" (EX_TEMPFAIL): the status of a process stopped before its call ended.
inline constexpr int kIncompleteExitStatus = 75;

bool stop_requested() noexcept;
int stop_signal() noexcept;

// Marks a top-level parallel call as running, for request_stop's decision.
class RunningCall {
 public:
  RunningCall() noexcept;
  ~RunningCall();
  RunningCall(const RunningCall&) = delete;
  RunningCall& operator=(const RunningCall&) = delete;
};

// Makes SIGTERM and SIGUSR1 ask running calls to stop (Session does this), through core's one
// signal dispatcher. A SIGTERM with no call running ends the program at once, as it would
// without joblet (there is nothing to save). A signal the program handles itself is left alone.
void enable_graceful_stop();
bool graceful_stop_enabled() noexcept;

// How a stopped process ends: Session sets a hook that finalises MPI first; default std::exit.
void set_exit_hook(void (*hook)(int status)) noexcept;
[[noreturn]] void exit_process(int status);

}  // namespace joblet::detail
