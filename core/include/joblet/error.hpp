#pragma once
/// @file
/// The joblet::Error hierarchy. Every error a user can cause is one of these, and its
/// message names the cause and the fix. Errors carry where they happened (ErrorSite).

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

namespace joblet {

/// Where an error happened: which task, on which MPI rank, host and process.
struct ErrorSite {
  std::optional<std::size_t> task_index;  ///< set when one task is to blame
  int rank = -1;                          ///< MPI rank; -1 outside an MPI job
  std::string host;                       ///< the host the process runs on
  long pid = 0;                           ///< the process's id

  /// The calling process's site (host, pid, rank), optionally blaming one task.
  static ErrorSite here(std::optional<std::size_t> task_index = std::nullopt);
  /// "task 17, rank 2, pid 1234 on node07": the parts that are known.
  std::string describe() const;
};

/// Base class of every exception joblet throws; catch it to catch them all.
///
/// what() is the message followed by the site in brackets (ErrorSite::describe()) when a task or
/// an MPI rank is known; otherwise, as for most configuration errors, it is the message alone. The
/// subclasses without a constructor of their own take the same arguments as this one.
class Error : public std::runtime_error {
 public:
  /// Made with the message and where it happened (by default, the calling process).
  explicit Error(const std::string& message, ErrorSite site = ErrorSite::here());
  /// Where it happened: task, rank, host and process.
  const ErrorSite& site() const noexcept { return site_; }
  /// The message without the site suffix that what() carries.
  const std::string& message() const noexcept { return message_; }

 private:
  std::string message_;
  ErrorSite site_;
};

/// A parameter or setting is invalid: bad n_jobs, unknown backend, malformed JOBLET_* variable.
class ConfigError : public Error {
  using Error::Error;
};

/// A task failed where its exception cannot be rethrown as-is (another process or rank):
/// carries the original exception's type name and message.
class TaskError : public Error {
 public:
  /// Made from the original exception's type name and message, and the site of the task that
  /// threw it; message() is the two joined by ": ".
  TaskError(std::string original_type, std::string original_message, ErrorSite site);
  /// The original exception's type name, as C++ writes it ("std::out_of_range").
  const std::string& original_type() const noexcept { return original_type_; }
  /// The original exception's what().
  const std::string& original_message() const noexcept { return original_message_; }

 private:
  std::string original_type_;
  std::string original_message_;
};

/// A worker process died while running a task: a signal (segfault, SIGKILL, the OOM killer)
/// or an exit() inside the task.
class WorkerDiedError : public Error {
 public:
  /// Made with the message, how the worker ended (the signal or the exit status) and the site
  /// of its task.
  WorkerDiedError(const std::string& message, int signal, int exit_code, ErrorSite site);
  /// The signal that killed the worker; 0 when it exited or how it ended is unknown.
  int signal() const noexcept { return signal_; }
  /// The worker's exit status; -1 when a signal killed it or how it ended is unknown.
  int exit_code() const noexcept { return exit_code_; }

 private:
  int signal_;
  int exit_code_;
};

/// A task ran past the call's per-task timeout.
class TimeoutError : public Error {
  using Error::Error;
};

/// A task failed on every attempt Config::retries allowed. what() lists every attempt, in
/// order, with its error and where it ran; last_error() is the last attempt's exception as it was
/// thrown (null once the error crossed to another process or rank, where only the list travels).
class RetriesExhaustedError : public Error {
 public:
  /// Made with the message (the list of attempts) and the site of the last attempt; as made
  /// again from another process.
  RetriesExhaustedError(const std::string& message, ErrorSite site);
  /// Made where the last attempt failed: how many attempts there were and the last one's error.
  RetriesExhaustedError(const std::string& message, ErrorSite site, int attempts, std::exception_ptr last_error);
  /// How many times the task ran; 0 when the error came from another process or rank.
  int attempts() const noexcept { return attempts_; }
  /// The last attempt's exception, to rethrow or inspect by type; null when it came from another
  /// process or rank.
  const std::exception_ptr& last_error() const noexcept { return last_error_; }

 private:
  int attempts_ = 0;
  std::exception_ptr last_error_;
};

/// A task of a keep_going() call that was never run, because the call stopped after
/// Config::max_failures of its tasks had failed.
class NotRunError : public Error {
  using Error::Error;
};

/// A value could not be encoded or decoded by the codec.
class SerializationError : public Error {
  using Error::Error;
};

/// The filesystem refused something (cache directory, entry file, HDF5 file).
class StorageError : public Error {
  using Error::Error;
};

/// Where the task that threw `error` failed: the site of a joblet::Error, or of the
/// joblet::TaskError nested in an exception that came back from another process or rank as its
/// own type (joblet/exceptions.hpp); nullopt for an exception thrown in this process.
std::optional<ErrorSite> error_site(const std::exception& error);

namespace detail {
/// Sets the process's MPI rank, once, from the MPI layer (Session); ErrorSite::here() reads it.
void set_process_rank(int rank) noexcept;
/// The rank set_process_rank() set; -1 before, and outside a Session of several ranks.
int process_rank() noexcept;
/// Name of the type of the exception currently being handled ("std::runtime_error").
std::string current_exception_type_name();
/// A readable type name from a mangled one (typeid(T).name()).
std::string demangle(const char* mangled);
/// what() of an exception_ptr, or a placeholder for non-std exceptions.
std::string describe_exception(const std::exception_ptr& error);
}  // namespace detail

}  // namespace joblet
