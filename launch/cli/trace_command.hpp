#pragma once
// `joblet trace DIR`: what the traced calls did (Config::trace, JOBLET_TRACE), merged over every
// process, rank and node that wrote DIR — tasks, cache hits, failures by type, CPU time, time the
// cache saved, efficiency, the slowest tasks and the load of each rank and host; `--chrome FILE`
// also writes the attempts in Chrome's trace event format (Perfetto, chrome://tracing), and
// `--html FILE` a self-contained HTML report of them (trace_report.hpp).
#include <string>

namespace joblet::cli {

struct TraceArguments {
  std::string directory;
  std::string chrome;  // empty: no Chrome trace
  std::string html;    // empty: no HTML report
};

int run_trace_command(const TraceArguments& arguments);

}  // namespace joblet::cli
