// progress_callback: Config::progress receives a Progress report as tasks finish, on the
// calling thread (no locking needed), plus a last one with finished = true. Use it to feed
// your own logger, a GUI or a heartbeat file, where verbose's stderr bar does not fit.
#include <joblet/joblet.hpp>

#include <chrono>
#include <cstdio>
#include <ranges>
#include <thread>

int work(int i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20 + 10 * (i % 3)));
  return i;
}

int main() {
  int reports = 0;
  std::size_t last_done = 0;
  auto on_progress = [&](const joblet::Progress& p) {
    ++reports;
    last_done = p.done;
    // total is unknown (nullopt) only while a lazy input is still being read.
    std::printf("%3zu/%zu done, %zu failed, %5.1f tasks/s on %.*s x %d%s", p.done, p.total.value_or(0), p.failed,
                p.tasks_per_second, static_cast<int>(p.backend.size()), p.backend.data(), p.n_workers,
                p.finished ? " - finished\n" : "");
    if (!p.finished) std::printf(", eta %.2f s\n", p.eta_seconds.value_or(0));
  };

  auto results = joblet::Parallel({.n_jobs = 2, .progress = on_progress})(
      std::views::iota(0, 30) | std::views::transform([](int i) { return joblet::delayed(work, i); }));

  // It may report several finished tasks at once: count on done, not on the number of calls.
  std::printf("%zu results, %d progress reports\n", results.size(), reports);
  return last_done == results.size() ? 0 : 1;
}
