#pragma once
// TypedJob: the typed half of a parallel call. It reads tasks from the user's range, runs
// them, and keeps one slot per task for its result or error. Everything else about the call
// (scheduling, waiting, errors, progress) is the non-template Job/CallDriver code.

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

#include "joblet/backend.hpp"
#include "joblet/codec.hpp"
#include "joblet/detail/stable_vector.hpp"
#include "joblet/detail/task_scope.hpp"
#include "joblet/outcome.hpp"

namespace joblet::detail {

// What a task's result is stored as: void becomes std::monostate, references are copied.
template <class T>
using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, std::remove_cvref_t<T>>;

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

  struct Slot {
    std::conditional_t<kInPlace, std::remove_reference_t<Reference>*, std::optional<Task>> task{};
    std::optional<Stored<Result>> value;
    std::exception_ptr error;
    std::atomic<std::uint8_t> state{kPending};
  };

 public:
  using Value = Stored<Result>;
  using TaskType = Task;

  // Reads the whole input now when `read_all` (exceptions from the range propagate to the
  // caller); otherwise workers read it as they claim tasks.
  TypedJob(View view, JobSettings settings, bool read_all)
      : Job(std::move(settings)), view_(std::move(view)), next_(std::ranges::begin(view_)), end_(std::ranges::end(view_)) {
    if constexpr (std::ranges::sized_range<View>) slots_.grow_to(static_cast<std::size_t>(std::ranges::size(view_)));
    if (read_all) {
      bool exhausted = false;
      set_complete_input(read_input(static_cast<std::size_t>(-1), exhausted));
    }
  }

  void run_encoded(std::size_t index, std::string& out, detail::ArrayWriter* arrays) noexcept override {
    TaskScope scope;
    const std::size_t start = out.size();
    try {
      if constexpr (Encodable<Value>) {
        out.push_back('\0');
        if constexpr (std::is_void_v<Result>) {
          std::invoke(task(index));
        } else {
          encode_into<Value>(std::invoke(task(index)), out, arrays);
        }
      } else {
        throw SerializationError("the result type " + result_type_name() + " cannot be encoded");
      }
    } catch (...) {
      out.resize(start);
      encode_error(std::current_exception(), out);
    }
  }

  bool results_encodable() const noexcept override { return Encodable<Value>; }
  std::string result_type_name() const override { return demangle(typeid(Value).name()); }
  std::exception_ptr error(std::size_t index) const override { return slots_[index].error; }

  // The task at `index` (read from the input already).
  const Task& task_at(std::size_t index) const { return *slots_[index].task; }

  // --- for the front end, after the task finished ---
  Value take_value(std::size_t index) {
    Slot& slot = slots_[index];
    Value value = std::move(*slot.value);
    slot.value.reset();
    return value;
  }
  Outcome<Value> take_outcome(std::size_t index) {
    if (failed(index)) return Outcome<Value>(slots_[index].error);
    return Outcome<Value>(take_value(index));
  }

 protected:
  std::size_t read_input(std::size_t count, bool& exhausted) override {
    std::size_t read = read_;
    while (read < count && next_ != end_) {
      slots_.grow_to(read + 1);
      Slot& slot = slots_[read];
      if constexpr (kInPlace) {
        slot.task = std::addressof(*next_);
      } else {
        slot.task.emplace(*next_);
      }
      ++next_;
      ++read;
    }
    exhausted = next_ == end_;
    read_ = read;
    return read;
  }

  bool run_task(std::size_t index) noexcept override {
    TaskScope scope;
    Slot& slot = slots_[index];
    std::exception_ptr failure;
    try {
      if constexpr (std::is_void_v<Result>) {
        std::invoke(task(index));
        slot.value.emplace();
      } else {
        slot.value.emplace(std::invoke(task(index)));
      }
    } catch (...) {
      failure = std::current_exception();
    }
    if constexpr (!kInPlace) slot.task.reset();  // free the task's arguments now
    return record(slot, std::move(failure));
  }

  bool store_encoded(std::size_t index, std::span<const std::byte> bytes, detail::ArrayReader* arrays) override {
    if constexpr (Encodable<Value>) {
      Value value = decode_from<Value>(bytes, arrays);
      Slot& slot = slots_[index];
      std::uint8_t expected = kPending;
      if (!slot.state.compare_exchange_strong(expected, kWriting, std::memory_order_acq_rel)) return false;
      slot.value.emplace(std::move(value));
      slot.state.store(kSucceeded, std::memory_order_release);
      return true;
    } else {
      throw SerializationError("the result type " + result_type_name() + " cannot be decoded");
    }
  }

  bool store_error(std::size_t index, std::exception_ptr error) override {
    return record(slots_[index], std::move(error));
  }

  std::uint8_t state(std::size_t index) const noexcept override {
    return slots_[index].state.load(std::memory_order_acquire);
  }

 private:
  TaskRef task(std::size_t index) {
    if constexpr (kInPlace) {
      return *slots_[index].task;
    } else {
      return *slots_[index].task;
    }
  }

  // The first outcome recorded for a slot wins: a task finishing after its timeout was
  // reported loses, and its result is dropped.
  static bool record(Slot& slot, std::exception_ptr failure) noexcept {
    std::uint8_t expected = kPending;
    if (!slot.state.compare_exchange_strong(expected, kWriting, std::memory_order_acq_rel)) return false;
    if (failure) {
      slot.error = std::move(failure);
      slot.state.store(kFailed, std::memory_order_release);
    } else {
      slot.state.store(kSucceeded, std::memory_order_release);
    }
    return true;
  }

  View view_;
  std::ranges::iterator_t<View> next_;
  std::ranges::sentinel_t<View> end_;
  std::size_t read_ = 0;
  StableVector<Slot> slots_;
};

}  // namespace joblet::detail
