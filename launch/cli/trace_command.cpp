#include "trace_command.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "joblet/detail/task_trace.hpp"
#include "joblet/error.hpp"
#include "trace_records.hpp"
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
  std::set<std::string> calls;
  std::set<std::string> hosts;
  std::set<std::pair<std::string, long>> processes;
  std::size_t ok = 0;
  std::size_t hits = 0;
  std::size_t computed = 0;
  std::size_t reloaded = 0;  // an elastic campaign's call loading what its rounds stored
  double busy = 0;
  double cpu_computed = 0;
  double saved = 0;
  std::map<std::string, std::size_t> failures;
  std::map<std::string, Load> per_rank;
  std::map<std::string, Load> per_host;
  // Per call: workers that ran its tasks, and its first start and last end.
  struct CallSpan {
    std::set<std::tuple<std::string, long, int>> workers;
    double first = 0;
    double last = 0;
    double busy = 0;
  };
  std::map<std::string, CallSpan> spans;
  for (const TaskAttempt& attempt : attempts) {
    calls.insert(attempt.call);
    hosts.insert(attempt.host);
    processes.emplace(attempt.host, attempt.pid);
    const double seconds = attempt.seconds();
    busy += seconds;
    if (attempt.outcome == "ok") {
      ++ok;
    } else {
      ++failures[attempt.error_type.empty() ? attempt.outcome : attempt.outcome + ": " + attempt.error_type];
    }
    if (attempt.cache == "hit") {
      ++hits;
      saved += attempt.computed_s;
    } else if (attempt.cache == "reloaded") {
      ++reloaded;
    } else {
      if (attempt.cache == "computed") ++computed;
      cpu_computed += seconds;
    }
    const std::string rank = attempt.rank >= 0 ? "rank " + std::to_string(attempt.rank) : "no rank";
    per_rank[rank].busy += seconds;
    ++per_rank[rank].tasks;
    per_host[attempt.host].busy += seconds;
    ++per_host[attempt.host].tasks;
    CallSpan& span = spans[attempt.call];
    if (attempt.start > 0) {
      span.workers.emplace(attempt.host, attempt.pid, attempt.worker);
      span.first = span.first == 0 ? attempt.start : std::min(span.first, attempt.start);
      span.last = std::max(span.last, attempt.end);
      span.busy += seconds;
    }
  }
  double capacity = 0;
  for (const auto& [call, span] : spans)
    capacity += static_cast<double>(span.workers.size()) * (span.last - span.first);

  std::string out =
      fmt::format("{}: {} attempt(s) of {} call(s), from {} process(es) on {} host(s) ({} file(s))\n", directory,
                  attempts.size(), calls.size(), processes.size(), hosts.size(), records.files);
  if (records.skipped_lines > 0) {
    out += fmt::format("{} damaged line(s) skipped (a process killed while writing, or a file that is not a trace)\n",
                       records.skipped_lines);
  }
  std::size_t failed = attempts.size() - ok;
  out += fmt::format("tasks: {} ok, {} failed; cached calls: {} computed, {} cache hits", ok, failed, computed, hits);
  out += reloaded > 0 ? fmt::format(", {} loaded again by their campaign's call\n", reloaded) : std::string("\n");
  if (!failures.empty()) {
    out += "failures by type:\n";
    for (const auto& [type, count] : failures) out += fmt::format("  {:>6}  {}\n", count, type);
  }
  out += fmt::format("CPU time computed: {} (busy time of every attempt but the loads from the cache)\n",
                     seconds_text(cpu_computed));
  if (hits > 0)
    out += fmt::format("time saved by the cache: {} (what the hits took to compute)\n", seconds_text(saved));
  if (capacity > 0) {
    out += fmt::format("efficiency: {:.3f} (busy {} over the workers' time, workers x wall of each call)\n",
                       busy / capacity, seconds_text(busy));
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
  std::FILE* file = std::fopen(path.c_str(), "w");
  const bool written = file != nullptr && std::fwrite(out.data(), 1, out.size(), file) == out.size();
  const int error = errno;
  const bool closed = file != nullptr && std::fclose(file) == 0;
  if (!written || !closed) {
    throw ConfigError("cannot write the Chrome trace '" + path + "': " + std::strerror(error) +
                      "; give --chrome a file in a writable directory");
  }
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
  return 0;
}

}  // namespace joblet::cli
