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

}  // namespace joblet::detail
