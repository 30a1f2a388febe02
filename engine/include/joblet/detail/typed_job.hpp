#pragma once
// TypedJob: the typed half of a parallel call. It makes tasks from the user's range, runs them
// and keeps their results. Everything else about the call (scheduling, waiting, errors,
// progress, per-task states) is the non-template Job/CallDriver code.
//
// What a task costs in memory is what the machine's limit costs: its result, written where the
// list returns it. A range that can be indexed without changing it (a container's elements, or a
// view such as std::views::transform whose const form can be indexed) gives each task to the
// thread that runs it; any other range is read once, in order, and its tasks are held until they
// run.

#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

#include "joblet/backend.hpp"
#include "joblet/cached_call.hpp"
#include "joblet/codec.hpp"
#include "joblet/delayed.hpp"
#include "joblet/detail/stable_vector.hpp"
#include "joblet/detail/task_scope.hpp"
#include "joblet/outcome.hpp"

namespace joblet::detail {

// What a task's result is stored as: void becomes std::monostate, references are copied.
template <class T>
using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, std::remove_cvref_t<T>>;

template <class Task>
inline constexpr bool is_cached_call = false;
template <class F, class... Args>
requires CachedCallable<F, Args...>
inline constexpr bool is_cached_call<Delayed<F, Args...>> = true;

// A range that gives its element `Reference` at any index, at once.
template <class R, class Reference>
concept IndexedAs = std::ranges::random_access_range<R> && std::ranges::sized_range<R> &&
    std::same_as<std::ranges::range_reference_t<R>, Reference>;

template <class R>
struct IteratorOf {
  using type = std::ranges::iterator_t<R>;
};

template <class View>
class TypedJob final : public Job {
  using Reference = std::ranges::range_reference_t<View>;
  using Task = std::remove_cvref_t<Reference>;
  // Tasks the range holds in stable storage (a container) are used in place, not copied. Only
  // forward ranges promise that: an input-only range may hand out a reference to one object
  // that it overwrites as it advances (std::views::istream does).
  static constexpr bool kInPlace = std::is_lvalue_reference_v<Reference> && std::ranges::forward_range<View>;
  using TaskRef = std::conditional_t<kInPlace, Reference, Task&>;
  static_assert(std::is_invocable_v<TaskRef>,
                "the elements of the range given to Parallel must be tasks: callables taking no arguments, "
                "such as joblet::delayed(f, args...)");
  using Result = std::invoke_result_t<TaskRef>;

  // Elements in place are indexed through the range itself; made tasks through its const form,
  // whose functions the standard requires not to change anything (regular_invocable), so that
  // workers may make tasks at once. Cached calls are held: a campaign looks at each task before
  // it runs, and making one may be costly (it may load the arguments).
  using Indexed = std::conditional_t<kInPlace, View, const View>;
  static constexpr bool kIndexable =
      !is_cached_call<Task> && IndexedAs<Indexed, std::conditional_t<kInPlace, Reference, Task>>;
  using HeldTask = std::conditional_t<kInPlace, std::remove_reference_t<Reference>*, std::optional<Task>>;

 public:
  using Value = Stored<Result>;
  using TaskType = Task;

 private:
  // Results go into one vector that a list call returns as it is, when their number is known
  // before the first task runs and an empty result can be made to be assigned later; otherwise
  // into segments that grow with the input. void results take no memory at all.
  static constexpr bool kNoValue = std::is_same_v<Value, std::monostate>;
  static constexpr bool kDense = !kNoValue && std::ranges::sized_range<View> &&
                                 std::is_default_constructible_v<Value> && std::is_move_assignable_v<Value> &&
                                 !std::is_same_v<Value, bool>;  // std::vector<bool> shares bytes between elements
  using Values = std::conditional_t<kNoValue, std::monostate,
                                    std::conditional_t<kDense, std::vector<Value>, StableVector<std::optional<Value>>>>;

 public:
  // Reads the whole input now when `read_all` (exceptions from the range propagate to the
  // caller); otherwise workers read it as they claim tasks. An indexable range is not read: its
  // tasks are made where they run (by a worker process too: remake_task).
  TypedJob(View view, JobSettings settings, bool read_all)
      : Job(std::move(settings)),
        view_(std::move(view)),
        next_(std::ranges::begin(view_)),
        end_(std::ranges::end(view_)) {
    if constexpr (kDense) {
      // Where outcomes arrive from worker processes, the results are made after the fork: made
      // before it, every page the parent then writes would be copied first.
      if (!this->settings().outcomes_per_task) make_dense_values();
    }
    if constexpr (kIndexable) {
      indexed_ = true;
      first_ = std::ranges::begin(static_cast<Indexed&>(view_));
      const auto count = static_cast<std::size_t>(std::ranges::size(static_cast<Indexed&>(view_)));
      if constexpr (!kDense && !kNoValue) values_.grow_to(count);
      set_complete_input(count);
      return;
    }
    if constexpr (std::ranges::sized_range<View>) grow_to(static_cast<std::size_t>(std::ranges::size(view_)));
    if (read_all) {
      bool exhausted = false;
      set_complete_input(read_input(static_cast<std::size_t>(-1), exhausted));
    }
  }

  void run_encoded(std::size_t index, std::string& out, detail::ArrayWriter* arrays) noexcept override {
    TaskScope scope;
    const std::size_t start = out.size();
    for (;;) {  // one attempt per turn (Config::retries)
      bool made = false;
      try {
        if constexpr (Encodable<Value>) {
          out.push_back('\0');
          with_task(index, [&](TaskRef task) {
            made = true;
            if constexpr (std::is_void_v<Result>) {
              std::invoke(task);
            } else {
              encode_into<Value>(std::invoke(task), out, arrays);
            }
          });
        } else {
          made = true;
          throw SerializationError("the result type " + result_type_name() + " cannot be encoded");
        }
        return;
      } catch (...) {
        out.resize(start);
        if (!made) {
          encode_input_error(std::current_exception(), out);
          return;
        }
        if (retry_attempt(index, std::current_exception())) continue;
        encode_error(final_error(index, std::current_exception()), out);
        return;
      }
    }
  }

  bool results_encodable() const noexcept override { return Encodable<Value>; }
  std::string result_type_name() const override { return demangle(typeid(Value).name()); }

  // The task at `index`, read from the input already (as cached calls always are).
  const Task& task_at(std::size_t index) const {
    static_assert(!kIndexable || kInPlace, "task_at() needs tasks that are held or in place");
    if constexpr (kIndexable) {
      if (indexed_) return first_[static_cast<std::ranges::range_difference_t<Indexed>>(index)];
    }
    return *tasks_[index];
  }

  // A cached call's failure that its own code could not record (its worker died, it ran past its
  // timeout): recorded in its cache for `joblet status` (CachedFunction::record_failure).
  void record_failure_in_cache(std::size_t index, const std::exception_ptr& error) noexcept {
    if constexpr (is_cached_call<TaskType>) {
      try {
        const auto& task = task_at(index);
        const Hash128 key =
            std::apply([&](const auto&... args) { return task.function().key(args...); }, task.arguments());
        task.function().record_failure(key, error);
      } catch (...) {  // hashing the arguments failed: the failure is reported, not recorded
      }
    }
  }

  // --- for the front end, after the task finished ---
  Value take_value(std::size_t index) {
    if constexpr (kNoValue) {
      return {};
    } else if constexpr (kDense) {
      make_dense_values();  // in case no task stored a result
      return std::move(values_[index]);
    } else {
      std::optional<Value>& slot = values_[index];
      Value value = std::move(*slot);
      slot.reset();
      return value;
    }
  }
  Outcome<Value> take_outcome(std::size_t index) {
    if (auto failure = error(index)) return Outcome<Value>(std::move(failure));
    return Outcome<Value>(take_value(index));
  }
  // Every result, in order, once every task succeeded.
  std::vector<Value> take_values() {
    if constexpr (kDense) {
      make_dense_values();
      return std::move(values_);
    } else {
      std::vector<Value> values;
      values.reserve(size());
      for (std::size_t index = 0; index < size(); ++index) values.push_back(take_value(index));
      return values;
    }
  }

 protected:
  std::size_t read_input(std::size_t count, bool& exhausted) override {
    std::size_t read = read_;
    while (read < count && next_ != end_) {
      grow_to(read + 1);
      if constexpr (kInPlace) {
        tasks_[read] = std::addressof(*next_);
      } else {
        tasks_[read].emplace(*next_);
      }
      ++next_;
      ++read;
    }
    exhausted = next_ == end_;
    read_ = read;
    return read;
  }

  TaskRun run_task(std::size_t index) noexcept override {
    for (;;) {  // one attempt per turn (Config::retries)
      bool made = false;
      try {
        return with_task(index, [&](TaskRef task) {
          made = true;
          if constexpr (kNoValue) {
            std::invoke(task);
            done_with_task(index);
            if (!claim_outcome(index)) return TaskRun::not_recorded;
          } else if (!settings().outcomes_per_task) {
            // Nobody else records this task's outcome: the result goes straight to its place.
            store(index, std::invoke(task));
            done_with_task(index);
            return TaskRun::succeeded;
          } else {
            Value value(std::invoke(task));
            done_with_task(index);
            // A task finishing after its timeout was reported loses, and its result is dropped.
            if (!claim_outcome(index)) return TaskRun::not_recorded;
            store(index, std::move(value));
          }
          settle_success(index);
          return TaskRun::succeeded;
        });
      } catch (...) {
        if (!made) {  // the range's own code, making the task
          fail_input(std::current_exception());
          return TaskRun::not_recorded;
        }
        if (retry_attempt(index, std::current_exception())) continue;
        done_with_task(index);
        return record_failure(index, final_error(index, std::current_exception())) ? TaskRun::failed
                                                                                   : TaskRun::not_recorded;
      }
    }
  }

  void failed_outside_task(std::size_t index, const std::exception_ptr& error) noexcept override {
    record_failure_in_cache(index, error);
  }

  std::exception_ptr remake_task(std::size_t index) noexcept override {
    if constexpr (kIndexable) {
      if (indexed_) {  // held tasks were made in the caller: no worker made them
        try {
          [[maybe_unused]] decltype(auto) made = first_[static_cast<std::ranges::range_difference_t<Indexed>>(index)];
        } catch (...) {
          return std::current_exception();
        }
      }
    }
    return nullptr;
  }

  bool store_encoded(std::size_t index, std::span<const std::byte> bytes, detail::ArrayReader* arrays) override {
    if constexpr (Encodable<Value>) {
      Value value = decode_from<Value>(bytes, arrays);
      if (!claim_outcome(index)) return false;
      if constexpr (!kNoValue) store(index, std::move(value));
      settle_success(index);
      return true;
    } else {
      throw SerializationError("the result type " + result_type_name() + " cannot be decoded");
    }
  }

 private:
  // use(task) with task `index`: made from the range (whose exception then escapes before use
  // is called), or held.
  template <class Use>
  decltype(auto) with_task(std::size_t index, Use&& use) {
    if constexpr (kIndexable) {
      if (indexed_) {
        decltype(auto) made = first_[static_cast<std::ranges::range_difference_t<Indexed>>(index)];
        return use(static_cast<TaskRef>(made));
      }
    }
    return use(static_cast<TaskRef>(*tasks_[index]));
  }

  // A task read from the input is freed (with its arguments) once it ran.
  void done_with_task(std::size_t index) noexcept {
    if constexpr (!kInPlace) {
      if (!indexed_) tasks_[index].reset();
    }
  }

  void make_dense_values() {
    std::call_once(values_made_, [this] { values_.resize(static_cast<std::size_t>(std::ranges::size(view_))); });
  }

  template <class V>
  void store(std::size_t index, V&& value) {
    if constexpr (kDense) {
      if (this->settings().outcomes_per_task) make_dense_values();
      values_[index] = std::forward<V>(value);
    } else {
      values_[index].emplace(std::forward<V>(value));
    }
  }

  void grow_to(std::size_t count) {
    tasks_.grow_to(count);
    if constexpr (!kDense && !kNoValue) values_.grow_to(count);
  }

  View view_;
  std::ranges::iterator_t<View> next_;
  std::ranges::sentinel_t<View> end_;
  std::size_t read_ = 0;
  bool indexed_ = false;  // tasks are made from first_ where they run, not held in tasks_
  [[no_unique_address]]
  typename std::conditional_t<kIndexable, IteratorOf<Indexed>, std::type_identity<std::monostate>>::type first_{};
  StableVector<HeldTask> tasks_;
  Values values_;
  [[no_unique_address]] std::conditional_t<kDense, std::once_flag, std::monostate> values_made_;
};

}  // namespace joblet::detail
