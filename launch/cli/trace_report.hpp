#pragma once
// `joblet trace DIR --html FILE`: the attempts of a trace as one self-contained HTML page — a
// timeline of every worker and rank grouped by host, a histogram of task durations, cache hits
// and computed calls over time, and the failures. Its CSS and scripts are inline and the attempts
// are a JSON block in it: the page fetches nothing (its Content-Security-Policy forbids it), so it
// can be mailed or copied off a cluster and opened anywhere.
#include <string>

#include "trace_records.hpp"

namespace joblet::cli {

// The page. Every string of the trace is data to it, never markup: the JSON block writes `<` as
// \u003c, and the script puts strings into the page as text only.
std::string trace_report_html(const std::string& directory, const TraceRecords& records);

// Writes the page to `path` (whole or not at all); throws ConfigError naming --html.
void write_trace_report(const std::string& path, const std::string& directory, const TraceRecords& records);

}  // namespace joblet::cli
