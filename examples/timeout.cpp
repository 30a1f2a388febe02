// timeout: a task running longer than Config::timeout fails the call with TimeoutError,
// so one stuck parameter set cannot hold a whole sweep (or a Slurm allocation) hostage.
#include <joblet/joblet.hpp>

#include <chrono>
#include <cstdio>
#include <ranges>
#include <thread>

using namespace std::chrono_literals;

// Task 1 hangs (think: a solver that stopped converging).
int maybe_stuck(int i) {
  std::this_thread::sleep_for(i == 1 ? 30s : 10ms);
  return i;
}

auto tasks() {
  return std::views::iota(0, 4) | std::views::transform([](int i) { return joblet::delayed(maybe_stuck, i); });
}

int main() {
  const auto start = std::chrono::steady_clock::now();
  int timeouts = 0;
  // Processes enforce it for real: the worker running the task is killed.
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "processes", .timeout = 500ms})(tasks());
  } catch (const joblet::TimeoutError& e) {
    std::printf("processes: %s\n", e.what());
    ++timeouts;
  }

  // With keep_going the other tasks still deliver; the stuck one holds a TimeoutError.
  auto outcomes = joblet::Parallel({.n_jobs = 2, .backend = "processes", .timeout = 500ms})(
      tasks(), joblet::return_as::list.keep_going());
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    std::printf("task %zu: %s\n", i, outcomes[i] ? "ok" : outcomes[i].error_message().c_str());
  }
  timeouts += outcomes[1] ? 0 : 1;

  // A thread cannot be killed: the call stops waiting and fails at the timeout, but the stuck
  // task keeps its thread busy in the background until it ends. Prefer processes for code
  // that may hang. (The sequential backend cannot enforce a timeout at all.)
  try {
    joblet::Parallel({.n_jobs = 2, .backend = "threads", .timeout = 500ms})(tasks());
  } catch (const joblet::TimeoutError& e) {
    std::printf("threads: %s\n", e.what());
    ++timeouts;
  }
  const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%d timeouts reported after %.1f s, not the 30 s a stuck task wanted\n", timeouts, elapsed);
  return timeouts == 3 && elapsed < 20 ? 0 : 1;
}
