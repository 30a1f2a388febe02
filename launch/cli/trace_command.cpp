#include "trace_command.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "joblet/detail/task_trace.hpp"
#include "joblet/error.hpp"
#include "output_file.hpp"
#include "trace_records.hpp"
#include "trace_report.hpp"
#include "units.hpp"

namespace joblet::cli {
namespace {

using Seconds = std::chrono::duration<double>;

std::string seconds_text(double seconds) { return format_duration(Seconds(seconds)); }

// Busy time and tasks of one rank or host, for the load table.
struct Load {
  double busy = 0;
  std::size_t tasks = 0;
};

std::string load_lines(const std::map<std::string, Load>& loads, const char* what) {
  if (loads.size() < 2) return {};
  double total = 0;
  double most = 0;
  for (const auto& [name, load] : loads) {
    total += load.busy;
    most = std::max(most, load.busy);
  }
  const double mean = total / static_cast<double>(loads.size());
  std::string out = fmt::format("load per {} (busy time, tasks); imbalance (max / mean) {:.2f}:\n", what,
                                mean > 0 ? most / mean : 1.0);
  for (const auto& [name, load] : loads) {
    out += fmt::format("  {:<24} {:>10}  {}\n", name, seconds_text(load.busy), load.tasks);
  }
  return out;
}

std::string summary(const std::string& directory, const TraceRecords& records) {
  const auto& attempts = records.attempts;
  const TraceTotals totals = totals_of(attempts);
  std::map<std::string, Load> per_rank;
  std::map<std::string, Load> per_host;
  for (const TaskAttempt& attempt : attempts) {
    const std::string rank = attempt.rank >= 0 ? "rank " + std::to_string(attempt.rank) : "no rank";
    per_rank[rank].busy += attempt.seconds();
    ++per_rank[rank].tasks;
    per_host[attempt.host].busy += attempt.seconds();
    ++per_host[attempt.host].tasks;
  }

  std::string out =
      fmt::format("{}: {} attempt(s) of {} call(s), from {} process(es) on {} host(s) ({} file(s))\n", directory,
                  attempts.size(), totals.calls, totals.processes, totals.hosts, records.files);
  if (records.skipped_lines > 0) {
    out += fmt::format("{} damaged line(s) skipped (a process killed while writing, or a file that is not a trace)\n",
                       records.skipped_lines);
  }
  out += fmt::format("tasks: {} ok, {} failed; cached calls: {} computed, {} cache hits", totals.ok, totals.failed,
                     totals.computed, totals.hits);
  out += totals.reloaded > 0 ? fmt::format(", {} loaded again by their campaign's call\n", totals.reloaded)
                             : std::string("\n");
  if (!totals.failures.empty()) {
    out += "failures by type:\n";
    for (const auto& [type, count] : totals.failures) out += fmt::format("  {:>6}  {}\n", count, type);
  }
  out += fmt::format("CPU time computed: {} (busy time of every attempt but the loads from the cache)\n",
                     seconds_text(totals.cpu_computed));
  if (totals.hits > 0)
    out += fmt::format("time saved by the cache: {} (what the hits took to compute)\n", seconds_text(totals.saved));
  if (totals.capacity > 0) {
    out += fmt::format("efficiency: {:.3f} (busy {} over the workers' time, workers x wall of each call)\n",
                       totals.efficiency(), seconds_text(totals.busy));
  }
  std::vector<const TaskAttempt*> slowest;
  for (const TaskAttempt& attempt : attempts) slowest.push_back(&attempt);
  const std::size_t shown = std::min<std::size_t>(10, slowest.size());
  std::partial_sort(slowest.begin(), slowest.begin() + static_cast<std::ptrdiff_t>(shown), slowest.end(),
                    [](const TaskAttempt* a, const TaskAttempt* b) { return a->seconds() > b->seconds(); });
  if (shown > 0) {
    out += "slowest tasks:\n";
    for (std::size_t i = 0; i < shown; ++i) {
      const TaskAttempt& attempt = *slowest[i];
      std::string where = attempt.rank >= 0 ? fmt::format("rank {}, ", attempt.rank) : std::string();
      where += fmt::format("pid {} on {}", attempt.pid, attempt.host);
      std::string what = attempt.function.empty() ? std::string() : "  " + attempt.function;
      if (!attempt.arguments.empty()) what += "(" + attempt.arguments + ")";
      out += fmt::format("  {:>10}  task {} of {} ({}){}\n", seconds_text(attempt.seconds()), attempt.task,
                         attempt.call, where, what);
    }
  }
  out += load_lines(per_rank, "rank");
  out += load_lines(per_host, "host");
  return out;
}

// Chrome's trace event format: one complete event ("X") per attempt, times in microseconds from
// the first start; a process per (host, pid), a thread per worker.
void write_chrome(const std::string& path, const TraceRecords& records) {
  double origin = 0;
  for (const TaskAttempt& attempt : records.attempts) {
    if (attempt.start > 0) origin = origin == 0 ? attempt.start : std::min(origin, attempt.start);
  }
  std::map<std::pair<std::string, long>, int> process_ids;
  std::map<std::pair<std::string, long>, int> ranks;
  for (const TaskAttempt& attempt : records.attempts) {
    process_ids.emplace(std::pair(attempt.host, attempt.pid), 0);
    ranks[{attempt.host, attempt.pid}] = attempt.rank;
  }
  int next = 1;
  for (auto& [process, id] : process_ids) id = next++;

  std::string out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  bool first = true;
  const auto separator = [&] {
    if (!first) out += ",\n";
    first = false;
  };
  for (const auto& [process, id] : process_ids) {
    separator();
    std::string name = process.first + " pid " + std::to_string(process.second);
    if (const int rank = ranks[process]; rank >= 0) name = "rank " + std::to_string(rank) + " " + name;
    out += fmt::format("{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{},\"tid\":0,\"args\":{{\"name\":", id);
    detail::append_json_string(out, name);
    out += "}}";
  }
  for (const TaskAttempt& attempt : records.attempts) {
    separator();
    const std::string name =
        (attempt.function.empty() ? std::string("task") : attempt.function) + " " + std::to_string(attempt.task);
    out += "{\"ph\":\"X\",\"name\":";
    detail::append_json_string(out, name);
    out += ",\"cat\":";
    detail::append_json_string(
        out, attempt.outcome == "ok" ? (attempt.cache.empty() ? "task" : attempt.cache) : attempt.outcome);
    out += fmt::format(
        ",\"ts\":{:.3f},\"dur\":{:.3f},\"pid\":{},\"tid\":{},\"args\":{{\"call\":", (attempt.start - origin) * 1e6,
        attempt.seconds() * 1e6, process_ids[{attempt.host, attempt.pid}], attempt.worker);
    detail::append_json_string(out, attempt.call);
    out += fmt::format(",\"task\":{},\"outcome\":", attempt.task);
    detail::append_json_string(out, attempt.outcome);
    if (!attempt.key.empty()) {
      out += ",\"key\":";
      detail::append_json_string(out, attempt.key);
    }
    if (!attempt.arguments.empty()) {
      out += ",\"arguments\":";
      detail::append_json_string(out, attempt.arguments);
    }
    if (!attempt.error_type.empty()) {
      out += ",\"error\":";
      detail::append_json_string(out, attempt.error_type + ": " + attempt.error);
    }
    out += "}}";
  }
  out += "\n]}\n";
  write_output_file(path, out, "the Chrome trace", "--chrome");
}

}  // namespace

int run_trace_command(const TraceArguments& arguments) {
  const TraceRecords records = read_trace(arguments.directory);
  if (records.attempts.empty() && records.files == 0) {
    throw ConfigError("'" + arguments.directory +
                      "' holds no trace file (<host>-<pid>.jsonl): run the program with Config::trace or "
                      "JOBLET_TRACE set to this directory first");
  }
  std::fputs(summary(arguments.directory, records).c_str(), stdout);
  if (!arguments.chrome.empty()) {
    write_chrome(arguments.chrome, records);
    std::printf("Chrome trace: %s (open it in https://ui.perfetto.dev or chrome://tracing)\n",
                arguments.chrome.c_str());
  }
  if (!arguments.html.empty()) {
    write_trace_report(arguments.html, arguments.directory, records);
    std::printf("HTML report: %s (self-contained: open it in any browser, offline)\n", arguments.html.c_str());
  }
  return 0;
}

}  // namespace joblet::cli
