// Task traces (Config::trace, JOBLET_TRACE) as real processes write them, and `joblet trace`
// reading them back.
#include <gtest/gtest.h>
#include <unistd.h>
#include <joblet/joblet.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <ranges>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {

namespace fs = std::filesystem;
using joblet::testing::TempDir;

// Every line of every trace file in `directory`, with the file it came from. Lines end with a
// newline; the rest of a writer's chunk of the file is NUL bytes.
struct TraceLine {
  std::string file;
  std::string text;
};
std::vector<TraceLine> trace_lines(const fs::path& directory) {
  std::vector<TraceLine> lines;
  for (const auto& entry : fs::directory_iterator(directory)) {
    const std::string text = joblet::testing::read_text(entry.path());
    std::size_t begin = 0;
    while (begin < text.size()) {
      const std::size_t end = std::min(text.find('\n', begin), text.size());
      const std::string line = text.substr(begin, end - begin);
      if (!line.empty() && line.front() != '\0') lines.push_back({entry.path().filename().string(), line});
      begin = line.empty() || line.front() != '\0' ? end + 1 : text.find_first_not_of('\0', begin);
      if (begin == std::string::npos) break;
    }
  }
  return lines;
}

// The number a field holds in a trace line; -1 when the line has no such field.
long long number_field(const std::string& line, const std::string& name) {
  std::smatch match;
  if (!std::regex_search(line, match, std::regex("\"" + name + "\":(-?[0-9]+)"))) return -1;
  return std::stoll(match[1]);
}
std::string string_field(const std::string& line, const std::string& name) {
  std::smatch match;
  if (!std::regex_search(line, match, std::regex("\"" + name + "\":\"([^\"]*)\""))) return {};
  return match[1];
}

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

auto square_tasks(int n) {
  return std::views::iota(0, n) | std::views::transform([](int i) { return joblet::delayed([i] { return i * i; }); });
}

class TraceOnEveryBackend : public ::testing::TestWithParam<const char*> {};

TEST_P(TraceOnEveryBackend, EveryAttemptIsOneJsonLineInTheFileOfTheProcessThatRanIt) {
  TempDir dir;
  const fs::path trace = dir.path() / "trace";
  const auto results =
      joblet::Parallel({.n_jobs = 2, .backend = GetParam(), .trace = trace.string()})(square_tasks(40));
  ASSERT_EQ(results.size(), 40u);
  std::multiset<long long> tasks;
  std::set<std::string> calls;
  for (const TraceLine& line : trace_lines(trace)) {
    EXPECT_TRUE(line.text.starts_with("{\"call\":\"") && line.text.ends_with("}")) << line.text;
    tasks.insert(number_field(line.text, "task"));
    calls.insert(string_field(line.text, "call"));
    EXPECT_EQ(string_field(line.text, "outcome"), "ok") << line.text;
    // Its file is named after the process that wrote it.
    EXPECT_EQ(line.file, host_name() + "-" + std::to_string(number_field(line.text, "pid")) + ".jsonl");
    EXPECT_LE(number_field(line.text, "mono_start_ns"), number_field(line.text, "mono_end_ns")) << line.text;
    EXPECT_GT(number_field(line.text, "peak_rss_kb"), 0) << line.text;
    if (std::string(GetParam()) == "processes") EXPECT_NE(number_field(line.text, "pid"), getpid()) << line.text;
  }
  EXPECT_EQ(calls.size(), 1u);
  ASSERT_EQ(tasks.size(), 40u);
  for (long long task = 0; task < 40; ++task) EXPECT_EQ(tasks.count(task), 1u) << "task " << task;
}

INSTANTIATE_TEST_SUITE_P(Trace, TraceOnEveryBackend, ::testing::Values("sequential", "threads", "processes"));

TEST(Trace, CachedCallsNameTheirFunctionKeyAndWhetherTheyWereComputedOrHit) {
  TempDir dir;
  joblet::Memory memory(dir.path() / "cache");
  auto cube = memory.cache("cube", [](int x) { return x * x * x; }, {.version = "1"});
  const auto tasks = [&] {
    return std::views::iota(0, 6) | std::views::transform([&](int i) { return joblet::delayed(cube, i); });
  };
  joblet::Parallel({.n_jobs = 2, .backend = "processes", .trace = (dir.path() / "first").string()})(tasks());
  joblet::Parallel({.n_jobs = 2, .backend = "processes", .trace = (dir.path() / "again").string()})(tasks());
  std::map<std::string, int> first;
  for (const TraceLine& line : trace_lines(dir.path() / "first")) {
    EXPECT_EQ(string_field(line.text, "function"), "cube") << line.text;
    ++first[string_field(line.text, "cache")];
    if (string_field(line.text, "cache") == "computed") {
      // A round of the campaign is a call of its own: the key and the arguments name the task.
      const std::string arguments = string_field(line.text, "arguments");
      ASSERT_TRUE(arguments.starts_with("int ")) << line.text;
      EXPECT_EQ(string_field(line.text, "key"), cube.key(std::stoi(arguments.substr(4))).hex()) << line.text;
    }
  }
  EXPECT_EQ(first["computed"], 6) << "the first call computes every task";
  EXPECT_EQ(first["hit"], 0) << "loading what its own campaign stored is no hit";
  std::set<std::string> keys;
  for (const TraceLine& line : trace_lines(dir.path() / "again")) {
    EXPECT_EQ(string_field(line.text, "cache"), "hit") << line.text;
    EXPECT_NE(line.text.find("\"computed_s\":"), std::string::npos) << line.text;
    keys.insert(string_field(line.text, "key"));
  }
  EXPECT_EQ(keys.size(), 6u);
  EXPECT_TRUE(keys.contains(cube.key(4).hex()));
}

TEST(Trace, FailuresTimeoutsAndDeadWorkersSayWhatEndedThem) {
  TempDir dir;
  const fs::path trace = dir.path() / "trace";
  auto tasks = std::views::iota(0, 8) | std::views::transform([](int i) {
                 return joblet::delayed([i] {
                   if (i == 3) throw std::invalid_argument("bad input 3");
                   if (i == 5) std::raise(SIGKILL);
                   if (i == 6) std::this_thread::sleep_for(std::chrono::minutes(10));  // killed at its timeout
                   return i;
                 });
               });
  const auto outcomes = joblet::Parallel(
      {.n_jobs = 2, .backend = "processes", .timeout = std::chrono::seconds(2), .trace = trace.string()})(
      tasks, joblet::return_as::list.keep_going());
  ASSERT_EQ(outcomes.size(), 8u);
  std::map<long long, std::string> outcome_of;
  for (const TraceLine& line : trace_lines(trace)) {
    const long long task = number_field(line.text, "task");
    outcome_of[task] = string_field(line.text, "outcome");
    if (task == 3) {
      EXPECT_EQ(string_field(line.text, "error_type"), "std::invalid_argument") << line.text;
      EXPECT_EQ(string_field(line.text, "error"), "bad input 3") << line.text;
    }
    // The lost tasks' lines come from the caller, which found out.
    if (task == 5 || task == 6) EXPECT_EQ(number_field(line.text, "pid"), getpid()) << line.text;
  }
  EXPECT_EQ(outcome_of[3], "failed");
  EXPECT_EQ(outcome_of[5], "worker_died");
  EXPECT_EQ(outcome_of[6], "timed_out");
  for (long long task : {0, 1, 2, 4, 7}) EXPECT_EQ(outcome_of[task], "ok") << "task " << task;
}

// Config::retries: each attempt is a line of its own, numbered, with how it ended; a retry in
// place (an exception) and one in a fresh worker (a death) alike.
TEST(Trace, EveryAttemptOfARetriedTaskIsALineOfItsOwn) {
  TempDir dir;
  const fs::path trace = dir.path() / "trace";
  // Attempts are counted across processes in a file: worker processes do not share memory.
  const fs::path marks = dir.path() / "marks";
  fs::create_directories(marks);
  auto attempt_of = [marks](int task) {
    for (int attempt = 1;; ++attempt) {
      const fs::path mark = marks / (std::to_string(task) + "-" + std::to_string(attempt));
      if (!fs::exists(mark)) {
        std::ofstream(mark) << getpid();
        return attempt;
      }
    }
  };
  auto tasks = std::views::iota(0, 8) | std::views::transform([attempt_of](int i) {
                 return joblet::delayed([i, attempt_of] {
                   const int attempt = attempt_of(i);
                   if (i == 3 && attempt < 3) throw std::runtime_error("flaky " + std::to_string(attempt));
                   if (i == 5 && attempt == 1) std::raise(SIGKILL);
                   return i;
                 });
               });
  const auto results =
      joblet::Parallel({.n_jobs = 2, .backend = "processes", .trace = trace.string(), .retries = 2})(tasks);
  ASSERT_EQ(results.size(), 8u);
  std::map<long long, std::map<long long, std::string>> outcomes;  // task -> attempt -> outcome
  std::map<long long, std::set<long long>> pids;
  for (const TraceLine& line : trace_lines(trace)) {
    const long long task = number_field(line.text, "task");
    const long long attempt = number_field(line.text, "attempt");
    EXPECT_TRUE(outcomes[task].emplace(attempt, string_field(line.text, "outcome")).second) << line.text;
    pids[task].insert(number_field(line.text, "pid"));
    if (task == 3 && attempt < 3) EXPECT_EQ(string_field(line.text, "error"), "flaky " + std::to_string(attempt));
  }
  EXPECT_EQ(outcomes[3], (std::map<long long, std::string>{{1, "failed"}, {2, "failed"}, {3, "ok"}}));
  EXPECT_EQ(outcomes[5], (std::map<long long, std::string>{{1, "worker_died"}, {2, "ok"}}));
  // The death's line comes from the caller, the retry's from the fresh worker that ran it.
  EXPECT_EQ(pids[5].size(), 2u);
  EXPECT_TRUE(pids[5].contains(getpid()));
  for (long long task : {0, 1, 2, 4, 6, 7}) {
    EXPECT_EQ(outcomes[task], (std::map<long long, std::string>{{1, "ok"}})) << "task " << task;
  }
}

// A worker killed mid-batch loses only the task it was running: the lines of the tasks it
// finished before are in its file already.
TEST(Trace, AWorkerKilledMidBatchKeepsTheLinesOfTheTasksItFinished) {
  TempDir dir;
  const fs::path trace = dir.path() / "trace";
  auto tasks = std::views::iota(0, 10) | std::views::transform([](int i) {
                 return joblet::delayed([i] {
                   if (i == 9) std::raise(SIGKILL);
                   return i;
                 });
               });
  // Batches of ten: the worker that runs task 9 has finished others of its batch before.
  joblet::Parallel({.n_jobs = 2, .backend = "processes", .batch_size = 10, .trace = trace.string()})(
      tasks, joblet::return_as::list.keep_going());
  std::map<long long, std::string> outcome_of;
  for (const TraceLine& line : trace_lines(trace))
    outcome_of[number_field(line.text, "task")] = string_field(line.text, "outcome");
  for (long long task = 0; task < 9; ++task) EXPECT_EQ(outcome_of[task], "ok") << "task " << task;
  EXPECT_EQ(outcome_of[9], "worker_died");
}

TEST(Trace, ADirectoryThatCannotBeWrittenFailsTheCallBeforeAnyTaskRuns) {
  TempDir dir;
  joblet::testing::write_text(dir.path() / "a-file", "not a directory");
  std::atomic<int> ran{0};
  auto tasks = std::views::iota(0, 4) | std::views::transform([&](int i) {
                 return joblet::delayed([&ran, i] {
                   ++ran;
                   return i;
                 });
               });
  try {
    joblet::Parallel({.n_jobs = 2, .trace = (dir.path() / "a-file" / "trace").string()})(tasks);
    FAIL() << "the call ran untraced";
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(e.message().find("cannot write the task trace in"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("JOBLET_TRACE"), std::string::npos) << e.message();
  }
  EXPECT_EQ(ran, 0);
}

TEST(Trace, JobletTraceEnvironmentVariableTracesCallsThatSetNothing) {
  TempDir dir;
  setenv("JOBLET_TRACE", (dir.path() / "from-env").c_str(), 1);
  joblet::Parallel({.n_jobs = 2})(square_tasks(5));
  unsetenv("JOBLET_TRACE");
  EXPECT_EQ(trace_lines(dir.path() / "from-env").size(), 5u);
}

TEST(JobletTrace, SummarisesEveryProcessAndWritesAChromeTrace) {
  TempDir dir;
  const fs::path trace = dir.path() / "trace";
  joblet::Memory memory(dir.path() / "cache");
  auto twice = memory.cache("twice", [](int x) { return 2 * x; }, {.version = "1"});
  auto tasks = std::views::iota(0, 10) | std::views::transform([&](int i) {
                 return joblet::delayed([&twice, i] {
                   if (i == 9) throw std::runtime_error("nine");
                   return twice(i);
                 });
               });
  joblet::Parallel({.n_jobs = 2, .backend = "processes", .trace = trace.string()})(
      tasks, joblet::return_as::list.keep_going());
  // A process killed while writing leaves half a line; a stray file is not a trace.
  joblet::testing::write_text(trace / "killed-1.jsonl", "{\"call\":\"x\",\"task\":1,\"outc");
  joblet::testing::write_text(trace / "notes.jsonl", "not json\n");
  const fs::path chrome = dir.path() / "timeline.json";
  const joblet::testing::CommandRun run = joblet::testing::run_command(std::string(JOBLET_CLI) + " trace " +
                                                                       trace.string() + " --chrome " + chrome.string());
  ASSERT_EQ(run.status, 0) << run.output;
  for (const char* expected :
       {"10 attempt(s) of 1 call(s)", "2 damaged line(s) skipped", "tasks: 9 ok, 1 failed; cached calls: 9 computed",
        "failures by type:", "failed: std::runtime_error",
        "CPU time computed:", "efficiency: ", "slowest tasks:", "twice(int 3)", "Chrome trace: "}) {
    EXPECT_NE(run.output.find(expected), std::string::npos) << expected << " in:\n" << run.output;
  }
  // Python reads it as JSON: one complete event per attempt, each in a named process.
  const joblet::testing::CommandRun check = joblet::testing::run_command(
      "python3 -c \"import json,sys; t=json.load(open(sys.argv[1]))['traceEvents']; "
      "m={e['pid'] for e in t if e['ph']=='M'}; x=[e for e in t if e['ph']=='X']; "
      "print(len(x), all(e['pid'] in m for e in x))\" " +
      chrome.string());
  EXPECT_EQ(check.output, "10 True\n") << check.output;

  const joblet::testing::CommandRun missing =
      joblet::testing::run_command(std::string(JOBLET_CLI) + " trace " + (dir.path() / "nowhere").string());
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_NE(missing.output.find("cannot read the trace directory"), std::string::npos) << missing.output;
}

// The report is one HTML page with the trace as JSON in it: every string of the trace, however
// hostile, stays data (tests/launch/trace_report.sh loads such a page in a real browser).
TEST(JobletTrace, HtmlReportKeepsHostileStringsAsDataAndSaysWhyItCannotBeWritten) {
  TempDir dir;
  const fs::path trace = dir.path() / "trace";
  fs::create_directories(trace);
  // As a trace line writes it (JSON): "\\\"" is a quote.
  const std::string message = R"(</script><img src=x onerror=alert(1)> \"double\" 'single' <!-- \\ end)";
  joblet::testing::write_text(
      trace / "node-1.jsonl",
      R"({"call":"c-1","task":0,"attempt":1,"outcome":"ok","host":"node","pid":1,"rank":-1,"worker":0,)"
      R"("start":1700000000.25,"end":1700000000.75,"function":"f","key":"00ff","cache":"computed","arguments":"int 0"})"
      "\n"
      R"({"call":"</script><script>alert(2)</script>","task":1,"attempt":1,"outcome":"failed",)"
      R"("host":"<b>node</b>","pid":1,"rank":-1,"worker":0,"start":1700000000.5,"end":1700000001,)"
      R"("error_type":"std::runtime_error","error":")" +
          message + "\"}\n");
  const fs::path html = dir.path() / "report.html";
  const std::string trace_command = std::string(JOBLET_CLI) + " trace " + trace.string();
  const joblet::testing::CommandRun run = joblet::testing::run_command(trace_command + " --html " + html.string());
  ASSERT_EQ(run.status, 0) << run.output;
  EXPECT_NE(run.output.find("HTML report: " + html.string()), std::string::npos) << run.output;

  const std::string page = joblet::testing::read_text(html);
  for (const char* raw : {"</script><img", "</script><script>", "<img", "<b>node", "<!-- \\"}) {
    EXPECT_EQ(page.find(raw), std::string::npos) << raw << " stands raw in the page";
  }
  std::size_t script_ends = 0;
  for (std::size_t at = page.find("</script"); at != std::string::npos; at = page.find("</script", at + 1)) {
    ++script_ends;
  }
  EXPECT_EQ(script_ends, 3u) << "the error recorder, the data and the drawing script, nothing else";
  EXPECT_NE(page.find("Content-Security-Policy\" content=\"default-src 'none'"), std::string::npos)
      << "the page may load nothing";
  // The JSON block reads back, in Python, as the very strings of the trace.
  joblet::testing::write_text(dir.path() / "read.py", R"(import json, sys
page = open(sys.argv[1], encoding="utf-8").read()
block = page.split('<script type="application/json" id="trace-data">', 1)[1].split("</script>", 1)[0]
data = json.loads(block)
at = {name: i for i, name in enumerate(data["fields"])}
strings = data["strings"]
failed = [a for a in data["attempts"] if strings[a[at["outcome"]]] == "failed"][0]
print(strings[failed[at["error"]]])
print(strings[failed[at["call"]]])
print(strings[data["lanes"][failed[at["lane"]]][0]])
print(len(data["attempts"]), data["summary"]["failed"], data["summary"]["computed"])
)");
  const joblet::testing::CommandRun read =
      joblet::testing::run_command("python3 " + (dir.path() / "read.py").string() + " " + html.string());
  EXPECT_EQ(read.output,
            "</script><img src=x onerror=alert(1)> \"double\" 'single' <!-- \\ end\n"
            "</script><script>alert(2)</script>\n<b>node</b>\n2 1 1\n");

  // A path under a regular file, and a directory: no report, an error naming the option, and no
  // temporary file left beside it.
  for (const fs::path& unwritable : {html / "report.html", dir.path() / "trace"}) {
    const joblet::testing::CommandRun failed =
        joblet::testing::run_command(trace_command + " --html " + unwritable.string());
    EXPECT_EQ(failed.status, 1) << failed.output;
    EXPECT_NE(failed.output.find("joblet: cannot write the HTML report '" + unwritable.string() + "': "),
              std::string::npos)
        << failed.output;
    EXPECT_NE(failed.output.find("; give --html a file in a writable directory"), std::string::npos) << failed.output;
  }
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir.path())) left.push_back(entry.path().filename().string());
  std::ranges::sort(left);
  EXPECT_EQ(left, (std::vector<std::string>{"read.py", "report.html", "trace"}));
}

}  // namespace
