#include "joblet/detail/env.hpp"

#include <charconv>
#include <cstdlib>

#include "joblet/error.hpp"

namespace joblet::detail {

std::optional<std::string> env_string(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

std::optional<long long> parse_integer(std::string_view text) {
  long long value = 0;
  auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (status != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<long long> env_integer(const char* name) {
  auto text = env_string(name);
  if (!text) return std::nullopt;
  auto value = parse_integer(*text);
  if (!value) throw ConfigError(std::string(name) + "='" + *text + "' is not an integer; unset it or give a number");
  return value;
}

std::optional<long long> foreign_env_integer(const char* name) {
  auto text = env_string(name);
  return text ? parse_integer(*text) : std::nullopt;
}

}  // namespace joblet::detail
