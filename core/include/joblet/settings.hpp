#pragma once
/// @file
/// Every JOBLET_* environment variable joblet reads, in one table: name, type, default, meaning.
/// `joblet info` prints it with this process's values, and the README's table is checked against
/// it. Each variable has one parser, here: a malformed value is a ConfigError that names the
/// variable and says what it takes, whichever module reads it. Variables are read when they are
/// used (a Parallel constructed after setenv() sees the new value). Session checks every one
/// when it starts, so that a typo in a batch script fails the job at once instead of hours in,
/// and warns about JOBLET_* names that are not in the table.

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace joblet {

/// One row of the table: a variable and what it takes, as `joblet info` and the README show it.
/// The texts are static: the views stay valid for the whole program.
struct SettingInfo {
  std::string_view name;           ///< the variable, "JOBLET_N_JOBS"
  std::string_view type;           ///< what its value is, in words: "integer", "path", "on or off"
  std::string_view default_value;  ///< what applies when it is unset, in words
  std::string_view meaning;        ///< what it sets, in a sentence or two
};

/// The table, sorted by name.
std::span<const SettingInfo> settings_catalogue();

/// Checks every JOBLET_* variable that is set: throws ConfigError naming the first malformed one,
/// and logs a warning for each JOBLET_* name that is not in the table (with the nearest one).
void check_settings();

/// The cache directory joblet uses when none is given: $JOBLET_CACHE_DIR, else ./joblet-cache.
std::string default_cache_dir();

namespace detail {
/// The value of a variable of the table, checked; nullopt when unset or empty. Throws
/// ConfigError when it is malformed, and std::logic_error for a name the table lacks (a bug).
std::optional<std::string> setting(std::string_view name);
/// The same, for the variables whose type is an integer.
std::optional<long long> integer_setting(std::string_view name);
}  // namespace detail

}  // namespace joblet
