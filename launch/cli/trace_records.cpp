#include "trace_records.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>
#include <string_view>
#include <tuple>

#include "joblet/error.hpp"

namespace joblet::cli {
namespace {

// Closes a descriptor when it goes.
struct OwnedFd {
  int fd;
  explicit OwnedFd(int descriptor) : fd(descriptor) {}
  ~OwnedFd() {
    if (fd >= 0) ::close(fd);
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  explicit operator bool() const { return fd >= 0; }
  int get() const { return fd; }
};

constexpr std::size_t kMaxLine = std::size_t{1} << 20;

void skip_space(std::string_view text, std::size_t& at) {
  while (at < text.size() && (text[at] == ' ' || text[at] == '\t' || text[at] == '\r')) ++at;
}

// Appends the UTF-8 of a code point.
void append_utf8(std::string& out, unsigned code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

bool parse_string(std::string_view text, std::size_t& at, std::string& out) {
  if (at >= text.size() || text[at] != '"') return false;
  ++at;
  while (at < text.size()) {
    const char c = text[at++];
    if (c == '"') return true;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (at >= text.size()) return false;
    const char escaped = text[at++];
    switch (escaped) {
      case '"':
      case '\\':
      case '/':
        out += escaped;
        break;
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'u': {
        unsigned code = 0;
        if (at + 4 > text.size()) return false;
        const auto [end, error] = std::from_chars(text.data() + at, text.data() + at + 4, code, 16);
        if (error != std::errc() || end != text.data() + at + 4) return false;
        at += 4;
        append_utf8(out, code);
        break;
      }
      default:
        return false;
    }
  }
  return false;
}

bool parse_number(std::string_view text, std::size_t& at, std::string& out) {
  const std::size_t start = at;
  while (at < text.size() && (std::isdigit(static_cast<unsigned char>(text[at])) || text[at] == '-' ||
                              text[at] == '+' || text[at] == '.' || text[at] == 'e' || text[at] == 'E')) {
    ++at;
  }
  out.assign(text.substr(start, at - start));
  return at > start;
}

template <class Number>
Number number_of(const std::string& text) {
  Number value{};
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

// One line of a trace as an attempt; false when a field a trace line always has is missing.
bool to_attempt(const std::vector<JsonField>& fields, TaskAttempt& attempt) {
  bool has_call = false;
  bool has_task = false;
  for (const JsonField& field : fields) {
    const std::string& v = field.text;
    if (field.name == "call") {
      attempt.call = v;
      has_call = field.is_string;
    } else if (field.name == "task") {
      attempt.task = number_of<std::size_t>(v);
      has_task = !field.is_string;
    } else if (field.name == "attempt") {
      attempt.attempt = number_of<int>(v);
    } else if (field.name == "outcome") {
      attempt.outcome = v;
    } else if (field.name == "host") {
      attempt.host = v;
    } else if (field.name == "pid") {
      attempt.pid = number_of<long>(v);
    } else if (field.name == "rank") {
      attempt.rank = number_of<int>(v);
    } else if (field.name == "worker") {
      attempt.worker = number_of<int>(v);
    } else if (field.name == "start") {
      attempt.start = number_of<double>(v);
    } else if (field.name == "end") {
      attempt.end = number_of<double>(v);
    } else if (field.name == "peak_rss_kb") {
      attempt.peak_rss_kb = number_of<long>(v);
    } else if (field.name == "function") {
      attempt.function = v;
    } else if (field.name == "key") {
      attempt.key = v;
    } else if (field.name == "cache") {
      attempt.cache = v;
    } else if (field.name == "computed_s") {
      attempt.computed_s = number_of<double>(v);
    } else if (field.name == "arguments") {
      attempt.arguments = v;
    } else if (field.name == "error_type") {
      attempt.error_type = v;
    } else if (field.name == "error") {
      attempt.error = v;
    }
  }
  return has_call && has_task && !attempt.outcome.empty();
}

void read_file(int directory, const char* name, TraceRecords& records) {
  const OwnedFd fd(::openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat info {};
  if (!fd || ::fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) return;
  ++records.files;
  std::string pending;
  bool discarding = false;  // inside a line longer than kMaxLine
  char buffer[1 << 16];
  const auto take_line = [&](std::string_view line) {
    if (line.empty()) return;
    TaskAttempt attempt;
    const auto fields = parse_flat_json(line);
    if (fields && to_attempt(*fields, attempt)) {
      records.attempts.push_back(std::move(attempt));
    } else {
      ++records.skipped_lines;
    }
  };
  for (;;) {
    const ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    std::string_view chunk(buffer, static_cast<std::size_t>(got));
    while (!chunk.empty()) {
      // Lines end at a newline; the never-written rest of a writer's chunk reads as NULs.
      const std::size_t newline = chunk.find_first_of(std::string_view("\n\0", 2));
      const std::string_view piece = chunk.substr(0, newline);
      if (!discarding) {
        if (pending.size() + piece.size() > kMaxLine) {
          discarding = true;
          pending.clear();
          ++records.skipped_lines;
        } else {
          pending.append(piece);
        }
      }
      if (newline == std::string_view::npos) break;
      if (!discarding) take_line(pending);
      pending.clear();
      discarding = false;
      chunk.remove_prefix(newline + 1);
    }
  }
  // A last line without its newline: a process killed while writing it.
  if (!discarding) take_line(pending);
}

}  // namespace

std::optional<std::vector<JsonField>> parse_flat_json(std::string_view line) {
  std::vector<JsonField> fields;
  std::size_t at = 0;
  skip_space(line, at);
  if (at >= line.size() || line[at] != '{') return std::nullopt;
  ++at;
  skip_space(line, at);
  if (at < line.size() && line[at] == '}') return fields;
  for (;;) {
    JsonField field;
    skip_space(line, at);
    if (!parse_string(line, at, field.name)) return std::nullopt;
    skip_space(line, at);
    if (at >= line.size() || line[at] != ':') return std::nullopt;
    ++at;
    skip_space(line, at);
    if (at < line.size() && line[at] == '"') {
      field.is_string = true;
      if (!parse_string(line, at, field.text)) return std::nullopt;
    } else if (!parse_number(line, at, field.text)) {
      return std::nullopt;
    }
    fields.push_back(std::move(field));
    skip_space(line, at);
    if (at >= line.size()) return std::nullopt;
    if (line[at] == '}') {
      ++at;
      skip_space(line, at);
      return at == line.size() ? std::optional(std::move(fields)) : std::nullopt;
    }
    if (line[at] != ',') return std::nullopt;
    ++at;
  }
}

TraceTotals totals_of(const std::vector<TaskAttempt>& attempts) {
  TraceTotals totals;
  std::set<std::string> calls;
  std::set<std::string> hosts;
  std::set<std::pair<std::string, long>> processes;
  // Per call: workers that ran its tasks, and its first start and last end.
  struct CallSpan {
    std::set<std::tuple<std::string, long, int>> workers;
    double first = 0;
    double last = 0;
  };
  std::map<std::string, CallSpan> spans;
  for (const TaskAttempt& attempt : attempts) {
    calls.insert(attempt.call);
    hosts.insert(attempt.host);
    processes.emplace(attempt.host, attempt.pid);
    const double seconds = attempt.seconds();
    totals.busy += seconds;
    if (attempt.outcome == "ok") {
      ++totals.ok;
    } else {
      ++totals.failed;
      ++totals.failures[attempt.error_type.empty() ? attempt.outcome : attempt.outcome + ": " + attempt.error_type];
    }
    if (attempt.cache == "hit") {
      ++totals.hits;
      totals.saved += attempt.computed_s;
    } else if (attempt.cache == "reloaded") {
      ++totals.reloaded;
    } else {
      if (attempt.cache == "computed") ++totals.computed;
      totals.cpu_computed += seconds;
    }
    CallSpan& span = spans[attempt.call];
    if (attempt.start > 0) {
      span.workers.emplace(attempt.host, attempt.pid, attempt.worker);
      span.first = span.first == 0 ? attempt.start : std::min(span.first, attempt.start);
      span.last = std::max(span.last, attempt.end);
    }
  }
  for (const auto& [call, span] : spans)
    totals.capacity += static_cast<double>(span.workers.size()) * (span.last - span.first);
  totals.calls = calls.size();
  totals.hosts = hosts.size();
  totals.processes = processes.size();
  return totals;
}

TraceRecords read_trace(const std::string& directory) {
  const OwnedFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    throw ConfigError("cannot read the trace directory '" + directory + "': " + std::strerror(errno) +
                      "; give the directory a traced run wrote (Config::trace or JOBLET_TRACE)");
  }
  std::vector<std::string> names;
  if (DIR* listing = ::fdopendir(::dup(fd.get()))) {
    while (const dirent* entry = ::readdir(listing)) {
      const std::string_view name = entry->d_name;
      if (name.size() > 6 && name.ends_with(".jsonl") && name.front() != '.') names.emplace_back(name);
    }
    ::closedir(listing);
  }
  std::sort(names.begin(), names.end());
  TraceRecords records;
  for (const std::string& name : names) read_file(fd.get(), name.c_str(), records);
  return records;
}

}  // namespace joblet::cli
