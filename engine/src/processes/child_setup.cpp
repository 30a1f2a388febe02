// The child's side of a processes call until its loop starts: forking, and making the forked
// process a well-behaved worker (dies with its parent, outlives Slurm's signals, leaves the
// parent's cleanup alone, sizes thread pools to its share of the CPUs).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "../worker_context.hpp"
#include "joblet/detail/log.hpp"
#include "shared_state.hpp"

namespace joblet::detail {
namespace {

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

// Variables that size the thread pools of OpenMP, BLAS and friends, set in each worker to its
// share of the CPUs unless the user set them (as joblib does), so that N workers do not each
// start one thread per CPU.
constexpr const char* kThreadLimitVariables[] = {
    "OMP_NUM_THREADS",        "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",     "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS",    "NUMEXPR_NUM_THREADS",
};

// exit() inside a task must not run the parent's atexit handlers and static destructors in
// the worker (they may wait for threads that do not exist here): end the process at once.
void exit_without_parent_cleanup(int status, void*) {
  std::fflush(nullptr);
  _exit(status);
}

// Everything a fresh worker does before its first task.
void become_worker(const WorkerArgs& args) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != args.parent) _exit(kOrphanExit);
  on_exit(exit_without_parent_cleanup, nullptr);
  // A graceful stop is the parent's decision: Slurm signals every process of the job, and a
  // worker must finish its task rather than die on the signal. Caught, not ignored: an ignored
  // signal stays ignored across exec, so a program a task starts could not be stopped by it,
  // while a caught one reverts to its default there.
  struct sigaction outlive {};
  outlive.sa_handler = [](int) {};
  outlive.sa_flags = SA_RESTART;
  sigemptyset(&outlive.sa_mask);
  sigaction(SIGTERM, &outlive, nullptr);
  sigaction(SIGUSR1, &outlive, nullptr);
  reinitialize_after_fork();
  enter_forked_worker(args.budget);
  const std::string share = std::to_string(args.budget);
  for (const char* name : kThreadLimitVariables) setenv(name, share.c_str(), 0);
}

}  // namespace

ForkedWorker fork_worker(WorkerArgs args, const std::vector<int>& inherited_fds) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    throw Error(
        fmt::format("processes backend: cannot create a pipe for a worker: {} (too many open files? "
                    "raise `ulimit -n` or lower n_jobs)",
                    std::strerror(errno)));
  }
  fcntl(pipe_fds[0], F_SETPIPE_SZ, 1 << 20);  // fewer, larger reads for big results; best effort
  args.fd = pipe_fds[1];
  args.parent = getpid();
  // Buffered output would otherwise be written twice: once by us, once by the child.
  std::cout.flush();
  std::fflush(nullptr);
  wait_for_exiting_thread_loops();
  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    throw Error(
        fmt::format("processes backend: fork failed: {} (out of memory or process limit? lower n_jobs "
                    "or use backend \"threads\")",
                    std::strerror(error)));
  }
  if (pid == 0) {
    ::close(pipe_fds[0]);
    for (int fd : inherited_fds) ::close(fd);
    become_worker(args);
    run_worker_loop(args);
  }
  ::close(pipe_fds[1]);
  fcntl(pipe_fds[0], F_SETFL, fcntl(pipe_fds[0], F_GETFL) | O_NONBLOCK);
  return ForkedWorker{pid, pipe_fds[0], open_pidfd(pid)};
}

}  // namespace joblet::detail
