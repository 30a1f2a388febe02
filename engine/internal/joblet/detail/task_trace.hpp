#pragma once
// Task traces (Config::trace, JOBLET_TRACE): every task attempt as one JSON line, written by the
// process that ran it (or, for a task lost to a timeout or a dead worker, by the process that
// found out) into that process's own file, <dir>/<host>-<pid>.jsonl, through a chunk of the file
// each thread has mapped (no lock, no system call per task): a line is in the page cache as soon
// as it is written, so a process killed with SIGKILL loses only the tasks it was running.
// `joblet trace` reads them.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <string_view>

#include "joblet/detail/runtime.hpp"

namespace joblet {
class Job;
}

namespace joblet::detail {

// Makes the directory and opens this process's file in it, so that a directory that cannot be
// written fails the call before any task runs (ConfigError naming it and the fix).
void open_trace(const std::string& directory);

// The call's name in traces: the same in every rank of a collective call (MPI calls are made in
// the same order on every rank), unique across processes, hosts and jobs otherwise.
std::string new_trace_call_name(bool collective);

struct TraceFile;

// Records the attempts of the tasks one worker runs; does nothing when the job is not traced.
// One per worker thread and batch, or per worker process, made and destroyed on the thread that
// runs the tasks: while it lives, cached calls on that thread report to it.
class TaskTrace {
 public:
  explicit TaskTrace(const Job& job) noexcept;
  ~TaskTrace();
  TaskTrace(const TaskTrace&) = delete;
  TaskTrace& operator=(const TaskTrace&) = delete;

  bool on() const noexcept { return file_ != nullptr; }
  // Around each task: start() before it runs, one of the finish calls after.
  void start() noexcept;
  void finish(std::size_t index, const std::exception_ptr& error) noexcept;
  // For run_encoded(): the outcome bytes tell a value from an error.
  void finish_encoded(std::size_t index, std::span<const std::byte> outcome) noexcept;

 private:
  friend void trace_failed_attempt(const Job& job, std::size_t index, const std::exception_ptr& error) noexcept;
  void add_line(std::size_t index, std::int64_t started_ns, std::int64_t ended_ns, std::string_view outcome,
                std::string_view error_type, std::string_view message) noexcept;

  const Job* job_ = nullptr;
  TraceFile* file_ = nullptr;
  std::string prefix_;  // the fields every line of this worker shares
  std::int64_t started_ns_ = 0;
  TracedCachedCall cached_call_;
  TracedCachedCall* outer_call_ = nullptr;  // the thread's before: a traced task's own, for a nested call
  TaskTrace* outer_trace_ = nullptr;        // the thread's running trace before this one
};

// A failed attempt of a task that runs again (Config::retries): its line, written by this
// thread's trace when it is running the task (which then times the next attempt), else as a lost
// task's.
void trace_failed_attempt(const Job& job, std::size_t index, const std::exception_ptr& error) noexcept;

// A task that failed outside its own code (it ran past its timeout, its worker died): one line,
// by the process that recorded the failure.
void trace_lost_task(const Job& job, std::size_t index, const std::exception_ptr& error) noexcept;

// `text` as a JSON string literal, appended (`joblet trace` writes its Chrome traces with it too).
void append_json_string(std::string& out, std::string_view text);

// The error an outcome made by run_encoded() carries: false for a value (job.cpp knows the bytes).
bool describe_encoded_failure(std::span<const std::byte> outcome, std::string& type, std::string& message) noexcept;

}  // namespace joblet::detail
