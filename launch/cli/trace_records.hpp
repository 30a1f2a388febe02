#pragma once
// The task attempts a trace directory holds (Config::trace, JOBLET_TRACE): every *.jsonl file of
// every process, rank and node, read back. Damaged lines (a process killed mid-write, a file that
// is not a trace) are counted and skipped, never fatal.
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace joblet::cli {

struct TaskAttempt {
  std::string call;
  std::size_t task = 0;
  int attempt = 1;
  std::string outcome;  // ok, failed, timed_out, worker_died
  std::string host;
  long pid = 0;
  int rank = -1;
  int worker = 0;
  double start = 0;  // seconds since the epoch
  double end = 0;
  long peak_rss_kb = 0;
  std::string function;  // empty: the task made no cached call
  std::string key;
  std::string cache;       // hit or computed
  double computed_s = 0;   // a hit: what computing it took when it was stored
  std::string arguments;   // a computed call's argument summary
  std::string error_type;  // failed ones
  std::string error;

  double seconds() const { return end > start ? end - start : 0.0; }
};

struct TraceRecords {
  std::vector<TaskAttempt> attempts;
  std::size_t files = 0;
  std::size_t skipped_lines = 0;  // not JSON objects of a trace
};

// What the attempts add up to: `joblet trace` prints it, and its --html report's header shows it.
struct TraceTotals {
  std::size_t calls = 0;
  std::size_t processes = 0;  // (host, pid) pairs
  std::size_t hosts = 0;
  std::size_t ok = 0;
  std::size_t failed = 0;
  std::size_t hits = 0;
  std::size_t computed = 0;
  std::size_t reloaded = 0;                     // an elastic campaign's call loading what its rounds stored
  double busy = 0;                              // seconds, every attempt
  double cpu_computed = 0;                      // busy time of every attempt but the loads from the cache
  double saved = 0;                             // what the hits took to compute when they were stored
  double capacity = 0;                          // workers x wall of each call; 0 when no attempt has a start time
  std::map<std::string, std::size_t> failures;  // "outcome" or "outcome: error type" -> attempts

  double efficiency() const { return capacity > 0 ? busy / capacity : 0.0; }
};
TraceTotals totals_of(const std::vector<TaskAttempt>& attempts);

// Reads every regular *.jsonl file directly in `directory` (no link is followed; a line longer
// than 1 MiB is skipped). Throws ConfigError when the directory cannot be read.
TraceRecords read_trace(const std::string& directory);

// One flat JSON object's fields, in order; nullopt when `line` is not one.
struct JsonField {
  std::string name;
  std::string text;  // strings unescaped; numbers as written
  bool is_string = false;
};
std::optional<std::vector<JsonField>> parse_flat_json(std::string_view line);

}  // namespace joblet::cli
