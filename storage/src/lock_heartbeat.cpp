#include "lock_heartbeat.hpp"

#include <pthread.h>
#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace joblet::detail {
namespace {

using Clock = std::chrono::steady_clock;

struct Beat {
  int fd = -1;
  Clock::duration every{};
  Clock::time_point due{};
};

// Touches happen under the mutex, so that a stopped heartbeat never touches a closed (or
// reused) descriptor. Never destroyed: the thread may wait on it while the process exits.
struct Heartbeats {
  std::mutex mutex;
  std::condition_variable wake;
  std::map<std::uint64_t, Beat> beats;
  std::uint64_t next_id = 1;
  bool thread_started = false;
};

Heartbeats* g_heartbeats = nullptr;
std::once_flag g_once;

// A forked child (a worker process) has no heartbeat thread and holds none of its parent's
// locks: it starts afresh, on a new state (the old one's mutex and condition may be mid-use).
void before_fork() { g_heartbeats->mutex.lock(); }
void after_fork_in_parent() { g_heartbeats->mutex.unlock(); }
void after_fork_in_child() { g_heartbeats = new Heartbeats; }

Heartbeats& heartbeats() {
  std::call_once(g_once, [] {
    g_heartbeats = new Heartbeats;
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
  });
  return *g_heartbeats;
}

void beat(Heartbeats* state) {
  std::unique_lock lock(state->mutex);
  for (;;) {
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    for (auto& [id, beat] : state->beats) {
      if (beat.due <= now) {
        ::futimens(beat.fd, nullptr);
        beat.due = now + beat.every;
      }
      next = std::min(next, beat.due);
    }
    if (next == Clock::time_point::max()) {
      state->wake.wait(lock);
    } else {
      state->wake.wait_until(lock, next);
    }
  }
}

}  // namespace

std::uint64_t start_heartbeat(int fd, Clock::duration every) {
  Heartbeats& state = heartbeats();
  const std::lock_guard lock(state.mutex);
  const std::uint64_t id = state.next_id++;
  state.beats.emplace(id, Beat{fd, every, Clock::now() + every});
  if (!state.thread_started) {
    std::thread(beat, &state).detach();
    state.thread_started = true;
  } else {
    state.wake.notify_one();
  }
  return id;
}

void stop_heartbeat(std::uint64_t id) noexcept {
  Heartbeats& state = heartbeats();
  const std::lock_guard lock(state.mutex);
  state.beats.erase(id);
}

}  // namespace joblet::detail
