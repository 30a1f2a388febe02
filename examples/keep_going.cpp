// keep_going: by default the first failing task cancels the call and its exception is
// rethrown. In a sweep where a few parameter sets are invalid, you usually want every
// result that could be computed instead: .keep_going() returns one Outcome per task.
#include <joblet/joblet.hpp>

#include <cmath>
#include <cstdio>
#include <ranges>
#include <stdexcept>
#include <vector>

double checked_sqrt(double x) {
  if (x < 0) throw std::domain_error("sqrt of a negative number: " + std::to_string(x));
  return std::sqrt(x);
}

int main() {
  const std::vector<double> inputs{4, -1, 9, -16, 25};
  auto tasks = inputs | std::views::transform([](double x) { return joblet::delayed(checked_sqrt, x); });

  std::vector<joblet::Outcome<double>> outcomes =
      joblet::Parallel({.n_jobs = 2, .backend = "threads"})(tasks, joblet::return_as::list.keep_going());

  int failures = 0;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (outcomes[i]) {
      std::printf("sqrt(%g) = %g\n", inputs[i], outcomes[i].value());
    } else {
      ++failures;
      std::printf("sqrt(%g) failed: %s\n", inputs[i], outcomes[i].error_message().c_str());
    }
  }

  // The exception travels in the Outcome, as its own type (joblet/exceptions.hpp says which
  // types keep it across processes): rethrow it to handle it by type.
  try {
    std::rethrow_exception(outcomes[1].error());
  } catch (const std::domain_error& e) {
    std::printf("outcome 1 holds a std::domain_error\n");
  }

  // Generators keep going too: each item is an Outcome, yielded as it comes.
  int ok = 0;
  for (const auto& outcome : joblet::Parallel({.n_jobs = 2})(tasks, joblet::return_as::generator.keep_going())) {
    ok += outcome.ok() ? 1 : 0;
  }
  std::printf("%d failed, %d succeeded\n", failures, ok);
  return failures == 2 && ok == 3 ? 0 : 1;
}
