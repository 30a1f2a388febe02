// parallel_basics: joblib's  Parallel(n_jobs=-1)(delayed(f)(x) for x in inputs)  in C++.
//
// delayed(f, args...) stores the call instead of making it; Parallel runs the stored calls on
// its workers and returns their results as a std::vector, in input order whatever the order
// they finished in.
#include <joblet/joblet.hpp>

#include <cmath>
#include <cstdio>
#include <ranges>
#include <vector>

// A named function with value arguments: the easiest kind of task to reason about, and the
// kind a disk cache (joblet::Memory) can key on later.
double integrate_sin(double a, double b, int steps) {
  const double h = (b - a) / steps;
  double sum = 0;
  for (int i = 0; i < steps; ++i) sum += std::sin(a + (i + 0.5) * h);  // midpoint rule
  return sum * h;
}

int main() {
  constexpr double kPi = 3.14159265358979323846;
  // One task per slice of [0, pi]: the slices add up to the integral, 2.
  auto tasks = std::views::iota(0, 8) | std::views::transform([&](int i) {
                 return joblet::delayed(integrate_sin, i * kPi / 8, (i + 1) * kPi / 8, 200'000);
               });

  // n_jobs = -1: every CPU this process may use (affinity mask and cgroup quota, not the
  // node's core count). Unset, n_jobs would be 1, as in joblib.
  joblet::Parallel parallel({.n_jobs = -1});
  std::vector<double> slices = parallel(tasks);

  double total = 0;
  for (std::size_t i = 0; i < slices.size(); ++i) {
    std::printf("slice %zu: %.9f\n", i, slices[i]);
    total += slices[i];
  }
  std::printf("integral of sin over [0, pi] = %.9f (exact: 2), backend %s with %d workers\n", total,
              parallel.backend_name().c_str(), parallel.n_workers());

  // Tasks may also be lambdas that return nothing. These write to the caller's memory, so
  // they require shared memory: that keeps them on threads even under JOBLET_BACKEND=processes.
  // No lock is needed: no two tasks touch the same element.
  std::vector<int> squares(10);
  joblet::Parallel({.n_jobs = -1, .require = joblet::Require::sharedmem})(
      std::views::iota(0, 10) | std::views::transform([&squares](int i) {
        return [&squares, i] { squares[static_cast<std::size_t>(i)] = i * i; };
      }));
  std::printf("squares[9] = %d\n", squares[9]);
  return total > 1.999 && total < 2.001 && squares[9] == 81 ? 0 : 1;
}
