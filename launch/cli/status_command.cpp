#include "status_command.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <ctime>

#include "cache_command.hpp"
#include "joblet/campaign.hpp"

namespace joblet::cli {

int run_status_command(const StatusArguments& arguments) {
  const std::string directory = existing_cache_directory(arguments.directory);
  const auto campaigns = campaign_status(directory);
  if (campaigns.empty()) {
    fmt::print("no campaigns in {} (a campaign is a Parallel call over one cached function)\n", directory);
    return 0;
  }
  bool complete = true;
  fmt::print("{:<40} {:>9} {:>9} {:>9} {:>7}  {}\n", "campaign", "tasks", "done", "missing", "done %", "recorded");
  for (const auto& campaign : campaigns) {
    const std::time_t recorded = std::chrono::system_clock::to_time_t(campaign.recorded);
    const double percent =
        campaign.tasks == 0 ? 100.0 : 100.0 * static_cast<double>(campaign.done) / static_cast<double>(campaign.tasks);
    fmt::print("{:<40} {:>9} {:>9} {:>9} {:>6.1f}%  {:%Y-%m-%d %H:%M}\n", campaign.name, campaign.tasks, campaign.done,
               campaign.tasks - campaign.done, percent, fmt::localtime(recorded));
    // Who did the work: every job that runs the same command joins the same campaign.
    for (const auto& who : campaign.contributors) {
      std::string name = who.host.empty() ? std::string("(not recorded: an older joblet)") : who.host;
      if (!who.job.empty()) name += ", job " + who.job;
      std::string line = fmt::format("  {:<38} computed {}", name, who.computed);
      if (who.computing > 0) line += fmt::format(", computing {} now", who.computing);
      fmt::print("{}\n", line);
    }
    complete = complete && campaign.done == campaign.tasks;
  }
  return complete ? 0 : 3;
}

}  // namespace joblet::cli
