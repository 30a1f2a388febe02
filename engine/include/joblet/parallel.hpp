#pragma once
/// @file
/// Parallel: joblib's Parallel in C++.
///
/// @code
///   std::vector<double> out = joblet::Parallel({.n_jobs = -1})(
///       params | std::views::transform([](const Params& p) { return joblet::delayed(simulate, p); }));
/// @endcode
///
/// The argument is any input range of tasks (callables taking no arguments). Results come
/// back in input order as a std::vector, or, with a return_as tag, as a generator that yields
/// them in order or as they finish. The first failing task cancels the rest and its exception
/// is rethrown here; a return_as tag's keep_going() returns every task's Outcome instead.

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "joblet/config.hpp"
#include "joblet/delayed.hpp"
#include "joblet/detail/call.hpp"
#include "joblet/detail/campaign_start.hpp"
#include "joblet/detail/typed_job.hpp"
#include "joblet/outcome.hpp"

namespace joblet {

namespace detail {
enum class Shape { list, generator, generator_unordered };
}

/// How a call returns its results (joblib's return_as). Tags: return_as::list (default),
/// return_as::generator, return_as::generator_unordered; append .keep_going() to get every
/// task's Outcome instead of an exception at the first failure.
template <detail::Shape S, bool KeepGoing>
struct ReturnAs {
  /// The same tag, asking for every task's Outcome instead of an exception at the first failure.
  constexpr ReturnAs<S, true> keep_going() const noexcept { return {}; }
};

/// The tags that say how a call returns its results (ReturnAs).
namespace return_as {
/// A std::vector of the results, in input order (the default).
inline constexpr ReturnAs<detail::Shape::list, false> list{};
/// A Generator that yields the results in input order, each as soon as it and those before it
/// are ready.
inline constexpr ReturnAs<detail::Shape::generator, false> generator{};
/// A Generator that yields each result as soon as it is ready, as an Indexed that names its task.
inline constexpr ReturnAs<detail::Shape::generator_unordered, false> generator_unordered{};
}  // namespace return_as

/// What an unordered generator yields: the task's index in the input, and its result.
template <class R>
struct Indexed {
  std::size_t index;  ///< the task's position in the input
  R value;            ///< its result (an Outcome with keep_going())
};

/// An input range over the results of a running call, produced as they are ready. Destroying
/// it before the end cancels the tasks not yet started (and stops worker processes).
template <class Job, detail::Shape S, bool KeepGoing>
class Generator {
  using Value = typename Job::Value;
  using Item = std::conditional_t<KeepGoing, Outcome<Value>, Value>;

 public:
  /// What it yields: each result (an Outcome with keep_going()), in an Indexed for an unordered
  /// generator.
  using value_type = std::conditional_t<S == detail::Shape::generator_unordered, Indexed<Item>, Item>;

  /// The generator's input iterator: it reaches the end when it compares equal to
  /// std::default_sentinel. Every iterator of one generator reads the same position.
  class iterator {
   public:
    using value_type = Generator::value_type;  ///< the result type
    using difference_type = std::ptrdiff_t;    ///< required of iterators; unused
    /// An iterator of no generator, which must not be used (iterators must be default-constructible).
    iterator() = default;
    /// Reads the results of `owner`; Generator::begin() makes it.
    explicit iterator(Generator* owner) : owner_(owner) {}
    /// The current result, which may be moved from; valid until the iterator is incremented.
    value_type& operator*() const { return *owner_->current_; }
    /// The current result, as a pointer.
    value_type* operator->() const { return &*owner_->current_; }
    /// Waits for the next result. Rethrows the first failure of a task (unless keep_going() was
    /// asked for) or an exception the input range threw.
    iterator& operator++() {
      owner_->advance();
      return *this;
    }
    /// The same as the prefix increment; returns nothing, as input iterators may.
    void operator++(int) { ++*this; }
    /// Whether `it` is past the last result.
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    bool at_end() const noexcept { return owner_->done_; }
    Generator* owner_ = nullptr;
  };

  /// Made by Parallel::operator() with a generator tag: starts the call now.
  Generator(std::shared_ptr<Job> job, const detail::CallPlan& plan)
      : job_((job->follow_consumer(), job)),  // before the run starts claiming
        driver_(std::make_unique<detail::CallDriver>(std::move(job), plan, /*streaming=*/true,
                                                     /*in_order=*/S == detail::Shape::generator)) {}

  /// Starts reading results, waiting for the first one; call once.
  iterator begin() {
    if (!started_) {
      started_ = true;
      advance();
    }
    return iterator(this);
  }
  /// The end: std::default_sentinel.
  std::default_sentinel_t end() const noexcept { return {}; }

  /// Stops the call now instead of at destruction: no task starts any more. Iterating further
  /// yields the outcomes that had already arrived (in order, up to the first task that did not
  /// finish, for an ordered generator), then ends; it never waits.
  void cancel() noexcept {
    if (driver_) driver_->cancel();
  }

 private:
  void advance() {
    current_.reset();
    if constexpr (S == detail::Shape::generator) {
      for (;;) {
        if (next_arrived()) {
          arrived_.pop_front();
          const std::size_t index = next_++;
          if constexpr (KeepGoing) {
            current_.emplace(job_->take_outcome(index));
          } else {
            if (auto failure = job_->error(index)) {
              driver_->cancel();
              std::rethrow_exception(failure);
            }
            current_.emplace(job_->take_value(index));
          }
          driver_->took(next_);
          return;
        }
        if (!job_->results_here() || (job_->input_complete() && next_ >= job_->size())) {
          finish();
          return;
        }
        finished_.clear();
        // False: nothing more will arrive (every task finished, or the call was cancelled and
        // task next_ never will).
        const bool more = driver_->advance(finished_);
        for (const IndexRange& range : finished_) {
          // arrived_[k] says whether task next_ + k finished: only tasks not yet yielded.
          if (range.end > next_ + arrived_.size()) arrived_.resize(range.end - next_, false);
          for (std::size_t index = std::max(range.begin, next_); index < range.end; ++index)
            arrived_[index - next_] = true;
        }
        if (!more && !next_arrived()) {
          finish();
          return;
        }
      }
    } else {
      while (ready_.empty()) {
        finished_.clear();
        if (!driver_->advance(finished_)) {
          finish();
          return;
        }
        for (const IndexRange& range : finished_) {
          for (std::size_t index = range.begin; index < range.end; ++index) ready_.push_back(index);
        }
      }
      const std::size_t index = ready_.front();
      ready_.pop_front();
      if constexpr (KeepGoing) {
        current_.emplace(value_type{index, job_->take_outcome(index)});
      } else {
        current_.emplace(value_type{index, job_->take_value(index)});
      }
      driver_->took(++taken_);
    }
  }

  bool next_arrived() const noexcept { return !arrived_.empty() && arrived_.front(); }

  void finish() {
    done_ = true;
    std::vector<IndexRange> rest;
    while (driver_->advance(rest)) rest.clear();  // reports the end of the call
  }

  std::shared_ptr<Job> job_;
  std::unique_ptr<detail::CallDriver> driver_;
  std::optional<value_type> current_;
  std::vector<IndexRange> finished_;
  std::deque<std::size_t> ready_;  ///< unordered: finished tasks not yet yielded
  std::deque<bool> arrived_;       ///< ordered: from task next_ on, which ones finished
  std::size_t next_ = 0;           ///< ordered: the index yielded next
  std::size_t taken_ = 0;          ///< unordered: results yielded
  bool started_ = false;
  bool done_ = false;
};

/// joblib's Parallel: runs a range of tasks on a backend and returns their results. The
/// constructor chooses the backend and the number of workers; each call of operator() runs one
/// range of tasks with them.
class Parallel {
 public:
  /// Resolves the config now against the enclosing ParallelConfig scopes and JOBLET_*
  /// variables (as joblib's Parallel does when constructed). Throws ConfigError.
  explicit Parallel(const Config& config = {}) : plan_(detail::plan_call(config)) {}

  /// Runs every task and returns their results in input order, as a std::vector (nothing when the
  /// tasks return void). The first failure cancels the tasks not yet started and is rethrown.
  template <std::ranges::input_range Tasks>
  auto operator()(Tasks&& tasks) {
    return (*this)(std::forward<Tasks>(tasks), return_as::list);
  }

  /// Runs every task and returns their results as the return_as tag says: return_as::list, a
  /// std::vector in input order (nothing when the tasks return void); return_as::generator and
  /// return_as::generator_unordered, a Generator, which yields them as they come. Without
  /// keep_going() the first failure cancels the tasks not yet started and is rethrown (by a
  /// Generator as it iterates); with it, each task gives an Outcome (of std::monostate for void).
  template <std::ranges::input_range Tasks, detail::Shape S, bool KeepGoing>
  auto operator()(Tasks&& tasks, ReturnAs<S, KeepGoing>) {
    using View = std::views::all_t<Tasks>;
    using CallJob = detail::TypedJob<View>;
    using Value = typename CallJob::Value;
    JobSettings settings = plan_.settings;
    settings.keep_going = KeepGoing;
    const bool read_all = !settings.pre_dispatch.has_value();
    auto job = std::make_shared<CallJob>(std::views::all(std::forward<Tasks>(tasks)), settings, read_all);
    detail::start_tally_if_summarised(*job, plan_);
    if (auto observers = detail::call_observers()) notify_start(*observers, *job);

    if constexpr (S == detail::Shape::list) {
      {
        detail::CallDriver driver(job, plan_, /*streaming=*/false);
        std::vector<IndexRange> finished;
        while (driver.advance(finished)) finished.clear();
      }
      using Item = std::conditional_t<KeepGoing, Outcome<Value>, Value>;
      using Result = std::invoke_result_t<std::ranges::range_reference_t<View>>;
      if constexpr (std::is_void_v<Result> && !KeepGoing) {
        return;
      } else {
        std::vector<Item> results;
        if (!job->results_here()) return results;  // they went to another process (ResultsTo::root)
        if constexpr (KeepGoing) {
          results.reserve(job->size());
          for (std::size_t index = 0; index < job->size(); ++index) results.push_back(job->take_outcome(index));
        } else {
          results = job->take_values();
        }
        return results;
      }
    } else {
      return Generator<CallJob, S, KeepGoing>(std::move(job), plan_);
    }
  }

  /// The backend calls run on, after n_jobs == 1 and the other rules were applied.
  const std::string& backend_name() const noexcept { return plan_.backend_name; }
  /// The number of workers calls get.
  int n_workers() const noexcept { return plan_.settings.n_workers; }

 private:
  /// Observers may run part of a campaign first (a job-array element computing its shard), or
  /// end the process before this call starts.
  template <class CallJob>
  void notify_start(const detail::CallObservers& observers, CallJob& job) {
    if constexpr (detail::is_cached_call<typename CallJob::TaskType>) {
      auto run_only = [this, &job](std::span<const std::size_t> indices, detail::CampaignClaim claim) {
        // The claim mode is set where each task runs: in a worker thread, process or rank.
        auto tasks = indices | std::views::transform([&job, claim](std::size_t index) {
                       return [&job, index, claim] {
                         const detail::CampaignClaimScope scope(claim);
                         return std::invoke(job.task_at(index));
                       };
                     });
        std::vector<std::exception_ptr> errors;
        if (claim != detail::CampaignClaim::defer) {
          try {
            (*this)(tasks);
          } catch (const Error& e) {
            // A round's task is not a cached call of its own: its lost tasks are recorded here.
            const auto task = e.site().task_index;
            if (task && *task < indices.size() && detail::lost_task(std::current_exception())) {
              job.record_failure_in_cache(indices[*task], std::current_exception());
            }
            throw;
          }
          job.note_campaign_round(indices);
          return errors;
        }
        auto outcomes = (*this)(tasks, return_as::list.keep_going());
        errors.reserve(outcomes.size());
        std::vector<std::size_t> ran;  // not the ones put aside: another process computes those
        for (std::size_t i = 0; i < outcomes.size(); ++i) {
          errors.push_back(outcomes[i].error());
          if (!errors.back()) {
            ran.push_back(indices[i]);
          } else if (detail::lost_task(errors.back())) {
            job.record_failure_in_cache(indices[i], errors.back());
          }
        }
        job.note_campaign_round(ran);
        return errors;
      };
      detail::CampaignStart<CallJob, decltype(run_only)> start(job, plan_, std::move(run_only));
      detail::notify_call_start(observers, start);
    } else {
      detail::PlainCallStart start(job, plan_);
      detail::notify_call_start(observers, start);
    }
  }

  detail::CallPlan plan_;
};

/// joblet::map(f, inputs): Parallel(config)(delayed(f, x) for x in inputs), results in order.
template <class F, std::ranges::input_range Inputs>
auto map(F&& f, Inputs&& inputs, const Config& config = {}) {
  auto tasks = std::forward<Inputs>(inputs) | std::views::transform([&f](auto&& input) {
                 // Inputs held by a container are used in place; computed ones, and those of
                 // single-pass ranges (which may reuse one object), are kept by value.
                 if constexpr (std::is_lvalue_reference_v<decltype(input)> && std::ranges::forward_range<Inputs>) {
                   return [&f, pointer = std::addressof(input)] { return std::invoke(f, *pointer); };
                 } else {
                   return [&f, value = std::remove_cvref_t<decltype(input)>(std::forward<decltype(input)>(input))] {
                     return std::invoke(f, value);
                   };
                 }
               });
  return Parallel(config)(std::move(tasks));
}

}  // namespace joblet
