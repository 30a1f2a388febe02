// map: joblet::map(f, inputs, config) is Parallel(config)(delayed(f, x) for x in inputs), for
// the common case of one function over a list of inputs.
#include <joblet/joblet.hpp>

#include <cstdio>
#include <numeric>
#include <ranges>
#include <string>
#include <vector>

// Collatz stopping time: cheap per call, wildly uneven between inputs, which is what
// dynamic scheduling (workers claiming batches of indices) is for.
int collatz_steps(long long n) {
  int steps = 0;
  for (; n != 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
  return steps;
}

int main() {
  // Inputs held by a container are used in place: map never copies them.
  std::vector<long long> starts(100'000);
  std::iota(starts.begin(), starts.end(), 1);
  std::vector<int> steps = joblet::map(collatz_steps, starts, {.n_jobs = -1});

  std::size_t longest = 0;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    if (steps[i] > steps[longest]) longest = i;
  }
  std::printf("below %zu, %lld takes the most steps: %d\n", starts.size() + 1, starts[longest], steps[longest]);

  // Inputs computed on the fly (a view) are kept by value inside each task instead.
  auto words = joblet::map([](int i) { return std::string(static_cast<std::size_t>(i), '*'); }, std::views::iota(1, 6),
                           {.n_jobs = 2});
  for (const std::string& word : words) std::printf("%s\n", word.c_str());

  // Any callable works, with any config: here forked workers, whose results are encoded.
  auto lengths =
      joblet::map([](const std::string& s) { return s.size(); }, words, {.n_jobs = 2, .backend = "processes"});
  std::printf("lengths: %zu %zu %zu %zu %zu\n", lengths[0], lengths[1], lengths[2], lengths[3], lengths[4]);
  return steps[26] == 111 ? 0 : 1;  // 27 is famous for taking 111 steps
}
