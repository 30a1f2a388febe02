#pragma once
// Progress output of one call: a live bar on a terminal, periodic lines in logs (Slurm output
// files), and the user's callback. Written to stderr: stdout belongs to the program.

#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "joblet/progress.hpp"

namespace joblet::detail {

// Of the tasks a report counts as done, those done before its call started (a round of an
// elastic campaign reports the whole campaign), and of them those other processes did.
struct EarlierProgress {
  std::size_t done_before = 0;
  std::size_t done_elsewhere = 0;
};

// What the line that ends a verbose call says (ProgressReporter::summarise).
struct CallSummary {
  std::size_t done = 0;
  std::size_t failed = 0;
  std::size_t not_run = 0;  // left out after max_failures (counted in failed)
  std::size_t cache_hits = 0;
  std::size_t cache_computed = 0;
  double saved_seconds = 0;  // what computing the hits took when they were stored
  double busy_seconds = 0;   // running tasks, over every worker
  int workers = 1;
  double elapsed_seconds = 0;
};

class ProgressReporter {
 public:
  // `since`: when the work this reporter counts began (an elastic campaign's rounds count this
  // process's share from its first round); `announce`: print the "Using backend" line.
  ProgressReporter(int verbose, std::function<void(const Progress&)> callback, std::string backend, int n_workers,
                   std::optional<std::chrono::steady_clock::time_point> since = std::nullopt, bool announce = true,
                   int fd = STDERR_FILENO);
  // Reports the current counts; draws or prints when due. `finished` marks the last report.
  void update(std::size_t done, std::size_t failed, std::optional<std::size_t> total, bool finished,
              EarlierProgress earlier = {});
  // At verbose > 0, the line that ends the call: done, cached, failed, time saved, efficiency.
  void summarise(const CallSummary& summary) const;
  // How long the caller may wait before the next update is worth making.
  std::chrono::milliseconds interval() const noexcept;

 private:
  using Clock = std::chrono::steady_clock;
  void write_text(const std::string& text) const;
  std::string bar(const Progress& progress) const;
  std::string line(const Progress& progress) const;

  int verbose_;
  std::function<void(const Progress&)> callback_;
  std::string backend_;
  int n_workers_;
  int fd_;
  bool terminal_;
  Clock::time_point start_;
  Clock::time_point last_output_;
  std::size_t last_done_ = static_cast<std::size_t>(-1);
};

// "12.3s", "2m03s", "1h02m": durations as a person reads them in a log.
std::string human_duration(double seconds);
// "950", "12.3k", "4.1M": rates and counts.
std::string human_count(double value);

}  // namespace joblet::detail
