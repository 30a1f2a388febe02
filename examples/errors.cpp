// errors: what a failing task looks like to the caller. The first failure cancels the tasks
// not yet started and is rethrown by the call, as in joblib.
#include <joblet/joblet.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ranges>
#include <stdexcept>

int risky(int i) {
  if (i == 3) throw std::out_of_range("task 3 looked past the end of its data");
  return i;
}

// Stands in for a failed assert() or a bug in native code that kills the process. (abort,
// not a segfault: sanitizers turn a SIGSEGV into an exit with status 1.)
int crashes(int i) {
  if (i == 2) std::abort();
  return i;
}

auto tasks_of(int (*f)(int)) {
  return std::views::iota(0, 6) | std::views::transform([f](int i) { return joblet::delayed(f, i); });
}

int main() {
  int seen = 0;
  // Threads share the process, so the task's own exception object comes back: catch it by
  // its original type, exactly as if the loop had been sequential.
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "threads"})(tasks_of(risky));
  } catch (const std::out_of_range& e) {
    std::printf("threads:   std::out_of_range: %s\n", e.what());
    ++seen;
  }

  // A forked worker's exception is made again in the caller: the standard types, and those a
  // program registers (joblet::register_exception<MyError>()), come back as themselves, with
  // where the task failed; any other type as a joblet::TaskError that names it.
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks_of(risky));
  } catch (const std::out_of_range& e) {
    const auto site = joblet::error_site(e);
    std::printf("processes: std::out_of_range from %s: %s\n", site ? site->describe().c_str() : "?", e.what());
    if (site && site->task_index == 3u) ++seen;
  }

  // A crash kills only the worker process. The call reports which task was running and the
  // signal, instead of taking the whole program down as a crashing thread would.
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes"})(tasks_of(crashes));
  } catch (const joblet::WorkerDiedError& e) {
    std::printf("processes: WorkerDiedError, task %zu, signal %d: %s\n", e.site().task_index.value_or(99), e.signal(),
                e.message().c_str());
    if (e.site().task_index == 2u && e.signal() == SIGABRT) ++seen;
  }
  return seen == 3 ? 0 : 1;
}
