#include "worker_context.hpp"

#include "joblet/detail/task_scope.hpp"

#include <atomic>

#include "joblet/cpu.hpp"

namespace joblet::detail {
namespace {
thread_local int t_budget = 0;      // 0: not inside a task of a threads call
thread_local bool t_in_task = false;
std::atomic<int> g_process_budget{0};  // set in forked workers and MPI ranks
std::atomic<bool> g_forked_worker{false};
std::atomic<bool> g_tbb_started{false};
}  // namespace

int cpu_budget() {
  if (t_budget > 0) return t_budget;
  const int process_budget = g_process_budget.load(std::memory_order_relaxed);
  return process_budget > 0 ? process_budget : cpu_count();
}

CpuBudgetScope::CpuBudgetScope(int budget) : outer_(t_budget) { t_budget = budget < 1 ? 1 : budget; }
CpuBudgetScope::~CpuBudgetScope() { t_budget = outer_; }

bool in_task() noexcept { return t_in_task; }
TaskScope::TaskScope() noexcept : outer_(t_in_task) { t_in_task = true; }
TaskScope::~TaskScope() { t_in_task = outer_; }

void set_process_cpu_budget(int cpus) { g_process_budget.store(cpus < 1 ? 1 : cpus, std::memory_order_relaxed); }

void enter_forked_worker(int budget) {
  set_process_cpu_budget(budget);
  g_forked_worker.store(true, std::memory_order_relaxed);
}
bool in_forked_worker() { return g_forked_worker.load(std::memory_order_relaxed); }

void note_tbb_started() { g_tbb_started.store(true, std::memory_order_relaxed); }
bool tbb_started() { return g_tbb_started.load(std::memory_order_relaxed); }

}  // namespace joblet::detail
