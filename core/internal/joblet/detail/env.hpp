#pragma once
// Reading JOBLET_* environment variables: one prefix configures behaviour without recompiling.
// Malformed values are errors that name the variable, never silently ignored.

#include <optional>
#include <string>
#include <string_view>

namespace joblet::detail {

// The variable's value; nullopt when unset or empty.
std::optional<std::string> env_string(const char* name);
// The variable as an integer; throws ConfigError naming the variable when it is not one.
std::optional<long long> env_integer(const char* name);
// A variable that another program sets (Slurm, an MPI launcher) as an integer; nullopt when it
// is unset or not one: its value is not the user's to fix, so it is ignored, not rejected.
std::optional<long long> foreign_env_integer(const char* name);
// The whole of `text` as a decimal integer; nullopt when any of it is something else.
std::optional<long long> parse_integer(std::string_view text);

}  // namespace joblet::detail
