#pragma once
// What the observers of a campaign see as it starts: a call whose tasks are all
// delayed(cached, args...) of one cached function (recognised through storage's CachedCallable
// concept, so this header never includes the cache).

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "joblet/cached_call.hpp"
#include "joblet/delayed.hpp"
#include "joblet/detail/call.hpp"

namespace joblet::detail {

// Of the outcomes of run_deferring's call (an error, or null, for each task at `indices`), the
// tasks that were put aside; rethrows the first other error.
std::vector<std::size_t> put_aside(std::span<const std::size_t> indices, std::span<const std::exception_ptr> errors);
// Whether `error` is an exception of one of the types E (or of a subclass), also as it comes
// back from another process (which makes joblet's own types and ComputingElsewhere again).
template <class... E>
bool is_error_of(const std::exception_ptr& error) noexcept {
  if (!error) return false;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return ((dynamic_cast<const E*>(&e) != nullptr) || ...);
  } catch (...) {
    return false;
  }
}
// Whether a task's error is its deferral (ComputingElsewhere).
inline bool is_put_aside(const std::exception_ptr& error) noexcept { return is_error_of<ComputingElsewhere>(error); }
// Whether a task failed outside its own code (its worker died, it ran past its timeout, or it
// failed every retry), so that its cached call may not have recorded the failure itself.
inline bool lost_task(const std::exception_ptr& error) noexcept {
  return is_error_of<WorkerDiedError, TimeoutError, RetriesExhaustedError>(error);
}

// CallJob: a TypedJob whose tasks are cached calls. RunOnly: std::vector<std::exception_ptr>
// (std::span<const std::size_t>, CampaignClaim), returning every task's error (or null) in defer
// mode, nothing in the others.
template <class CallJob, class RunOnly>
class CampaignStart final : public PlainCallStart, private Campaign {
 public:
  CampaignStart(const CallJob& job, const CallPlan& plan, RunOnly run_only)
      : PlainCallStart(job, plan), job_(job), run_only_(std::move(run_only)) {}

  Campaign* campaign() override {
    if (!checked_) {
      checked_ = true;
      is_campaign_ = check();
    }
    return is_campaign_ ? this : nullptr;
  }

 private:
  bool check() {
    if (!job_.input_complete() || job_.size() == 0) return false;
    const auto location = job_.task_at(0).function().location();
    if (!location) return false;  // a Memory that caches nothing
    const std::string& name = function();
    for (std::size_t index = 1; index < job_.size(); ++index) {
      if (job_.task_at(index).function().name() != name) return false;  // several functions
    }
    location_ = *location;
    return true;
  }

  const std::string& function() const override { return job_.task_at(0).function().name(); }
  const std::filesystem::path& location() const override { return location_; }
  std::span<const Hash128> keys() override {
    if (keys_.size() != job_.size()) {
      keys_.resize(job_.size());
      for (std::size_t index = 0; index < job_.size(); ++index) {
        const auto& task = job_.task_at(index);
        keys_[index] = std::apply([&](const auto&... args) { return task.function().key(args...); }, task.arguments());
      }
    }
    return keys_;
  }
  bool in_cache(std::size_t index) const override {
    const auto& task = job_.task_at(index);
    return std::apply([&](const auto&... args) { return task.function().check_call_in_cache(args...); },
                      task.arguments());
  }
  void run_only(std::span<const std::size_t> indices) override { run_only_(indices, CampaignClaim::none); }
  std::vector<std::size_t> run_deferring(std::span<const std::size_t> indices) override {
    const CampaignRoundScope round(round_of(indices));
    auto aside = put_aside(indices, run_only_(indices, CampaignClaim::defer));
    done_here_ += indices.size() - aside.size();
    return aside;
  }
  void run_waiting(std::span<const std::size_t> indices) override {
    const CampaignRoundScope round(round_of(indices));
    run_only_(indices, CampaignClaim::wait);
  }
  void run_held(std::span<const std::size_t> indices, std::size_t done_elsewhere, bool last) override {
    const std::size_t tasks = job_.size();
    const std::size_t elsewhere = std::min(done_elsewhere, tasks - std::min(done_here_, tasks));
    if (!share_started_) share_started_ = std::chrono::steady_clock::now();
    const CampaignRoundScope round(
        {tasks, done_here_, elsewhere, last, share_started_, !announced_, job_.shared_tally()});
    announced_ = true;
    run_only_(indices, done_elsewhere > 0 ? CampaignClaim::held_recheck : CampaignClaim::held);
    done_here_ += indices.size();
  }
  // The tasks a round does not run are done: by this process's earlier rounds or by others.
  CampaignRound round_of(std::span<const std::size_t> indices) const noexcept {
    const std::size_t done = job_.size() - std::min(indices.size(), job_.size());
    return {.tasks = job_.size(),
            .done_here = std::min(done_here_, done),
            .done_elsewhere = done - std::min(done_here_, done),
            .last = true,
            .share_started = std::nullopt,
            .first = true,
            .tally = job_.shared_tally()};
  }

  const CallJob& job_;
  RunOnly run_only_;
  std::size_t done_here_ = 0;  // tasks this process's rounds finished (not put aside)
  std::optional<std::chrono::steady_clock::time_point> share_started_;  // the first run_held
  bool announced_ = false;
  bool checked_ = false;
  bool is_campaign_ = false;
  std::filesystem::path location_;
  std::vector<Hash128> keys_;
};

}  // namespace joblet::detail
