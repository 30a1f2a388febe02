#include "worker_context.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "joblet/detail/task_scope.hpp"

#include "joblet/cpu.hpp"
#include "joblet/detail/runtime.hpp"
#include "joblet/detail/sanitizers.hpp"

namespace joblet::detail {

int cpu_budget() {
  if (const int thread_budget = thread_context().cpu_budget; thread_budget > 0) return thread_budget;
  const int process_budget = process_runtime().cpu_budget.load(std::memory_order_relaxed);
  return process_budget > 0 ? process_budget : cpu_count();
}

CpuBudgetScope::CpuBudgetScope(int budget) : outer_(thread_context().cpu_budget) {
  thread_context().cpu_budget = budget < 1 ? 1 : budget;
}
CpuBudgetScope::~CpuBudgetScope() { thread_context().cpu_budget = outer_; }

bool in_task() noexcept { return thread_context().in_task; }
TaskScope::TaskScope() noexcept : outer_(thread_context().in_task) { thread_context().in_task = true; }
TaskScope::~TaskScope() { thread_context().in_task = outer_; }

void set_process_cpu_budget(int cpus) {
  process_runtime().cpu_budget.store(cpus < 1 ? 1 : cpus, std::memory_order_relaxed);
}

void enter_forked_worker(int budget) {
  set_process_cpu_budget(budget);
  process_runtime().forked_worker.store(true, std::memory_order_relaxed);
}
bool in_forked_worker() { return process_runtime().forked_worker.load(std::memory_order_relaxed); }

void note_tbb_started() { process_runtime().tbb_started.store(true, std::memory_order_relaxed); }
bool tbb_started() { return process_runtime().tbb_started.load(std::memory_order_relaxed); }

namespace {
std::atomic<int> g_exiting_thread_loops{0};
std::atomic<std::int64_t> g_last_loop_exit_ns{0};

constexpr auto kSettleBeforeFork = std::chrono::milliseconds(20);
}  // namespace

void note_thread_loop_exiting(int change) noexcept {
  if (change < 0) {
    g_last_loop_exit_ns.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  }
  g_exiting_thread_loops.fetch_add(change, std::memory_order_acq_rel);
}

void wait_for_exiting_thread_loops() noexcept {
  while (g_exiting_thread_loops.load(std::memory_order_acquire) > 0) std::this_thread::yield();
  if constexpr (kAddressSanitizer) {  // GCC 12's does not guard fork(): worker_context.hpp
    const std::chrono::steady_clock::time_point last{
        std::chrono::steady_clock::duration(g_last_loop_exit_ns.load(std::memory_order_relaxed))};
    std::this_thread::sleep_until(last + kSettleBeforeFork);
  }
}

}  // namespace joblet::detail
