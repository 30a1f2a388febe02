// Forking workers while other threads of the program log and allocate: the
// children must not inherit a held lock and hang.
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <joblet/detail/log.hpp>
#include <joblet/detail/sanitizers.hpp>
#include <joblet/joblet.hpp>

#include <atomic>
#include <latch>
#include <ranges>
#include <thread>

#include "../support.hpp"

namespace {

// GCC 12's AddressSanitizer does not hold its allocator's locks across fork() (LLVM added that
// in release 17): a child forked while another thread is inside malloc hangs in the sanitizer,
// whatever the program does (seen here: every child waiting in SizeClassAllocator64). Under
// ASan the noise threads still take every joblet lock but allocate nothing once started.
constexpr bool kNoiseAllocates = !joblet::detail::kAddressSanitizer;

TEST(ForkSafety, ForkingWhileOtherThreadsLogAndAllocate) {
  auto logger = joblet::logger();
  auto saved_sinks = logger->sinks();
  auto saved_level = logger->level();
  logger->sinks().assign(1, std::make_shared<spdlog::sinks::null_sink_mt>());
  logger->set_level(spdlog::level::info);

  // Restores the logger once the noise threads are gone (they use its sinks).
  struct Restore {
    std::shared_ptr<spdlog::logger> logger;
    std::vector<spdlog::sink_ptr> sinks;
    spdlog::level::level_enum level;
    ~Restore() {
      logger->sinks() = sinks;
      logger->set_level(level);
    }
  } restore{logger, saved_sinks, saved_level};
  std::atomic<bool> stop{false};
  std::vector<std::thread> noise;
  // Joins the noise threads however the test ends (a failed ASSERT returns early).
  struct Joiner {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~Joiner() {
      stop = true;
      for (auto& thread : threads) thread.join();
    }
  } joiner{stop, noise};
  (void)joblet::detail::first_time("noise-0");  // the one key a non-allocating thread uses
  std::latch started(3);                        // a starting thread allocates (its stack, the sanitizers' state)
  for (int t = 0; t < 3; ++t) {
    noise.emplace_back([&stop, &started, t] {
      std::vector<std::vector<char>> blocks;
      started.count_down();
      while (!stop.load(std::memory_order_relaxed)) {
        joblet::detail::log().info("noise from thread {}", t);
        if constexpr (kNoiseAllocates) {
          blocks.emplace_back(1000 + t * 37);
          if (blocks.size() > 64) blocks.clear();
        }
        (void)joblet::detail::first_time("noise-" + std::to_string(blocks.size()));  // short: no allocation
      }
    });
  }
  // Children log (to stderr: see reinitialize_after_fork) and make nested calls, which take
  // the registry and first_time locks.
  started.wait();
  joblet::testing::CapturedFd quiet(STDERR_FILENO);
  for (int round = 0; round < 40; ++round) {
    auto out = joblet::Parallel({.n_jobs = 2, .backend = "processes"})(
        std::views::iota(0, 8) | std::views::transform([](int i) {
          return [i] {
            joblet::detail::log().info("task {} in a worker", i);
            auto inner = joblet::Parallel({.n_jobs = 2, .backend = "threads"})(
                std::views::iota(0, 3) | std::views::transform([i](int k) { return [i, k] { return i + k; }; }));
            return inner[2];
          };
        }));
    for (int i = 0; i < 8; ++i) ASSERT_EQ(out[i], i + 2);
  }
}

}  // namespace
