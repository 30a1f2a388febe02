#pragma once
/// @file
/// delayed(f, args...): a call to make later, like joblib.delayed(f)(*args). The function and
/// its arguments are stored by value; the call happens in whichever worker runs the task.

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace joblet {

/// A task made by delayed(): a function of type F and its arguments, held by value, to call later.
template <class F, class... Args>
class Delayed {
 public:
  /// What calling it returns.
  using result_type = std::invoke_result_t<F&, Args&...>;

  /// Stores `f` and `args`, copied or moved; delayed() deduces the types.
  template <class G, class... A>
  explicit Delayed(G&& f, A&&... args) : function_(std::forward<G>(f)), arguments_(std::forward<A>(args)...) {}

  /// Calls the function with the stored arguments, passed as lvalues: a function that takes them
  /// by reference may change them, and a later call sees the change.
  result_type operator()() { return std::apply(function_, arguments_); }
  /// For tasks held in a const container: the function is called with const arguments.
  decltype(auto) operator()() const { return std::apply(function_, arguments_); }

  /// The stored function.
  const F& function() const noexcept { return function_; }
  /// The stored arguments.
  const std::tuple<Args...>& arguments() const noexcept { return arguments_; }

 private:
  F function_;
  std::tuple<Args...> arguments_;
};

/// A task that calls `f(args...)` when a worker runs it, like joblib.delayed(f)(*args). Copies
/// of `f` and `args` (or the objects moved in) are stored, not references to the caller's
/// variables: pass std::ref or a pointer to share one. It compiles only when `f` can be called
/// with the stored arguments as lvalues.
/// @code
///   auto task = joblet::delayed(simulate, params);  // stores a copy of params
///   double result = task();                         // simulate(params)
/// @endcode
template <class F, class... Args>
  requires std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>
Delayed<std::decay_t<F>, std::decay_t<Args>...> delayed(F&& f, Args&&... args) {
  return Delayed<std::decay_t<F>, std::decay_t<Args>...>(std::forward<F>(f), std::forward<Args>(args)...);
}

}  // namespace joblet
