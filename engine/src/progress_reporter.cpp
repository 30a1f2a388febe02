#include "progress_reporter.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>

namespace joblet::detail {

std::string human_duration(double seconds) {
  if (seconds < 60) return fmt::format("{:.1f}s", seconds);
  const auto whole = static_cast<long long>(seconds);
  if (whole < 3600) return fmt::format("{}m{:02}s", whole / 60, whole % 60);
  return fmt::format("{}h{:02}m", whole / 3600, (whole % 3600) / 60);
}

std::string human_count(double value) {
  if (value < 1e3) return fmt::format("{:.0f}", value);
  if (value < 1e6) return fmt::format("{:.1f}k", value / 1e3);
  if (value < 1e9) return fmt::format("{:.1f}M", value / 1e6);
  return fmt::format("{:.1f}G", value / 1e9);
}

ProgressReporter::ProgressReporter(int verbose, std::function<void(const Progress&)> callback, std::string backend,
                                   int n_workers, std::optional<Clock::time_point> since, bool announce, int fd)
    : verbose_(verbose),
      callback_(std::move(callback)),
      backend_(std::move(backend)),
      n_workers_(n_workers),
      fd_(fd),
      terminal_(isatty(fd) == 1),
      start_(since.value_or(Clock::now())),
      last_output_(Clock::now()) {
  if (verbose_ > 0 && announce) {
    write_text(fmt::format("[joblet] Using backend {} with {} concurrent worker{}.\n", backend_, n_workers_,
                           n_workers_ == 1 ? "" : "s"));
  }
}

std::chrono::milliseconds ProgressReporter::interval() const noexcept {
  if (verbose_ > 0 && terminal_) return std::chrono::milliseconds(100);
  if (callback_) return std::chrono::milliseconds(100);
  if (verbose_ > 0) return std::chrono::milliseconds(250);
  return std::chrono::milliseconds(1000);
}

void ProgressReporter::update(std::size_t done, std::size_t failed, std::optional<std::size_t> total, bool finished,
                              EarlierProgress earlier) {
  if (verbose_ <= 0 && !callback_) return;
  const auto now = Clock::now();
  Progress progress;
  progress.done = done;
  progress.failed = failed;
  progress.done_elsewhere = earlier.done_elsewhere;
  progress.total = total;
  progress.elapsed_seconds = std::chrono::duration<double>(now - start_).count();
  // The rate and the ETA count only what this call did.
  const std::size_t done_now = done - std::min(earlier.done_before, done);
  progress.tasks_per_second =
      progress.elapsed_seconds > 0 ? static_cast<double>(done_now) / progress.elapsed_seconds : 0;
  if (total && done_now > 0 && progress.tasks_per_second > 0) {
    progress.eta_seconds = static_cast<double>(*total - std::min(done, *total)) / progress.tasks_per_second;
  }
  progress.finished = finished;
  progress.backend = backend_;
  progress.n_workers = n_workers_;

  if (callback_ && (done != last_done_ || finished)) callback_(progress);
  last_done_ = done;
  if (verbose_ <= 0) return;

  const double since_output = std::chrono::duration<double>(now - last_output_).count();
  if (terminal_) {
    if (finished || since_output >= 0.1) {
      write_text("\r" + bar(progress) + "\x1b[K" + (finished ? "\n" : ""));
      last_output_ = now;
    }
    return;
  }
  // In a log, lines come every 60/verbose seconds (at least every second), plus the last.
  const double period = std::max(1.0, 60.0 / verbose_);
  if (finished || since_output >= period) {
    write_text(line(progress) + "\n");
    last_output_ = now;
  }
}

std::string ProgressReporter::bar(const Progress& p) const {
  constexpr int width = 30;
  std::string text = "[joblet] ";
  if (p.total && *p.total > 0) {
    const double fraction = std::min(1.0, static_cast<double>(p.done) / static_cast<double>(*p.total));
    const int filled = static_cast<int>(std::lround(fraction * width));
    text += "[" + std::string(filled, '#') + std::string(width - filled, '-') + "] ";
    text += fmt::format("{}/{} {:3.0f}%", p.done, *p.total, fraction * 100);
  } else {
    text += fmt::format("{} done", p.done);
  }
  if (p.done_elsewhere) text += fmt::format(" ({} by other processes)", p.done_elsewhere);
  if (p.failed) text += fmt::format(" ({} failed)", p.failed);
  text += fmt::format(" | {} tasks/s | {}", human_count(p.tasks_per_second), human_duration(p.elapsed_seconds));
  if (p.eta_seconds && !p.finished) text += " | ETA " + human_duration(*p.eta_seconds);
  return text;
}

std::string ProgressReporter::line(const Progress& p) const {
  std::string text;
  if (p.finished) {
    text = fmt::format("[joblet] Done {} tasks", p.done);
    if (p.done_elsewhere) text += fmt::format(" ({} by other processes)", p.done_elsewhere);
    if (p.failed) text += fmt::format(" ({} failed)", p.failed);
    return text +
           fmt::format(" in {} | {} tasks/s", human_duration(p.elapsed_seconds), human_count(p.tasks_per_second));
  }
  text = fmt::format("[joblet] Done {}", p.done);
  if (p.total && *p.total > 0) {
    text += fmt::format(" of {} tasks ({:.0f}%)", *p.total,
                        100.0 * static_cast<double>(p.done) / static_cast<double>(*p.total));
  } else {
    text += " tasks";
  }
  if (p.done_elsewhere) text += fmt::format(", {} by other processes", p.done_elsewhere);
  if (p.failed) text += fmt::format(", {} failed", p.failed);
  text += fmt::format(" | elapsed {} | {} tasks/s", human_duration(p.elapsed_seconds), human_count(p.tasks_per_second));
  if (p.eta_seconds) text += " | ETA " + human_duration(*p.eta_seconds);
  return text;
}

void ProgressReporter::summarise(const CallSummary& summary) const {
  if (verbose_ <= 0) return;
  std::string text = fmt::format("[joblet] Summary: {} done", summary.done - summary.failed);
  if (summary.cache_hits + summary.cache_computed > 0) {
    text += fmt::format(" ({} cached, {} computed)", summary.cache_hits, summary.cache_computed);
  }
  text += fmt::format(", {} failed", summary.failed - summary.not_run);
  if (summary.not_run > 0) text += fmt::format(", {} not run (max_failures)", summary.not_run);
  text += " in " + human_duration(summary.elapsed_seconds);
  if (summary.cache_hits > 0) text += " | time saved " + human_duration(summary.saved_seconds);
  const double capacity = summary.elapsed_seconds * std::max(summary.workers, 1);
  if (capacity > 0) {
    text += fmt::format(" | efficiency {:.0f}% ({} busy of {} worker{})",
                        100.0 * std::min(1.0, summary.busy_seconds / capacity), human_duration(summary.busy_seconds),
                        summary.workers, summary.workers == 1 ? "" : "s");
  }
  write_text(text + "\n");
}

void ProgressReporter::write_text(const std::string& text) const {
  const char* data = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const ssize_t written = ::write(fd_, data, left);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;  // progress output is best effort: a closed stderr must not fail the call
    data += written;
    left -= static_cast<std::size_t>(written);
  }
}

}  // namespace joblet::detail
