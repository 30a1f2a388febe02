#include "mpi_failures.hpp"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace joblet::detail {
namespace {

std::atomic<const RunningTask*> g_tracker{nullptr};
std::atomic<int> g_rank{-1};
char g_host[64] = {};

// Async-signal-safe text building: no allocation, no locale, no stdio.
struct Line {
  char text[256];
  std::size_t size = 0;
  void add(const char* part) {
    while (*part != '\0' && size < sizeof text - 1) text[size++] = *part++;
  }
  void add(long long number) {
    char digits[24];
    int count = 0;
    const bool negative = number < 0;
    unsigned long long value = negative ? 0ULL - static_cast<unsigned long long>(number) : static_cast<unsigned long long>(number);
    do {
      digits[count++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    if (negative) add("-");
    while (count > 0 && size < sizeof text - 1) text[size++] = digits[--count];
  }
};

void report_and_die(int signal) {
  Line line;
  line.add("joblet: rank ");
  line.add(static_cast<long long>(g_rank.load()));
  line.add(" (pid ");
  line.add(static_cast<long long>(getpid()));
  line.add(" on ");
  line.add(g_host);
  line.add(") died from SIG");
  const char* name = sigabbrev_np(signal);
  line.add(name ? name : "?");
  const RunningTask* tracker = g_tracker.load();
  const long long task = tracker ? tracker->index.load(std::memory_order_relaxed) : -1;
  if (task >= 0) {
    line.add(" while running task ");
    line.add(task);
  } else {
    line.add(" outside any task");
  }
  line.add("\n");
  ssize_t ignored = write(STDERR_FILENO, line.text, line.size);
  (void)ignored;
  // SA_RESETHAND restored the default action: the signal now ends the process as before.
  raise(signal);
}

}  // namespace

void note_running_task(const RunningTask* tracker, int rank) noexcept {
  g_rank.store(rank);
  g_tracker.store(tracker);
}

void install_fatal_signal_report() {
  gethostname(g_host, sizeof g_host - 1);
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    struct sigaction current {};
    if (sigaction(signal, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) continue;
    struct sigaction report {};
    report.sa_handler = report_and_die;
    report.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&report.sa_mask);
    sigaction(signal, &report, nullptr);
  }
}

}  // namespace joblet::detail
