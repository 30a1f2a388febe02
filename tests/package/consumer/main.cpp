// Built with -Werror -Wall -Wextra: joblet's headers must not warn in a user's build, tasks held
// in a std::vector included.
#include <joblet/joblet.hpp>

#include <unistd.h>

#include <complex>
#include <cstdio>
#include <filesystem>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

int main() {
  auto tasks = std::views::iota(0, 100) |
               std::views::transform([](int i) { return joblet::delayed([](int x) { return x * x; }, i); });
  long sum = 0;
  for (const char* backend : {"threads", "processes"}) {
    for (int square : joblet::Parallel({.n_jobs = 2, .backend = backend})(tasks)) sum += square;
  }
  std::vector<joblet::Delayed<int (*)(int), int>> held;
  for (int i = 0; i < 100; ++i)
    held.push_back(joblet::delayed(
        +[](int x) { return x + 1; }, i));
  for (int value : joblet::Parallel({.n_jobs = 2})(held)) sum += value;
  // Memory, the codec and the exception registry, instantiated in a user's build too.
  joblet::register_exception<std::domain_error>();
  const auto dir = std::filesystem::temp_directory_path() / ("joblet-consumer-" + std::to_string(getpid()));
  joblet::Memory memory(dir);
  auto twice = memory.cache("twice", [](const std::vector<std::complex<double>>& z) {
    std::vector<std::complex<double>> out;
    for (const auto& x : z) out.push_back(2.0 * x);
    return out;
  });
  const auto doubled = twice(std::vector<std::complex<double>>{{1, 2}});
  joblet::dump(doubled, dir / "doubled.h5");
  const bool round_trip = joblet::load<std::vector<std::complex<double>>>(dir / "doubled.h5") == doubled;
  std::filesystem::remove_all(dir);
  std::printf("%ld\n", sum);
  return sum == 2 * 328350 + 5050 && round_trip && doubled.front() == std::complex<double>(2, 4) ? 0 : 1;
}
