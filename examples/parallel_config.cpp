// parallel_config: ParallelConfig is an RAII scope that sets defaults for every parallel call
// made in it (joblib's `with parallel_config(...)`), so a library function can run in
// parallel without taking n_jobs and backend parameters through every layer.
#include <joblet/joblet.hpp>

#include <cstdio>

void show(const char* where, const joblet::Parallel& p) {
  std::printf("%-46s backend %-10s workers %d\n", where, p.backend_name().c_str(), p.n_workers());
}

int main() {
  // Outside any scope: the default backend with n_jobs = 1, which is a plain loop.
  show("no scope:", joblet::Parallel());
  {
    joblet::ParallelConfig outer({.n_jobs = 2, .backend = "threads"});
    show("outer {n_jobs 2, threads}:", joblet::Parallel());
    {
      // An inner scope overrides only what it sets: n_jobs still comes from the outer one.
      joblet::ParallelConfig inner({.backend = "processes"});
      show("inner {processes}, n_jobs from outer:", joblet::Parallel());
      // Arguments given to the call itself win over every scope.
      show("call {n_jobs 1} inside both:", joblet::Parallel({.n_jobs = 1}));
    }
    show("back in outer:", joblet::Parallel());
  }
  {
    // prefer is a soft hint: used only when nothing names a backend...
    joblet::ParallelConfig scope({.n_jobs = 2, .prefer = joblet::Prefer::processes});
    show("{prefer processes}:", joblet::Parallel());
    show("{prefer processes} + call {backend threads}:", joblet::Parallel({.backend = "threads"}));
  }
  {
    // ...while require = sharedmem is a hard constraint: tasks that write to the caller's
    // memory must not run in forked copies of it, so a scope's backend is overridden...
    joblet::ParallelConfig scope({.n_jobs = 2, .backend = "processes"});
    show("{processes} + call {require sharedmem}:", joblet::Parallel({.require = joblet::Require::sharedmem}));
    // ...and a contradiction in the call itself is an error, not a silent change.
    try {
      joblet::Parallel({.backend = "processes", .require = joblet::Require::sharedmem});
      return 1;
    } catch (const joblet::ConfigError& e) {
      std::printf("call {processes, require sharedmem}: ConfigError: %s\n", e.message().c_str());
    }
  }
  // current_config() is what a call here would start from (scopes, then JOBLET_* variables).
  joblet::ParallelConfig scope({.verbose = 3});
  std::printf("current_config(): verbose %d\n", joblet::current_config().verbose.value_or(0));
  return 0;
}
