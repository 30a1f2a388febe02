// core's one signal dispatcher, and the graceful stop that listens through it. Each case runs in
// a forked child: signal dispositions are process-wide.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <joblet/detail/signals.hpp>
#include <joblet/detail/stop.hpp>

#include <atomic>

namespace {

// Runs `body` in a forked child; returns its wait status.
template <class Body>
int in_child(Body body) {
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(20);  // a hang ends the child instead of the suite
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

std::atomic<int> g_heard{0};

// Two listeners of SIGUSR2 (adding 1 and 10 to g_heard), the second one handling it or not;
// then raises it and returns whether both heard it.
int raise_to_two_listeners(bool second_handles) {
  joblet::detail::listen_to_signal(SIGUSR2, [](int) noexcept {
    g_heard.fetch_add(1);
    return false;
  });
  if (second_handles) {
    joblet::detail::listen_to_signal(SIGUSR2, [](int) noexcept {
      g_heard.fetch_add(10);
      return true;
    });
  } else {
    joblet::detail::listen_to_signal(SIGUSR2, [](int) noexcept {
      g_heard.fetch_add(10);
      return false;
    });
  }
  raise(SIGUSR2);
  return g_heard.load() == 11 ? 0 : 4;
}

TEST(Signals, EveryListenerHearsTheSignalThenItTakesItsCourse) {
  const int status = in_child([] { return raise_to_two_listeners(false); });
  // Nobody handled it: its default action ended the process.
  ASSERT_TRUE(WIFSIGNALED(status)) << "exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGUSR2);
}

TEST(Signals, AListenerThatHandlesTheSignalKeepsTheProcessAlive) {
  const int status = in_child([] { return raise_to_two_listeners(true); });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "4: not every listener heard it";
}

TEST(GracefulStop, SigtermDuringACallAsksItToStop) {
  const int status = in_child([] {
    joblet::detail::enable_graceful_stop();
    joblet::detail::RunningCall call;
    raise(SIGTERM);
    return joblet::detail::stop_requested() && joblet::detail::stop_signal() == SIGTERM ? 0 : 5;
  });
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(GracefulStop, SigtermWithNoCallRunningEndsTheProgramAsItWouldWithoutJoblet) {
  const int status = in_child([] {
    joblet::detail::enable_graceful_stop();
    raise(SIGTERM);
    return 6;
  });
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

std::atomic<bool> g_program_handler_ran{false};

TEST(GracefulStop, AProgramsOwnHandlerIsLeftAlone) {
  const int status = in_child([] {
    struct sigaction own {};
    own.sa_handler = [](int) { g_program_handler_ran.store(true); };
    sigemptyset(&own.sa_mask);
    sigaction(SIGTERM, &own, nullptr);
    joblet::detail::enable_graceful_stop();
    joblet::detail::RunningCall call;
    raise(SIGTERM);
    return g_program_handler_ran.load() && !joblet::detail::stop_requested() ? 0 : 7;
  });
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
