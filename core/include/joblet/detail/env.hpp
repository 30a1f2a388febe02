#pragma once
// Reading JOBLET_* environment variables: one prefix configures behaviour without recompiling.
// Malformed values are errors that name the variable, never silently ignored.

#include <optional>
#include <string>

namespace joblet::detail {

// The variable's value; nullopt when unset or empty.
std::optional<std::string> env_string(const char* name);
// The variable as an integer; throws ConfigError naming the variable when it is not one.
std::optional<long long> env_integer(const char* name);

}  // namespace joblet::detail
