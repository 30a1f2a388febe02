#pragma once
/// @file
/// delayed(f, args...): a call to make later, like joblib.delayed(f)(*args). The function and
/// its arguments are stored by value; the call happens in whichever worker runs the task.

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace joblet {

template <class F, class... Args>
class Delayed {
 public:
  using result_type = std::invoke_result_t<F&, Args&...>;

  template <class G, class... A>
  explicit Delayed(G&& f, A&&... args) : function_(std::forward<G>(f)), arguments_(std::forward<A>(args)...) {}

  result_type operator()() { return std::apply(function_, arguments_); }
  /// For tasks held in a const container: the function is called with const arguments.
  decltype(auto) operator()() const { return std::apply(function_, arguments_); }

  const F& function() const noexcept { return function_; }
  const std::tuple<Args...>& arguments() const noexcept { return arguments_; }

 private:
  F function_;
  std::tuple<Args...> arguments_;
};

template <class F, class... Args>
  requires std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>
Delayed<std::decay_t<F>, std::decay_t<Args>...> delayed(F&& f, Args&&... args) {
  return Delayed<std::decay_t<F>, std::decay_t<Args>...>(std::forward<F>(f), std::forward<Args>(args)...);
}

}  // namespace joblet
