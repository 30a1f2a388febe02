#pragma once
// The non-template half of a parallel call, compiled once: turning a Config into decisions
// (CallPlan), and driving a started call (CallDriver) for the typed front end in parallel.hpp.

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "joblet/backend.hpp"
#include "joblet/config.hpp"
#include "joblet/detail/stop.hpp"
#include "joblet/observer.hpp"
#include "joblet/progress.hpp"

namespace joblet::detail {

class ProgressReporter;

// A Config with every choice made: which backend, how many workers, what to report.
struct CallPlan {
  std::string backend_name;
  std::shared_ptr<Backend> backend;
  JobSettings settings;
  int verbose = 0;
  std::function<void(const Progress&)> progress;
};

// A round of an elastic campaign (CampaignStart) is a call over some of the campaign's tasks; its
// progress reports the whole campaign: `tasks`, of which `done_here` were done by this process's
// earlier rounds and `done_elsewhere` by other processes before the round started.
struct CampaignRound {
  std::size_t tasks = 0;
  std::size_t done_here = 0;
  std::size_t done_elsewhere = 0;
  bool last = true;  // false: the round's end is not the end of this process's share (no end line)
  // Set for the rounds of a share that runs as many calls (CampaignRuns): when the share began
  // (the rate and time count from there), and whether this round is its first ("Using backend").
  std::optional<std::chrono::steady_clock::time_point> share_started;
  bool first = true;
  // The campaign's call's tally (Job::tally()), which the round's tasks count in; null when the
  // call keeps none.
  std::shared_ptr<SharedCounters> tally;
};
// Makes the next call started on this thread report its progress as `round` (the call takes it).
class CampaignRoundScope {
 public:
  explicit CampaignRoundScope(const CampaignRound& round) noexcept;
  ~CampaignRoundScope();
  CampaignRoundScope(const CampaignRoundScope&) = delete;
  CampaignRoundScope& operator=(const CampaignRoundScope&) = delete;
};

// Resolves `explicit_config` against the enclosing scopes, JOBLET_* variables and defaults.
// Throws ConfigError for invalid values.
CallPlan plan_call(const Config& explicit_config);

// What the observers of a call that is not a campaign see of it as it starts.
class PlainCallStart : public CallStart {
 public:
  PlainCallStart(const Job& job, const CallPlan& plan) noexcept : job_(job), plan_(plan) {}
  std::size_t size() const noexcept override;
  bool input_complete() const noexcept override;
  const std::string& backend_name() const noexcept override;
  int n_workers() const noexcept override;
  bool nested() const noexcept override;
  bool keep_going() const noexcept override;
  bool collective() const noexcept override;
  Campaign* campaign() override { return nullptr; }
  bool all_agree(bool value) override;
  std::int64_t first_process_value(std::int64_t value) override;

 private:
  const Job& job_;
  const CallPlan& plan_;
};

// Before a call starts (and its campaign's rounds run): a call whose end is summarised (verbose >
// 0) starts counting its workers' busy time and cached calls (Job::tally()). Not a round's call:
// it counts in its campaign's call's tally; nor an MPI call, where each rank knows only its own.
void start_tally_if_summarised(Job& job, const CallPlan& plan);

// Calls on_call_start of each observer in turn.
void notify_call_start(const CallObservers& observers, CallStart& call);

// Drives one started call from the caller's thread: waits for outcomes, reports progress and
// applies the error policy. Destroying it before the call finished cancels the call.
class CallDriver {
 public:
  // `streaming`: the caller consumes results as they come (generators), so it is woken for
  // each one; a list only needs waking at the end, on a failure, or to draw progress.
  // `in_order`: the caller yields results in input order (an ordered generator), so a failure
  // stops the tasks after it only, and is rethrown by the caller once it reaches that task.
  CallDriver(std::shared_ptr<Job> job, const CallPlan& plan, bool streaming, bool in_order = false);
  ~CallDriver();
  CallDriver(const CallDriver&) = delete;
  CallDriver& operator=(const CallDriver&) = delete;

  // Waits until more tasks finished and appends their indices to `finished`. Returns false,
  // appending nothing, once every task has finished, or once a cancelled call has nothing
  // more to report (it then never waits). Unless the call keeps going, rethrows the first
  // failure (after cancelling the rest).
  bool advance(std::vector<IndexRange>& finished);
  // Stops the call: no new task starts and workers stop (see Run::cancel).
  void cancel() noexcept;
  // The caller has now taken `taken` results (Job::consumer_took).
  void took(std::size_t taken);

 private:
  bool all_finished() const noexcept;
  // Draws progress; at the end (once) also tells the observers, `stop_signal` if stopped.
  void report(bool finished, int stop_signal = 0);
  void tell_observers_the_end(int stop_signal);
  // The line that ends a verbose call (CallSummary), from the job's tally.
  void summarise() const;
  // SIGTERM/SIGUSR1 under Session: let running tasks finish, then tell the observers (launch/'s
  // policy ends the process). Throws if none of them did.
  [[noreturn]] void stop_gracefully();
  // Config::max_failures reached in a keep_going call: no task starts any more, running ones
  // finish, and the tasks never run fail with NotRunError.
  void stop_for_failures();

  std::shared_ptr<Job> job_;
  bool keep_going_;
  bool in_order_;
  std::size_t first_failed_ = static_cast<std::size_t>(-1);  // the lowest index that failed
  std::unique_ptr<Run> run_;
  // A round of an elastic campaign: its progress counts the campaign, and the tasks it puts
  // aside for other processes (counted in failed_) are neither done nor failed there.
  std::optional<CampaignRound> round_;
  std::unique_ptr<ProgressReporter> reporter_;
  std::shared_ptr<const CallObservers> observers_;
  Job::Clock::time_point started_;
  std::vector<FinishedTasks> drained_;
  std::size_t done_ = 0;
  std::size_t failed_ = 0;
  std::size_t put_aside_ = 0;
  std::size_t not_run_ = 0;  // tasks left out by stop_for_failures() (counted in failed_)
  bool stopped_for_failures_ = false;
  bool cancelled_ = false;
  std::exception_ptr failure_;
  bool reported_end_ = false;
  // Set for a top-level call (not one nested in a task): it handles graceful stops.
  std::optional<RunningCall> running_;
};

}  // namespace joblet::detail
