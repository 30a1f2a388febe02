#include "shared_state.hpp"

#include <sys/mman.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace joblet::detail {

SharedMemory::SharedMemory(int slots)
    : bytes_(sizeof(SharedControl) + sizeof(SharedSlot) * static_cast<std::size_t>(slots)) {
  memory_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory_ == MAP_FAILED) {
    throw Error(
        fmt::format("processes backend: mmap of {} bytes of shared memory failed: {}", bytes_, std::strerror(errno)));
  }
  control_ = new (memory_) SharedControl();
  for (int i = 0; i < slots; ++i) new (&slot(i)) SharedSlot();
}

SharedMemory::~SharedMemory() { munmap(memory_, bytes_); }

}  // namespace joblet::detail
