#include "status_command.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <thread>

#include "cache_command.hpp"
#include "joblet/campaign.hpp"
#include "joblet/error.hpp"
#include "units.hpp"

namespace joblet::cli {
namespace {

using Clock = std::chrono::steady_clock;

// Failed tasks listed per campaign; the count says how many more there are.
constexpr std::size_t kFailuresShown = 20;
constexpr std::size_t kMessageShown = 200;

// An error message on one line of the view.
std::string one_line(std::string text) {
  std::replace_if(
      text.begin(), text.end(), [](char c) { return c == '\n' || c == '\r' || c == '\t'; }, ' ');
  if (text.size() > kMessageShown) text = text.substr(0, kMessageShown) + "...";
  return text;
}

std::string progress_bar(std::size_t done, std::size_t tasks) {
  constexpr int kWidth = 24;
  const double fraction = tasks == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(tasks);
  const auto filled = static_cast<int>(std::lround(fraction * kWidth));
  return "[" + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(kWidth - filled), '-') + "]";
}

// What a view of one campaign adds to the last: its rate of tasks done, and when it ends at it.
struct Pace {
  double tasks_per_second = 0;
  bool known = false;
};

std::string campaign_view(const CampaignStatus& campaign, const Pace* pace) {
  const double percent =
      campaign.tasks == 0 ? 100.0 : 100.0 * static_cast<double>(campaign.done) / static_cast<double>(campaign.tasks);
  const std::time_t recorded = std::chrono::system_clock::to_time_t(campaign.recorded);
  std::string out;
  if (pace == nullptr) {
    out += fmt::format("{:<40} {:>9} {:>9} {:>9} {:>6.1f}%  {:%Y-%m-%d %H:%M}\n", campaign.name, campaign.tasks,
                       campaign.done, campaign.tasks - campaign.done, percent, fmt::localtime(recorded));
  } else {
    out += fmt::format("{} {} {}/{} {:.1f}%", campaign.name, progress_bar(campaign.done, campaign.tasks), campaign.done,
                       campaign.tasks, percent);
    if (!campaign.failed.empty()) out += fmt::format(", {} failed", campaign.failed.size());
    if (campaign.done == campaign.tasks) {
      out += " | complete";
    } else if (pace->known && pace->tasks_per_second > 0) {
      const double left = static_cast<double>(campaign.tasks - campaign.done) / pace->tasks_per_second;
      out += fmt::format(" | {:.2f} tasks/s | ETA {}", pace->tasks_per_second,
                         format_duration(std::chrono::duration<double>(left)));
    } else if (pace->known) {
      out += " | no progress since the last view";
    }
    out += "\n";
  }
  // Who did the work: every job that runs the same command joins the same campaign.
  for (const auto& who : campaign.contributors) {
    std::string name = who.host.empty() ? std::string("(not recorded: an older joblet)") : who.host;
    if (!who.job.empty()) name += ", job " + who.job;
    std::string line = fmt::format("  {:<38} computed {}", name, who.computed);
    if (who.computing > 0) line += fmt::format(", computing {} now", who.computing);
    out += line + "\n";
  }
  if (!campaign.failed.empty()) {
    out += fmt::format("  failed: {} of the missing tasks; running the same command again runs them again\n",
                       campaign.failed.size());
    const std::size_t shown = std::min(campaign.failed.size(), kFailuresShown);
    for (std::size_t i = 0; i < shown; ++i) {
      const TaskFailure& failure = campaign.failed[i];
      std::string where = failure.host;
      if (!failure.job.empty()) where += ", job " + failure.job;
      out += fmt::format("    task {} ({}, pid {}, {}): {}: {}\n", failure.task, where, failure.pid,
                         format_time(failure.when), failure.error_type, one_line(failure.error));
    }
    if (campaign.failed.size() > shown) out += fmt::format("    ... and {} more\n", campaign.failed.size() - shown);
  }
  return out;
}

bool all_complete(const std::vector<CampaignStatus>& campaigns) {
  return std::all_of(campaigns.begin(), campaigns.end(), [](const auto& c) { return c.done == c.tasks; });
}

int show_once(const std::string& directory) {
  const auto campaigns = campaign_status(directory);
  if (campaigns.empty()) {
    fmt::print("no campaigns in {} (a campaign is a Parallel call over one cached function)\n", directory);
    return 0;
  }
  std::string out =
      fmt::format("{:<40} {:>9} {:>9} {:>9} {:>7}  {}\n", "campaign", "tasks", "done", "missing", "done %", "recorded");
  for (const auto& campaign : campaigns) out += campaign_view(campaign, nullptr);
  fmt::print("{}", out);
  return all_complete(campaigns) ? 0 : 3;
}

// Views every `interval` until every campaign is complete (or the user stops it): a screen
// redrawn in place on a terminal, plain blocks of lines for a log. Reads only what is on disk,
// so it works while jobs run and after they died.
int watch(const std::string& directory, double interval) {
  const bool terminal = isatty(STDOUT_FILENO) == 1;
  struct Seen {
    std::size_t done = 0;
    Clock::time_point when;
  };
  std::map<std::string, Seen> first_seen;  // rates count from the first view
  for (;;) {
    const auto now = Clock::now();
    const auto campaigns = campaign_status(directory);
    std::string out = terminal ? "\x1b[H\x1b[2J" : "";
    out += fmt::format("joblet status --watch {} | {} | every {:g} s\n", directory,
                       format_time(std::chrono::system_clock::now()), interval);
    if (campaigns.empty()) out += "no campaigns yet (a campaign is a Parallel call over one cached function)\n";
    for (const auto& campaign : campaigns) {
      Pace pace;
      const auto seen = first_seen.find(campaign.name);
      if (seen == first_seen.end()) {
        first_seen.emplace(campaign.name, Seen{campaign.done, now});
      } else {
        const double elapsed = std::chrono::duration<double>(now - seen->second.when).count();
        pace.known = elapsed > 0;
        if (pace.known && campaign.done > seen->second.done) {
          pace.tasks_per_second = static_cast<double>(campaign.done - seen->second.done) / elapsed;
        }
      }
      out += campaign_view(campaign, &pace);
    }
    if (!terminal) out += "\n";
    fmt::print("{}", out);
    std::fflush(stdout);
    if (!campaigns.empty() && all_complete(campaigns)) return 0;
    std::this_thread::sleep_for(std::chrono::duration<double>(interval));
  }
}

}  // namespace

int run_status_command(const StatusArguments& arguments) {
  const std::string directory = existing_cache_directory(arguments.directory);
  if (!arguments.watch) return show_once(directory);
  if (!(arguments.interval_seconds > 0)) {
    throw ConfigError(fmt::format("--interval {} is not valid: give the seconds between two views (> 0)",
                                  arguments.interval_seconds));
  }
  return watch(directory, arguments.interval_seconds);
}

}  // namespace joblet::cli
