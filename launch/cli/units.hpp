#pragma once
// Sizes and durations as people write and read them on a command line.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace joblet::cli {

// "10G", "512M", "1.5T", "100K", "4096": bytes. K, M, G, T are powers of 1024 (an optional
// "i" and "B" are accepted: "10GiB", "10GB"). Throws ConfigError naming the option.
std::uint64_t parse_size(std::string_view text, std::string_view option);
// "7d", "12h", "30m", "45s", "2w": a unit is required. Throws ConfigError naming the option.
std::chrono::duration<double> parse_age(std::string_view text, std::string_view option);

// "1.2 GiB", "512 B".
std::string format_size(std::uint64_t bytes);
// "850 us", "12.3 ms", "4.2 s", "3.5 min", "2.1 h", "1.5 d".
std::string format_duration(std::chrono::duration<double> duration);
// Local time, "2024-05-01 12:00:07".
std::string format_time(std::chrono::system_clock::time_point time);

}  // namespace joblet::cli
