// Call observers: what they see of each call, the registry's rules, and campaigns (calls whose
// tasks all call one cached function).
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <ranges>
#include <set>
#include <stdexcept>
#include <vector>

#include "../support.hpp"

namespace {

struct Recorder : joblet::CallObserver {
  void on_call_start(joblet::CallStart& call) override {
    ++starts;
    size = call.size();
    input_complete = call.input_complete();
    backend = call.backend_name();
    n_workers = call.n_workers();
    nested = call.nested();
    campaign = call.campaign() != nullptr;
  }
  void on_task_done(const joblet::TaskDone& task) override {
    done.insert(task.index);
    failed += task.failed ? 1 : 0;
  }
  void on_call_end(const joblet::CallEnd& end) override {
    ++ends;
    last_end = end;
  }
  int starts = 0, ends = 0;
  std::size_t size = 0;
  bool input_complete = false, nested = false, campaign = false;
  std::string backend;
  int n_workers = 0;
  std::set<std::size_t> done;
  std::size_t failed = 0;
  joblet::CallEnd last_end;
};

// Adds an observer for the scope of a test.
template <class O>
struct Observing {
  Observing() : observer(std::make_shared<O>()) { joblet::add_call_observer(observer); }
  ~Observing() { joblet::remove_call_observer(observer); }
  std::shared_ptr<O> observer;
};

auto squares(int n) {
  return std::views::iota(0, n) |
         std::views::transform([](int i) { return joblet::delayed([](int x) { return x * x; }, i); });
}

TEST(Observers, SeeEveryCallStartEachTaskAndTheEndOnEveryBackend) {
  for (const std::string& backend : joblet::testing::kBackends) {
    SCOPED_TRACE(backend);
    Observing<Recorder> watch;
    const auto results = joblet::Parallel({.n_jobs = 2, .backend = backend})(squares(25));
    ASSERT_EQ(results.size(), 25u);
    const Recorder& seen = *watch.observer;
    EXPECT_EQ(seen.starts, 1);
    EXPECT_EQ(seen.size, 25u);
    EXPECT_TRUE(seen.input_complete);
    EXPECT_EQ(seen.backend, backend);
    EXPECT_EQ(seen.n_workers, backend == "sequential" ? 1 : 2);
    EXPECT_FALSE(seen.nested);
    EXPECT_FALSE(seen.campaign);
    EXPECT_EQ(seen.done.size(), 25u);
    EXPECT_EQ(seen.ends, 1);
    EXPECT_EQ(seen.last_end.tasks, 25u);
    EXPECT_EQ(seen.last_end.done, 25u);
    EXPECT_EQ(seen.last_end.failed, 0u);
    EXPECT_EQ(seen.last_end.stop_signal, 0);
  }
}

TEST(Observers, SeeFailuresAndAGeneratorDroppedBeforeItsEnd) {
  Observing<Recorder> watch;
  auto tasks = std::views::iota(0, 6) | std::views::transform([](int i) {
                 return joblet::delayed(
                     [](int x) {
                       if (x % 3 == 0) throw std::runtime_error("bad");
                       return x;
                     },
                     i);
               });
  const auto outcomes = joblet::Parallel({.n_jobs = 2})(tasks, joblet::return_as::list.keep_going());
  EXPECT_EQ(outcomes.size(), 6u);
  EXPECT_EQ(watch.observer->failed, 2u);
  EXPECT_EQ(watch.observer->last_end.failed, 2u);

  {
    auto generator = joblet::Parallel({.n_jobs = 2})(squares(1000), joblet::return_as::generator);
    for (int value : generator) {
      (void)value;
      break;
    }
  }
  EXPECT_EQ(watch.observer->starts, 2);
  EXPECT_EQ(watch.observer->ends, 2) << "a dropped generator still ends its call for observers";
}

TEST(Observers, NestedCallsSayTheyAreNested) {
  Observing<Recorder> watch;
  std::atomic<int> nested_starts{0};
  struct NestedCounter : joblet::CallObserver {
    std::atomic<int>* count = nullptr;
    void on_call_start(joblet::CallStart& call) override { *count += call.nested() ? 1 : 0; }
  };
  auto counter = std::make_shared<NestedCounter>();
  counter->count = &nested_starts;
  joblet::add_call_observer(counter);
  joblet::Parallel({.n_jobs = 2, .backend = "sequential"})(std::views::iota(0, 3) | std::views::transform([](int) {
                                                             return
                                                                 [] { return joblet::Parallel()(squares(3)).size(); };
                                                           }));
  joblet::remove_call_observer(counter);
  EXPECT_EQ(nested_starts.load(), 3);
}

TEST(Observers, AnExceptionFromOnCallStartFailsTheCallBeforeAnyTask) {
  struct Refuser : joblet::CallObserver {
    void on_call_start(joblet::CallStart&) override { throw joblet::ConfigError("refused by the observer"); }
  };
  Observing<Refuser> refuse;
  std::atomic<int> ran{0};
  auto tasks = std::views::iota(0, 4) | std::views::transform([&ran](int) { return [&ran] { return ++ran; }; });
  EXPECT_THROW(joblet::Parallel({.n_jobs = 2})(tasks), joblet::ConfigError);
  EXPECT_EQ(ran.load(), 0);
}

TEST(Observers, TheRegistryRefusesNullAndDuplicatesAndForgetsRemovedOnes) {
  auto recorder = std::make_shared<Recorder>();
  EXPECT_THROW(joblet::add_call_observer(nullptr), joblet::ConfigError);
  joblet::add_call_observer(recorder);
  try {
    joblet::add_call_observer(recorder);
    ADD_FAILURE() << "a duplicate was accepted";
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("added already"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(joblet::remove_call_observer(recorder));
  EXPECT_FALSE(joblet::remove_call_observer(recorder));
  joblet::Parallel()(squares(3));
  EXPECT_EQ(recorder->starts, 0);
}

struct CampaignWatcher : joblet::CallObserver {
  void on_call_start(joblet::CallStart& call) override {
    joblet::Campaign* campaign = call.campaign();
    if (campaign == nullptr) return;
    function = campaign->function();
    location = campaign->location();
    const auto all = campaign->keys();
    keys.assign(all.begin(), all.end());
    if (shard_first) {
      const std::vector<std::size_t> first{0, 2};
      campaign->run_only(first);
      for (std::size_t index = 0; index < call.size(); ++index) stored_after_shard.push_back(campaign->in_cache(index));
    }
  }
  bool shard_first = false;
  std::string function;
  std::filesystem::path location;
  std::vector<joblet::Hash128> keys;
  std::vector<bool> stored_after_shard;
};

TEST(Observers, ACallOfOneCachedFunctionIsACampaignWithItsKeys) {
  char pattern[] = "/tmp/joblet-observer-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::filesystem::path dir = pattern;
  {
    joblet::Memory memory(dir / "cache");
    auto square = memory.cache(
        "square", +[](int x) { return x * x; });
    // Elastic campaigns (launch/'s policy, on by default) would compute every task before this
    // observer runs: what is under test here is run_only alone.
    setenv("JOBLET_ELASTIC", "off", 1);
    Observing<CampaignWatcher> watch;
    watch.observer->shard_first = true;
    auto tasks = std::views::iota(0, 4) | std::views::transform([&](int i) { return joblet::delayed(square, i); });
    const auto results = joblet::Parallel({.n_jobs = 2})(tasks);
    EXPECT_EQ(results, (std::vector<int>{0, 1, 4, 9}));
    EXPECT_EQ(watch.observer->function, "square");
    EXPECT_EQ(watch.observer->location, dir / "cache");
    ASSERT_EQ(watch.observer->keys.size(), 4u);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(watch.observer->keys[i], square.key(i));
    EXPECT_EQ(watch.observer->stored_after_shard, (std::vector<bool>{true, false, true, false}))
        << "run_only computes exactly the tasks it is given";
    unsetenv("JOBLET_ELASTIC");

    // Tasks of two cached functions, or of a Memory that stores nothing, are no campaign.
    auto cube = memory.cache(
        "cube", +[](int x) { return x * x * x; });
    Observing<Recorder> plain;
    std::vector<joblet::Delayed<decltype(square), int>> mixed{joblet::delayed(square, 1), joblet::delayed(cube, 2)};
    joblet::Parallel()(mixed);
    EXPECT_FALSE(plain.observer->campaign);
    joblet::Memory nowhere(std::nullopt);
    auto uncached = nowhere.cache("square", [](int x) { return x * x; });
    joblet::Parallel()(std::views::iota(0, 2) |
                       std::views::transform([&](int i) { return joblet::delayed(uncached, i); }));
    EXPECT_FALSE(plain.observer->campaign);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
