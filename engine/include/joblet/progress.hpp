#pragma once
/// @file
/// Progress of one parallel call, as given to a progress callback and drawn by verbose output.

#include <cstddef>
#include <optional>
#include <string_view>

namespace joblet {

/// How far one parallel call is, as given to the Config::progress callback (in the calling thread)
/// and drawn by verbose output.
struct Progress {
  std::size_t done = 0;                 ///< tasks finished (successfully or not)
  std::size_t failed = 0;               ///< of which failed
  /// In an elastic campaign (several processes on one cached call), done and total count the
  /// whole campaign's tasks; this many of those done were computed by other processes.
  std::size_t done_elsewhere = 0;
  std::optional<std::size_t> total;     ///< unknown while a lazy input is still being read
  /// Seconds since the call started (in an elastic campaign, since this process's share began).
  double elapsed_seconds = 0;
  double tasks_per_second = 0;          ///< over the whole call so far
  std::optional<double> eta_seconds;    ///< when total is known and some tasks are done
  bool finished = false;                ///< the last report of the call
  std::string_view backend;             ///< the backend's name; valid during the callback only
  int n_workers = 0;                    ///< the number of workers the call runs on
};

}  // namespace joblet
