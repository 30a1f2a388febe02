#pragma once
// The heartbeat of the compute-once locks a process holds (EntryLock): one thread per process
// refreshes the mtime of every lock file, each at its own interval, instead of a thread per lock
// (a start and a join for every computed entry, and as many threads as locks held).

#include <chrono>
#include <cstdint>

namespace joblet::detail {

// Starts refreshing `fd`'s mtime every `every` (the first time after one interval). Returns the
// id that stops it.
std::uint64_t start_heartbeat(int fd, std::chrono::steady_clock::duration every);
// Once this returns, the descriptor is never touched again: it may be closed.
void stop_heartbeat(std::uint64_t id) noexcept;

}  // namespace joblet::detail
