#pragma once
// What a parallel call needs to know about where it runs: inside another call's task (so
// "all CPUs" means that task's share), or inside a forked worker (where oneTBB may be unusable).

#include "joblet/detail/cpu_budget.hpp"

namespace joblet::detail {

// While alive, calls made by this thread get `budget` CPUs ("all CPUs" of a nested call).
class CpuBudgetScope {
 public:
  explicit CpuBudgetScope(int budget);
  ~CpuBudgetScope();
  CpuBudgetScope(const CpuBudgetScope&) = delete;
  CpuBudgetScope& operator=(const CpuBudgetScope&) = delete;

 private:
  int outer_;
};

// Called once in a freshly forked worker process.
void enter_forked_worker(int budget);
bool in_forked_worker();

// oneTBB cannot run in a child forked after it started its worker threads: remember whether
// this process started them (a forked child inherits the flag).
void note_tbb_started();
bool tbb_started();

// A threads worker loop that finished its call still lets go of it (the call's state, maybe
// the job itself, freed on that thread) after the call returned, and its thread then leaves
// oneTBB's arena. A fork meanwhile gives the child an allocator locked by that thread when the
// allocator does not guard fork(), as GCC 12's AddressSanitizer does not (LLVM's does from
// release 17): the processes backend waits for the loops to let go first and, built with
// AddressSanitizer, for 20 ms after the last one did (without that wait, a processes call right
// after a threads call hung its child 2 times in 60 under load; with it, never).
void note_thread_loop_exiting(int change) noexcept;
void wait_for_exiting_thread_loops() noexcept;

}  // namespace joblet::detail
