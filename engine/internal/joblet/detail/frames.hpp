#pragma once
// Outcomes travel between processes (worker pipes) and ranks (MPI messages) as frames: a
// fixed header — task index and length — followed by the outcome bytes that Job produces.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

namespace joblet::detail {

struct FrameHeader {
  std::uint64_t index;   // the task; kControlFrame for a frame that carries no outcome
  std::uint64_t length;  // outcome bytes that follow
};

inline constexpr std::uint64_t kControlFrame = ~std::uint64_t{0};
// Larger frames can only come from corrupted memory.
inline constexpr std::uint64_t kMaxFrameBytes = std::uint64_t{1} << 40;

// Appends a frame for task `index` whose outcome bytes `write(out)` appends.
template <class Write>
void append_frame(std::string& out, std::uint64_t index, Write&& write) {
  const std::size_t header_at = out.size();
  out.append(sizeof(FrameHeader), '\0');
  write(out);
  const FrameHeader header{index, out.size() - header_at - sizeof(FrameHeader)};
  std::memcpy(out.data() + header_at, &header, sizeof header);
}

inline void append_control_frame(std::string& out) {
  const FrameHeader header{kControlFrame, 0};
  out.append(reinterpret_cast<const char*>(&header), sizeof header);
}

// Bytes still missing before the frame at the start of `bytes` is complete (0: complete).
inline std::size_t frame_missing(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < sizeof(FrameHeader)) return sizeof(FrameHeader) - bytes.size();
  FrameHeader header;
  std::memcpy(&header, bytes.data(), sizeof header);
  const std::uint64_t whole = sizeof(FrameHeader) + (header.index == kControlFrame ? 0 : header.length);
  return whole > bytes.size() ? static_cast<std::size_t>(whole - bytes.size()) : 0;
}

}  // namespace joblet::detail
