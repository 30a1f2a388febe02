// Elastic campaigns: every process that runs the same campaign computes what no other process is
// computing, so that jobs started at any moment, on any nodes, share one campaign through the
// cache alone, with no server.
//
// A process claims runs of consecutive tasks (CampaignRuns: a chain of claim files, one per run)
// and computes each run as a call of its own, with no lock per task; it sizes its next run from
// what its tasks and its claims cost, so that a claim stays a small share of a run's time, even
// on a network filesystem where each claim is several round trips to the server. When every
// task is in some run, it waits for the runs of the others, and takes over (task by task, under
// their compute-once locks) the missing tasks of runs whose holder is gone. A process that joins
// late finds most runs claimed and computes only what is left. The call then loads every result.
//
// Where runs cannot be claimed (a filesystem without hard links), each task is claimed by its
// own compute-once lock instead (Campaign::run_deferring, then run_waiting).
#include "elastic_campaign.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "joblet/campaign.hpp"
#include "joblet/detail/env.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/stop.hpp"
#include "joblet/error.hpp"

namespace joblet::detail {
namespace {

thread_local std::optional<ElasticRound> t_round;

class RoundScope {
 public:
  RoundScope(std::size_t tasks, std::size_t done_before) noexcept { t_round = ElasticRound{tasks, done_before}; }
  ~RoundScope() { t_round.reset(); }
  RoundScope(const RoundScope&) = delete;
  RoundScope& operator=(const RoundScope&) = delete;
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The length of this process's next run. A run is a call of its own: its claim, and the call's
// start and end (workers idle while it ends), are paid once per run, so a run aims to last
// kClaimShare⁻¹ times what its claim cost, and at least kShortestRun. Near the end it shrinks to
// an eighth of what is left to claim, so that the campaign ends in shorter runs spread over
// every process, but never below the length whose claim costs kClaimShare of it; it grows at
// most 8× from one run to the next (like the batch sizer's claims).
class RunLength {
 public:
  explicit RunLength(int workers)
      : workers_(static_cast<std::size_t>(std::max(workers, 1))), length_(workers_), shortest_(workers_) {}

  std::size_t next(std::size_t unclaimed) const {
    return std::max<std::size_t>(1, std::min(length_, std::max({workers_, shortest_, unclaimed / 8})));
  }

  void measured(std::size_t tasks, double run_seconds, double claim_seconds) {
    if (tasks == 0 || run_seconds <= 0) return;
    const double per_task = std::max(run_seconds * static_cast<double>(workers_) / static_cast<double>(tasks), 1e-9);
    const auto lasting = [&](double seconds) { return std::ceil(seconds * static_cast<double>(workers_) / per_task); };
    const double wanted = lasting(std::max(claim_seconds / kClaimShare, kShortestRun));
    const double grown = std::min(wanted, static_cast<double>(length_) * 8);
    length_ = static_cast<std::size_t>(std::clamp(grown, static_cast<double>(workers_), 1e9));
    shortest_ = static_cast<std::size_t>(
        std::clamp(lasting(claim_seconds / kClaimShare), static_cast<double>(workers_), 1e9));
  }

 private:
  static constexpr double kClaimShare = 0.02;
  static constexpr double kShortestRun = 0.2;  // seconds
  std::size_t workers_;
  std::size_t length_;
  std::size_t shortest_;  // the length whose claim costs kClaimShare of it
};

// Where this process starts in the task list when claiming task by task: processes that start
// together would otherwise all reach for the same first tasks, and every task but one would
// cost each of them a failed lock.
std::size_t starting_point(std::size_t tasks) {
  if (tasks == 0) return 0;
  const ErrorSite here = ErrorSite::here();
  const std::string who = here.host + ":" + std::to_string(here.pid);
  return std::hash<std::string>{}(who) % tasks;
}

std::vector<std::size_t> indices_of(const TaskRun& run) {
  std::vector<std::size_t> indices(run.end - run.begin);
  std::iota(indices.begin(), indices.end(), run.begin);
  return indices;
}

// Task by task, under compute-once locks: what runs cannot be claimed with.
void run_task_by_task(CallStart& call, Campaign& campaign, const std::string& name, std::vector<std::size_t> pending) {
  const bool collective = call.collective();
  const std::size_t total = call.size();
  if (!collective) std::rotate(pending.begin(), pending.begin() + starting_point(pending.size()), pending.end());
  std::vector<std::size_t> aside;
  {
    const RoundScope round(total, total - pending.size());
    aside = campaign.run_deferring(pending);
  }
  // Most of what was put aside is usually done by now: wait only for the rest.
  if (!collective) std::erase_if(aside, [&](std::size_t index) { return campaign.in_cache(index); });
  if (!call.all_agree(aside.empty())) {
    log().info("campaign {}: {} tasks are being computed by other processes; waiting for their results (a lock "
               "whose holder died is taken over)",
               name, aside.size());
    const RoundScope round(total, total - aside.size());
    campaign.run_waiting(aside);
  }
}

// The runs of the campaign, claimed by this process (MPI rank 0 for all ranks of a collective
// call), and the wait for the others' runs.
class RunClaimer {
 public:
  RunClaimer(CallStart& call, Campaign& campaign, const std::string& name, std::vector<bool> missing)
      : call_(call),
        campaign_(campaign),
        name_(name),
        total_(call.size()),
        decides_(!call.collective() || process_rank() <= 0),
        missing_(std::move(missing)),
        length_(call.n_workers()) {
    done_elsewhere_ = static_cast<std::size_t>(std::count(missing_.begin(), missing_.end(), false));
  }

  // False, with nothing run, when runs cannot be claimed here (on every process of the call).
  bool open() {
    bool opened = true;
    if (decides_) {
      try {
        runs_ = std::make_unique<CampaignRuns>(campaign_.location(),
                                               campaign_name(campaign_.function(), campaign_.keys()), total_);
      } catch (const Error& e) {
        log().info("campaign {}: claiming tasks one by one ({})", name_, e.message());
        opened = false;
      }
    }
    return call_.all_agree(opened);
  }

  // Claims and computes runs until every task is in one. Returns false when a claim failed
  // (the tasks of this process's runs are done; the rest is left to run_task_by_task).
  bool compute() {
    for (;;) {
      auto run = next_run();
      if (!run) return true;
      if (run->begin == kFailed) return false;
      std::vector<std::size_t> indices = indices_of(*run);
      // A collective call passes every rank the same tasks; elsewhere those that were in the
      // cache at the start are skipped.
      if (!call_.collective()) std::erase_if(indices, [&](std::size_t index) { return !missing_[index]; });
      const auto started = Clock::now();
      if (!indices.empty()) {
        const RoundScope round(total_, done_elsewhere_ + done_here_);
        campaign_.run_held(indices, done_elsewhere_, /*last=*/false);
      }
      if (runs_) runs_->release();
      done_here_ += indices.size();
      mine_.push_back(*run);
      length_.measured(indices.size(), seconds_since(started), claim_seconds_);
    }
  }

  // Waits until every task of the others' runs is in the cache, taking over those of runs
  // whose holder is gone; then reports the end of this process's share.
  void wait_for_others() {
    if (decides_) {
      log().info("campaign {}: computed {} tasks in {} runs; claiming them took {:.1f} ms ({:.0f} us a task)", name_,
                 done_here_, mine_.size(), claims_seconds_ * 1e3,
                 done_here_ > 0 ? claims_seconds_ * 1e6 / static_cast<double>(done_here_) : 0.0);
    }
    if (call_.collective()) {
      wait_collectively();
    } else {
      wait_alone();
    }
    campaign_.run_held({}, total_, /*last=*/true);
  }

  // The tasks this process did not run in its own runs (for run_task_by_task).
  std::vector<std::size_t> not_run_here() const {
    std::vector<bool> ran(total_, false);
    for (const TaskRun& run : mine_) std::fill(ran.begin() + run.begin, ran.begin() + run.end, true);
    std::vector<std::size_t> left;
    for (std::size_t index = 0; index < total_; ++index) {
      if (!ran[index] && (call_.collective() || missing_[index])) left.push_back(index);
    }
    return left;
  }

 private:
  static constexpr std::size_t kFailed = static_cast<std::size_t>(-1);

  // This process's next run; on every rank of a collective call, rank 0's.
  std::optional<TaskRun> next_run() {
    std::int64_t begin = -1;
    std::int64_t end = -1;
    if (decides_) {
      try {
        const auto started = Clock::now();
        const std::size_t claimed = std::max(furthest_, runs_->others().empty() ? 0 : runs_->others().back().end);
        const std::size_t unclaimed = total_ - std::min(total_, claimed);
        if (const auto run = runs_->claim(length_.next(unclaimed))) {
          begin = static_cast<std::int64_t>(run->begin);
          end = static_cast<std::int64_t>(run->end);
          furthest_ = run->end;
        }
        claim_seconds_ = seconds_since(started);
        claims_seconds_ += claim_seconds_;
        ++claims_;
      } catch (const Error& e) {
        log().warn("campaign {}: cannot claim a run of tasks ({}); claiming the rest one by one", name_, e.message());
        begin = end = -2;
      }
    }
    begin = call_.first_process_value(begin);
    end = call_.first_process_value(end);
    if (begin == -2) return TaskRun{kFailed, kFailed};
    if (begin < 0) return std::nullopt;
    return TaskRun{static_cast<std::size_t>(begin), static_cast<std::size_t>(end)};
  }

  // The first task of `run` still missing from the cache, from `from` on; run.end if none.
  std::size_t first_missing(const TaskRun& run, std::size_t from) const {
    std::size_t index = from;
    while (index < run.end && (!missing_[index] || campaign_.in_cache(index))) ++index;
    return index;
  }

  void take_over(const TaskRun& run) {
    if (!stop_requested()) {
      log().info("campaign {}: tasks {} to {} were claimed by a process that is gone; computing those still missing",
                 name_, run.begin, run.end - 1);
    }
    std::vector<std::size_t> indices = indices_of(run);
    if (!call_.collective()) std::erase_if(indices, [&](std::size_t index) { return !missing_[index]; });
    const RoundScope round(total_, total_ - indices.size());
    campaign_.run_waiting(indices);  // task by task, under their locks: several may take over
  }

  // Polls the others' runs, backing off like a lock's waiter, until each has every task in the
  // cache (nullopt) or one's holder is gone (that run, which is not polled again).
  std::optional<TaskRun> poll_others() {
    if (!waiting_) {
      waiting_.emplace();
      for (const TaskRun& run : runs_->others()) waiting_->push_back({run, run.begin});
    }
    const LockOptions options;
    auto poll = options.poll;
    for (;;) {
      // Stopped (a time limit) while waiting: the call made for the first run still missing
      // stops at its start and reports what is left, as any round does.
      if (stop_requested() && !waiting_->empty()) return waiting_->front().run;
      std::optional<TaskRun> gone;
      std::erase_if(*waiting_, [&](Waiting& wait) {
        if (gone) return false;
        wait.next = first_missing(wait.run, wait.next);
        if (wait.next == wait.run.end) return true;
        if (!runs_->holder_gone(wait.run)) return false;
        gone = wait.run;
        return true;
      });
      if (gone || waiting_->empty()) return gone;
      if (!said_waiting_) {
        said_waiting_ = true;
        log().info("campaign {}: every task is claimed; waiting for the {} runs other processes are computing", name_,
                   waiting_->size());
      }
      std::this_thread::sleep_for(poll);
      poll = std::min(poll * 2, options.poll_max);
    }
  }

  void wait_alone() {
    while (const auto run = poll_others()) take_over(*run);
  }

  // Rank 0 watches the others' runs; every rank takes over the runs it names, together.
  void wait_collectively() {
    for (;;) {
      std::int64_t begin = -1;
      std::int64_t end = -1;
      if (decides_) {
        if (const auto run = poll_others()) {
          begin = static_cast<std::int64_t>(run->begin);
          end = static_cast<std::int64_t>(run->end);
        }
      }
      begin = call_.first_process_value(begin);
      end = call_.first_process_value(end);
      if (begin < 0) return;
      take_over(TaskRun{static_cast<std::size_t>(begin), static_cast<std::size_t>(end)});
    }
  }

  struct Waiting {
    TaskRun run;
    std::size_t next;  // the tasks of the run before it are in the cache
  };

  CallStart& call_;
  Campaign& campaign_;
  const std::string& name_;
  std::size_t total_;
  bool decides_;              // claims and judges runs: every process but MPI ranks other than 0
  std::vector<bool> missing_;  // tasks not in the cache at the start (as this process saw it)
  std::size_t done_elsewhere_ = 0;
  std::size_t done_here_ = 0;
  RunLength length_;
  double claim_seconds_ = 0;   // the last claim's
  double claims_seconds_ = 0;  // every claim's
  std::size_t claims_ = 0;
  std::size_t furthest_ = 0;
  std::unique_ptr<CampaignRuns> runs_;
  std::vector<TaskRun> mine_;
  std::optional<std::vector<Waiting>> waiting_;  // the others' runs not yet complete
  bool said_waiting_ = false;
};

}  // namespace

std::optional<ElasticRound> elastic_round() noexcept { return t_round; }

void run_elastic_campaign(CallStart& call, Campaign& campaign, const std::string& name) {
  // A collective call (mpi) runs each round on every rank at once, so every rank must pass the
  // same tasks: no filtering on what one rank sees in the cache. The backend deals the tasks
  // among the ranks itself.
  const bool collective = call.collective();
  const std::size_t total = call.size();
  std::vector<bool> missing(total, true);
  std::vector<std::size_t> pending;
  pending.reserve(total);
  for (std::size_t index = 0; index < total; ++index) {
    if (collective || !campaign.in_cache(index)) {
      pending.push_back(index);
    } else {
      missing[index] = false;
    }
  }
  if (pending.empty()) return;
  if (collective) {
    log().info("campaign {}: computing those of its {} tasks that are not in the cache and that no other process "
               "is computing",
               name, total);
  } else {
    log().info("campaign {}: {} of its {} tasks are not in the cache; computing those that no other process is "
               "computing",
               name, pending.size(), total);
  }
  // Between its rounds the campaign is still this process's running call: a SIGTERM (a time
  // limit) waits for the next round, which stops and reports what is left (exit status 75).
  const RunningCall running;
  RunClaimer claimer(call, campaign, name, std::move(missing));
  if (!claimer.open()) {
    run_task_by_task(call, campaign, name, std::move(pending));
    return;
  }
  if (!claimer.compute()) {
    run_task_by_task(call, campaign, name, claimer.not_run_here());
    return;
  }
  claimer.wait_for_others();
}

}  // namespace joblet::detail
