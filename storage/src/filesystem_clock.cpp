// The cache filesystem's clock, for everything that compares file times with "now".
//
// Why: an entry's mtime is its LRU stamp and a leftover's mtime its age, and on a shared
// filesystem the server stamps a write with its own clock, while a touch (futimens with
// UTIME_NOW) is stamped by the client on sshfs and Lustre, by the server on NFS. A node whose
// clock runs a minute ahead would then see every entry as a minute older than it is, and its
// touches would date entries into the future, so that a prune keeps what that node used and
// removes what the others used since. So every comparison uses the filesystem's time, and a
// touch writes that time explicitly.
//
// How: the first time a process needs it, it writes one byte to a fresh file and reads the
// mtime the filesystem gave it; the offset from this host's clock holds for the life of the
// process. Offsets within the coarsest timestamp resolution (SFTP's whole seconds) count as
// none, so that a cache on a local disk behaves exactly as if this did not exist.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "io.hpp"
#include "joblet/detail/log.hpp"
#include "store_internal.hpp"

namespace joblet::detail {
namespace {

using Clock = std::chrono::system_clock;
constexpr std::chrono::seconds kResolution{2};

// The filesystem's clock minus ours, from a probe file written in `directory`; nullopt if the
// probe cannot be written (a read-only cache).
std::optional<std::chrono::nanoseconds> measure_offset(int directory) {
  const std::string name = temporary_name("clock");
  const int fd = ::openat(directory, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return std::nullopt;
  const auto before = Clock::now();
  // Closing sends the write, as a network filesystem's client may hold it until then.
  bool stamped = ::write(fd, "t", 1) == 1;
  stamped = ::close(fd) == 0 && stamped;
  struct stat info {};
  stamped = stamped && ::fstatat(directory, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0;
  const auto after = Clock::now();
  ::unlinkat(directory, name.c_str(), 0);
  if (!stamped) return std::nullopt;
  const auto stamp = std::chrono::seconds(info.st_mtim.tv_sec) + std::chrono::nanoseconds(info.st_mtim.tv_nsec);
  const auto middle = before.time_since_epoch() + (after - before) / 2;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(stamp - middle);
}

}  // namespace

Clock::time_point filesystem_now(const Store::State& state, int directory) {
  if (!state.clock_measured.load(std::memory_order_acquire)) {
    std::lock_guard lock(state.clock_mutex);
    if (!state.clock_measured.load(std::memory_order_relaxed)) {
      const int where = directory >= 0 ? directory : state.directory.descriptor(false, false);
      // No cache yet: this host's clock, and a new try once there is one.
      if (where < 0) return Clock::now();
      // A cache this process cannot write to (read-only) gives no probe: this host's clock from
      // then on, rather than a failed probe on every hit.
      const auto offset = measure_offset(where);
      if (offset && std::chrono::abs(*offset) > kResolution) {
        state.clock_offset_ns.store(offset->count(), std::memory_order_relaxed);
        log().info("the clock of the filesystem holding {} is {:.1f} s {} this host's; file times are compared "
                   "with the filesystem's",
                   state.root_text, std::abs(std::chrono::duration<double>(*offset).count()),
                   offset->count() > 0 ? "ahead of" : "behind");
      }
      state.clock_measured.store(true, std::memory_order_release);
    }
  }
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(
             std::chrono::nanoseconds(state.clock_offset_ns.load(std::memory_order_relaxed)));
}

void touch_at(const Store::State& state, int fd, Clock::time_point now) {
  if (state.clock_offset_ns.load(std::memory_order_relaxed) == 0) {
    futimens(fd, nullptr);  // the two clocks agree: one less thing to get wrong
    return;
  }
  const auto since_epoch = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  const struct timespec times[2] = {{0, UTIME_OMIT},
                                    {static_cast<time_t>(since_epoch / 1'000'000'000), since_epoch % 1'000'000'000}};
  // Setting an explicit time needs the file's owner; anyone who may write it can still set "now".
  if (futimens(fd, times) != 0 && (errno == EPERM || errno == EACCES)) futimens(fd, nullptr);
}

}  // namespace joblet::detail
