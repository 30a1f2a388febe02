// Reports naming the task when a rank dies during a parallel call. The launcher names the rank
// and how it ended; these lines add which task was running:
//   - the dying rank itself, for fatal signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT),
//     exit() inside a task, and MPI_Abort (through the MPI profiling interface);
//   - rank 0, when the launcher terminates the job (SIGTERM) after a rank vanished without a
//     word (SIGKILL, the OOM killer): which rank holds which unreported task.
// Everything a handler touches is an atomic or fixed storage: no allocation, no stdio, no locks.
#include "mpi_failures.hpp"

#include "joblet/detail/signals.hpp"

#include <mpi.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace joblet::detail {
namespace {

std::atomic<const RunningTask*> g_tracker{nullptr};
std::atomic<const Grants*> g_grants{nullptr};
std::atomic<int> g_rank{-1};
char g_host[64] = {};

constexpr int kReportedSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTERM};

// Text built without allocating, for signal handlers.
struct Line {
  char text[1024];
  std::size_t size = 0;
  Line& operator<<(const char* part) {
    while (*part != '\0' && size < sizeof text - 1) text[size++] = *part++;
    return *this;
  }
  Line& operator<<(long long number) {
    char digits[24];
    int count = 0;
    unsigned long long value =
        number < 0 ? 0ULL - static_cast<unsigned long long>(number) : static_cast<unsigned long long>(number);
    do {
      digits[count++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    if (number < 0) *this << "-";
    while (count > 0 && size < sizeof text - 1) text[size++] = digits[--count];
    return *this;
  }
  void write_out() const {
    ssize_t ignored = ::write(STDERR_FILENO, text, size);
    (void)ignored;
  }
};

Line& who(Line& line) {
  return line << "joblet: rank " << static_cast<long long>(g_rank.load()) << " (pid "
              << static_cast<long long>(getpid()) << " on " << g_host << ") ";
}

long long running_task() {
  const RunningTask* tracker = g_tracker.load();
  return tracker ? tracker->index.load(std::memory_order_relaxed) : -1;
}

void with_task(Line& line) {
  const long long task = running_task();
  if (task >= 0) {
    line << " while running task " << task << "\n";
  } else {
    line << " outside any task\n";
  }
}

// Rank 0: the tasks each rank was handed and has not reported.
void report_held_tasks() {
  const Grants* grants = g_grants.load();
  if (grants == nullptr) return;
  Line line;
  // Also printed at a Slurm time limit (a graceful stop follows); after a rank's silent death it
  // names the task that rank was running.
  who(line) << "got SIGTERM during a parallel call; tasks handed out and not yet reported:";
  bool any = false;
  for (int rank = 0; rank < grants->ranks; ++rank) {
    for (int slot = 0; slot < Grants::kPerRank; ++slot) {
      const auto& held = grants->held[rank * Grants::kPerRank + slot];
      const std::uint64_t begin = held.begin.load(), end = held.end.load();
      for (std::uint64_t task = begin; task < end; ++task) {
        if (grants->job->finished(task)) continue;
        line << " rank " << static_cast<long long>(rank) << ": task " << static_cast<long long>(task) << ";";
        any = true;
        break;
      }
    }
  }
  if (!any) line << " none";
  line << "\n";
  line.write_out();
}

// On every reported signal: say what this rank held or ran; the signal then takes its course
// (the graceful stop of a time limit, or death) through core's dispatcher.
bool on_signal(int signal) noexcept {
  if (signal == SIGTERM) {
    report_held_tasks();
  } else if (g_rank.load() >= 0) {
    Line line;
    const char* name = sigabbrev_np(signal);
    who(line) << "died from SIG" << (name ? name : "?");
    with_task(line);
    line.write_out();
  }
  return false;
}

// exit() inside a task (flagged only while a task runs, so normal exits stay silent).
void on_exit_report(int status, void*) {
  if (running_task() < 0) return;
  Line line;
  who(line) << "exited with status " << static_cast<long long>(status);
  with_task(line);
  line.write_out();
}

}  // namespace

void note_running_task(const RunningTask* tracker, int rank) noexcept {
  g_rank.store(rank);
  g_tracker.store(tracker);
}

void note_grants(const Grants* grants) noexcept { g_grants.store(grants); }

const Grants* noted_grants() noexcept { return g_grants.load(); }

void install_failure_reports() {
  gethostname(g_host, sizeof g_host - 1);
  for (int signal : kReportedSignals) listen_to_signal(signal, on_signal);
  on_exit(on_exit_report, nullptr);
}

}  // namespace joblet::detail

// MPI_Abort called inside a task: say which task, then abort as MPI does. This uses the MPI
// profiling interface, which exists so that tools can wrap MPI calls this way.
extern "C" int MPI_Abort(MPI_Comm comm, int errorcode) {
  if (joblet::detail::g_rank.load() >= 0) {
    joblet::detail::Line line;
    joblet::detail::who(line) << "called MPI_Abort with error code " << static_cast<long long>(errorcode);
    joblet::detail::with_task(line);
    line.write_out();
  }
  return PMPI_Abort(comm, errorcode);
}
