#pragma once
/// @file
/// joblet logs through spdlog, to stderr, under the logger name "joblet". The level comes from
/// JOBLET_LOG_LEVEL (trace, debug, info, warn, error, critical, off; default warn), so a user
/// can turn on diagnostics without recompiling. joblet never writes to stdout.

#include <memory>
#include <string_view>

namespace spdlog {
class logger;
}

namespace joblet {

/// The "joblet" logger, created on first use (or taken from spdlog's registry if the program
/// registered one of that name first, to route joblet's messages into its own sinks).
std::shared_ptr<spdlog::logger> logger();

/// Prefix every line with this process's identity, e.g. "rank 3 node07" (set by Session).
void set_log_identity(std::string_view identity);

/// Also write joblet's log lines to this file (appending). Session opens the file named by
/// JOBLET_LOG_FILE. Throws StorageError when the file cannot be opened.
void add_log_file(const std::string& path);

}  // namespace joblet
