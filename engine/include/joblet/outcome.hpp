#pragma once
/// @file
/// Outcome<R>: what one task produced — its value or its error. Parallel returns outcomes
/// instead of throwing when asked to keep going (return_as::list.keep_going()).

#include <exception>
#include <string>
#include <utility>
#include <variant>

#include "joblet/error.hpp"

namespace joblet {

/// What one task produced: its value of type R, or the exception it threw. A task that returns
/// void gives an Outcome<std::monostate>.
template <class R>
class Outcome {
 public:
  /// A success holding `value` (implicit, so that a value converts).
  Outcome(R value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  /// A failure holding `error`, which should not be null.
  Outcome(std::exception_ptr error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  /// Whether the task succeeded: value() returns instead of throwing.
  bool ok() const noexcept { return state_.index() == 0; }
  /// Whether the task succeeded, as ok().
  explicit operator bool() const noexcept { return ok(); }

  /// The value; rethrows the task's error when there is none.
  R& value() & {
    if (!ok()) std::rethrow_exception(error());
    return std::get<0>(state_);
  }
  /// The value of a const outcome; rethrows the task's error when there is none.
  const R& value() const& {
    if (!ok()) std::rethrow_exception(error());
    return std::get<0>(state_);
  }
  /// The value, to move from; rethrows the task's error when there is none.
  R&& value() && {
    if (!ok()) std::rethrow_exception(error());
    return std::move(std::get<0>(state_));
  }

  /// The error; null when the task succeeded. Rethrow it to inspect its type.
  std::exception_ptr error() const noexcept { return ok() ? nullptr : std::get<1>(state_); }
  /// The error's message, or an empty string when the task succeeded.
  std::string error_message() const { return ok() ? std::string() : detail::describe_exception(error()); }

 private:
  std::variant<R, std::exception_ptr> state_;
};

}  // namespace joblet
