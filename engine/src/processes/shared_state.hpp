#pragma once
// What the parent of a processes call and its forked workers share: a counter of claimed tasks
// and one slot per worker in memory mapped before fork (MAP_SHARED), and the arguments a worker
// starts with. See parent_run.cpp for the protocol.
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "joblet/backend.hpp"
#include "joblet/detail/frames.hpp"
#include "joblet/detail/task_watchdog.hpp"

namespace joblet::detail {

class ResultFiles;

// A worker process should spend about this long per claim: a frame write in the worker and
// a wake-up of the parent cost tens of microseconds, so this keeps them near 1 % for tiny tasks.
constexpr auto kBatchTarget = std::chrono::milliseconds(1);
// Frames are written when a batch ends or when this much is buffered.
constexpr std::size_t kFlushBytes = 1 << 20;
// The control frame a worker sends when it ran out of tasks and exits normally.
constexpr std::uint64_t kGoodbye = kControlFrame;
// Exit code of a worker whose parent died before it started.
constexpr int kOrphanExit = 121;

// A worker's slot: the task it runs (for timeouts and to name the task of a dead worker) and the
// batch it claimed (handed to a new worker if it dies).
struct alignas(64) SharedSlot : WatchedSlot {
  std::atomic<std::uint64_t> chunk_begin{0};
  std::atomic<std::uint64_t> chunk_end{0};
};

struct SharedControl {
  alignas(64) std::atomic<std::uint64_t> next{0};
  alignas(64) std::atomic<std::uint32_t> cancelled{0};
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::int64_t>::is_always_lock_free,
              "cross-process atomics must be lock-free");

class SharedMemory {
 public:
  explicit SharedMemory(int slots);
  ~SharedMemory();
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  SharedControl& control() noexcept { return *control_; }
  SharedSlot& slot(int i) noexcept {
    return reinterpret_cast<SharedSlot*>(static_cast<char*>(memory_) + sizeof(SharedControl))[i];
  }

 private:
  std::size_t bytes_;
  void* memory_;
  SharedControl* control_;
};

struct WorkerArgs {
  Job* job;
  SharedControl* control;
  SharedSlot* slot;
  int fd;  // write end of its pipe to the parent
  pid_t parent;
  std::vector<std::size_t> first;  // indices to run before claiming (left over by a dead worker)
  int n_workers;
  int budget;
  const ResultFiles* results;  // large result arrays go to files there instead of the pipe (null: never)
};

// A worker forked by fork_worker(): its pid, the read end of its pipe, its pidfd (-1 where the
// kernel has none).
struct ForkedWorker {
  pid_t pid = -1;
  int fd = -1;
  int pidfd = -1;
};

// child_setup.cpp: makes the pipe and forks; the child closes `inherited_fds` (the parent's ends
// of the other workers' pipes), sets itself up as a worker and runs the worker loop. Throws
// Error when the pipe or the fork fails.
ForkedWorker fork_worker(WorkerArgs args, const std::vector<int>& inherited_fds);

// worker_loop.cpp: runs tasks until none is left, sending their outcomes to the parent; never
// returns (the worker process ends).
[[noreturn]] void run_worker_loop(const WorkerArgs& args);

}  // namespace joblet::detail
