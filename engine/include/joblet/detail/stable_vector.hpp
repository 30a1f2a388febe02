#pragma once
// A vector whose elements never move: it grows by adding segments of doubling size, so other
// threads may keep using elements (and their addresses) while one thread appends.

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <memory>
#include <utility>

namespace joblet::detail {

template <class T>
class StableVector {
 public:
  StableVector() = default;
  ~StableVector() {
    for (auto& segment : segments_) delete[] segment.load(std::memory_order_relaxed);
  }
  StableVector(const StableVector&) = delete;
  StableVector& operator=(const StableVector&) = delete;

  // Valid for indices below what grow_to() made room for; safe while another thread grows.
  T& operator[](std::size_t index) const noexcept {
    const auto [segment, offset] = locate(index);
    // Valid indices keep `segment` in range. Without this, GCC 12 cannot tell and warns
    // (-Wstringop-overflow) on the atomic load in users' code, breaking -Werror builds.
    if (segment >= segments_.size()) __builtin_unreachable();
    return segments_[segment].load(std::memory_order_acquire)[offset];
  }

  // Makes indices [0, count) valid, default-constructing new elements. One thread at a time.
  void grow_to(std::size_t count) {
    while (capacity_ < count) {
      const std::size_t size = std::size_t{1} << (used_ + kFirstBits);
      segments_[used_].store(new T[size](), std::memory_order_release);
      capacity_ += size;
      ++used_;
    }
  }

 private:
  static constexpr unsigned kFirstBits = 5;  // the first segment holds 32 elements

  static std::pair<std::size_t, std::size_t> locate(std::size_t index) noexcept {
    const std::size_t shifted = index + (std::size_t{1} << kFirstBits);
    const unsigned top = static_cast<unsigned>(std::bit_width(shifted)) - 1;
    return {top - kFirstBits, shifted - (std::size_t{1} << top)};
  }

  std::array<std::atomic<T*>, 64 - kFirstBits> segments_{};
  std::size_t capacity_ = 0;
  unsigned used_ = 0;
};

}  // namespace joblet::detail
