// The worker's loop: claim a batch from the shared counter, run it, send the outcomes to the
// parent in frames over the pipe; at the end, a goodbye frame and _exit.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iostream>
#include <optional>
#include <span>
#include <string>

#include "joblet/detail/batch_sizer.hpp"
#include "joblet/detail/result_files.hpp"
#include "joblet/detail/task_tally.hpp"
#include "joblet/detail/task_trace.hpp"
#include "shared_state.hpp"

namespace joblet::detail {
namespace {

using Clock = Job::Clock;

bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t written = ::write(fd, data, size);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return false;
    data += written;
    size -= static_cast<std::size_t>(written);
  }
  return true;
}

}  // namespace

[[noreturn]] void run_worker_loop(const WorkerArgs& args) {
  Job& job = *args.job;
  SharedControl& control = *args.control;
  SharedSlot& slot = *args.slot;
  const std::size_t total = job.size();
  std::string frames;
  frames.reserve(64 * 1024);
  // Large result arrays go to files of the call's folder, and frames carry references.
  ArrayWriter* arrays = args.results != nullptr ? &args.results->writer() : nullptr;
  TaskTrace trace(job);
  TaskTally tally(job);
  auto flush = [&] {
    if (!frames.empty() && !write_all(args.fd, frames.data(), frames.size())) _exit(kOrphanExit);  // parent gone
    frames.clear();
  };
  const bool timed = job.settings().timeout.has_value();  // only the watchdog reads started_ns
  auto run_one = [&](std::size_t index) {
    if (timed) slot.started_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    slot.index.store(static_cast<std::int64_t>(index), std::memory_order_release);
    trace.start();
    tally.start(index);
    append_frame(frames, index, [&](std::string& out) {
      const std::size_t start = out.size();
      job.run_encoded(index, out, arrays);
      tally.finish();
      if (trace.on()) trace.finish_encoded(index, std::as_bytes(std::span(out).subspan(start)));
    });
    slot.index.store(-1, std::memory_order_release);
    if (frames.size() >= kFlushBytes) flush();
  };
  auto cancelled = [&] { return control.cancelled.load(std::memory_order_relaxed) != 0; };

  auto run_all = [&] {
    for (std::size_t index : args.first) {
      if (cancelled()) break;
      run_one(index);
    }
    flush();
    BatchSizer sizer(job.settings().batch_size, kBatchTarget, args.n_workers);
    while (!cancelled()) {
      const std::uint64_t claimed = control.next.load(std::memory_order_relaxed);
      const std::size_t count = sizer.next(claimed >= total ? 0 : total - claimed);
      const std::uint64_t begin = control.next.fetch_add(count, std::memory_order_relaxed);
      if (begin >= total) break;
      const std::uint64_t end = std::min<std::uint64_t>(begin + count, total);
      slot.chunk_begin.store(begin, std::memory_order_relaxed);
      slot.chunk_end.store(end, std::memory_order_release);
      const auto start = Clock::now();
      for (std::uint64_t index = begin; index < end && !cancelled(); ++index) run_one(index);
      flush();
      sizer.observe(end - begin, Clock::now() - start);
    }
  };
  run_all();
  std::cout.flush();
  std::fflush(nullptr);
  frames.clear();
  append_control_frame(frames);
  flush();
  _exit(0);
}

}  // namespace joblet::detail
