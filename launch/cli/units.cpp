#include "units.hpp"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <ctime>

#include "joblet/error.hpp"

namespace joblet::cli {
namespace {

// The leading number of `text` and what follows it.
bool split_number(std::string_view text, double& number, std::string& unit) {
  std::size_t end = 0;
  while (end < text.size() && (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.')) ++end;
  if (end == 0) return false;
  const std::string digits(text.substr(0, end));
  char* parsed_end = nullptr;
  number = std::strtod(digits.c_str(), &parsed_end);
  if (parsed_end != digits.c_str() + digits.size() || !std::isfinite(number) || number < 0) return false;
  for (char c : text.substr(end)) {
    if (!std::isspace(static_cast<unsigned char>(c)))
      unit += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return true;
}

}  // namespace

std::uint64_t parse_size(std::string_view text, std::string_view option) {
  double number = 0;
  std::string unit;
  const auto fail = [&] {
    throw ConfigError(
        fmt::format("{} '{}' is not a size; write bytes or a number with K, M, G or T (powers of 1024), "
                    "e.g. 10G",
                    option, text));
  };
  if (!split_number(text, number, unit)) fail();
  if (unit.ends_with("b")) unit.pop_back();
  if (unit.ends_with("i")) unit.pop_back();
  double scale = 1;
  if (unit == "k") {
    scale = 1024.0;
  } else if (unit == "m") {
    scale = 1024.0 * 1024;
  } else if (unit == "g") {
    scale = 1024.0 * 1024 * 1024;
  } else if (unit == "t") {
    scale = 1024.0 * 1024 * 1024 * 1024;
  } else if (!unit.empty()) {
    fail();
  }
  const double bytes = number * scale;
  if (bytes >= 1.8e19) fail();
  return static_cast<std::uint64_t>(bytes);
}

std::chrono::duration<double> parse_age(std::string_view text, std::string_view option) {
  double number = 0;
  std::string unit;
  const auto fail = [&] {
    throw ConfigError(
        fmt::format("{} '{}' is not a duration; write a number with s, m, h, d or w, e.g. 7d", option, text));
  };
  if (!split_number(text, number, unit)) fail();
  double seconds = 0;
  if (unit == "s") {
    seconds = 1;
  } else if (unit == "m" || unit == "min") {
    seconds = 60;
  } else if (unit == "h") {
    seconds = 3600;
  } else if (unit == "d") {
    seconds = 86400;
  } else if (unit == "w") {
    seconds = 7 * 86400;
  } else {
    fail();
  }
  return std::chrono::duration<double>(number * seconds);
}

std::string format_size(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string format_duration(std::chrono::duration<double> duration) {
  const double s = duration.count();
  if (s < 1e-3) return fmt::format("{:.0f} us", s * 1e6);
  if (s < 1) return fmt::format("{:.1f} ms", s * 1e3);
  if (s < 60) return fmt::format("{:.1f} s", s);
  if (s < 3600) return fmt::format("{:.1f} min", s / 60);
  if (s < 86400) return fmt::format("{:.1f} h", s / 3600);
  return fmt::format("{:.1f} d", s / 86400);
}

std::string format_time(std::chrono::system_clock::time_point time) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm local{};
  localtime_r(&seconds, &local);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", &local);
  return buffer;
}

}  // namespace joblet::cli
