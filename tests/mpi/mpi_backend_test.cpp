// The mpi backend on real ranks: the same results as a sequential loop on every rank, errors
// on every rank, mismatched calls detected.
//
// A failure on one rank must not hang the others: before any collective (a Parallel call, an
// MPI call) checks are EXPECTs, never ASSERT, FAIL or return, and values a failed call may have
// left short are looked at only when they are there. An ASSERT comes after a test's last
// collective, or tests a value every rank shares (one broadcast), so that all ranks leave
// together. (mpi_main.cpp's checkpoint after every test releases ranks waiting in a Parallel
// call that another rank skipped, but not ranks waiting in an MPI call.)
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>
#include <joblet/joblet.hpp>
#include <joblet/mpi.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}
int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

struct Item {
  int index = 0;
  int computed_on = -1;
  std::vector<double> values;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(index, computed_on, values);
  }
};

auto item_tasks(int n) {
  return std::views::iota(0, n) | std::views::transform([](int i) {
           return [i] {
             Item item{i, world_rank(), {}};
             for (int k = 0; k < i % 5; ++k) item.values.push_back(i + 0.25 * k);
             return item;
           };
         });
}

// A folder every rank sees: rank 0 makes it in $TMPDIR (else /tmp) and tells the others. On one
// node any folder will do; across nodes TMPDIR must name a shared filesystem (tests/cluster runs
// this suite so). Collective; empty on every rank if it could not be made.
std::string make_shared_folder(const std::string& name = "test") {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string folder =
      std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") + "/joblet-mpi-" + name + "-XXXXXX";
  unsigned long long length = folder.size();
  MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);  // TMPDIR may differ between ranks
  folder.resize(length);
  if (world_rank() == 0 && mkdtemp(folder.data()) == nullptr) folder.assign(folder.size(), '\0');
  MPI_Bcast(folder.data(), static_cast<int>(folder.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
  return folder[0] == '\0' ? std::string() : folder;
}

// Collective, after the last use of the folder on every rank.
void remove_shared_folder(const std::string& folder) {
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove_all(folder);
}

// n tasks, each of which returns only once every rank has started one (each rank says so with a
// file in `folder`), so that no rank can run them all alone, however fast it is. Loosely bounded
// (a minute for the whole call): a rank that never got a task then shows in the results.
auto tasks_every_rank_starts(int n, const std::string& folder) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  const int ranks = world_size();
  const auto started = [folder](int rank) {
    return std::filesystem::path(folder) / ("started-" + std::to_string(rank));
  };
  return std::views::iota(0, n) | std::views::transform([give_up, ranks, started](int i) {
           return [i, give_up, ranks, started] {
             const int rank = world_rank();
             std::ofstream(started(rank)).put('x');
             const auto every_rank_started = [&] {
               for (int r = 0; r < ranks; ++r) {
                 if (!std::filesystem::exists(started(r))) return false;
               }
               return true;
             };
             while (!every_rank_started() && std::chrono::steady_clock::now() < give_up) {
               std::this_thread::sleep_for(std::chrono::milliseconds(1));
             }
             return Item{i, rank, {}};
           };
         });
}

// Its ASSERTs leave this function only, not the test.
void expect_items(const std::vector<Item>& items, int n) {
  ASSERT_EQ(items.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(items[i].index, i);
    ASSERT_EQ(items[i].values.size(), static_cast<std::size_t>(i % 5));
    for (int k = 0; k < i % 5; ++k) EXPECT_DOUBLE_EQ(items[i].values[k], i + 0.25 * k);
  }
}

TEST(Mpi, SessionMadeMpiTheDefault) {
  EXPECT_EQ(joblet::default_backend(), "mpi");
  EXPECT_EQ(joblet::Parallel().backend_name(), "mpi");
  EXPECT_EQ(joblet::Parallel().n_workers(), world_size());
}

TEST(Mpi, ListEqualsTheSequentialMapOnEveryRank) {
  joblet::Parallel parallel({.backend = "mpi"});
  EXPECT_EQ(parallel.n_workers(), world_size());
  for (int n : {0, 1, 7, 500}) {
    SCOPED_TRACE(n);
    expect_items(parallel(item_tasks(n)), n);
  }
}

TEST(Mpi, EveryRankComputes) {
  const std::string folder = make_shared_folder();
  ASSERT_FALSE(folder.empty()) << "rank 0 could not make a folder";  // on every rank
  auto items = joblet::Parallel({.backend = "mpi", .batch_size = 1})(tasks_every_rank_starts(8 * world_size(), folder));
  std::vector<int> per_rank(world_size(), 0);
  for (const Item& item : items) ++per_rank[item.computed_on];
  for (int r = 0; r < world_size(); ++r) EXPECT_GT(per_rank[r], 0) << "rank " << r << " computed nothing";
  remove_shared_folder(folder);
}

// Tasks of a few µs at batch size 1: ranks other than 0 run them on their calling thread, with
// two claims in flight, and hold their results for a claim to carry (mpi_run.cpp).
TEST(Mpi, TinyTasksOneAtATimeGiveEveryResultOnEveryRank) {
  constexpr int n = 20000;
  joblet::Parallel parallel({.backend = "mpi", .batch_size = 1});
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    auto results = parallel(std::views::iota(0, n) | std::views::transform([](int i) {
                              return [i] { return std::pair{i * 3, world_rank()}; };
                            }));
    EXPECT_EQ(results.size(), static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < results.size(); ++i) {
      EXPECT_EQ(results[i].first, static_cast<int>(i) * 3) << i;
      EXPECT_TRUE(results[i].second >= 0 && results[i].second < world_size()) << i;
    }
  }
  int streamed = 0;
  for (auto&& [index, value] :
       parallel(std::views::iota(0, n) | std::views::transform([](int i) { return [i] { return i; }; }),
                joblet::return_as::generator_unordered)) {
    EXPECT_EQ(value, static_cast<int>(index));
    ++streamed;
  }
  EXPECT_EQ(streamed, n);
}

// Whichever thread of a rank runs a task, a nested mpi call in it is refused: tiny tasks run on
// the calling thread of ranks other than 0.
TEST(MpiHybrid, NestedMpiCallsInTinyTasksAreRefusedOnEveryThread) {
  constexpr int n = 3000;
  auto refused = joblet::Parallel({.backend = "mpi", .batch_size = 1})(
      std::views::iota(0, n) | std::views::transform([](int) {
        return [] {
          try {
            joblet::Parallel({.backend = "mpi"})(std::views::iota(0, 1) |
                                                 std::views::transform([](int i) { return [i] { return i; }; }));
            return 0;
          } catch (const joblet::ConfigError&) {
            return 1;
          }
        };
      }));
  EXPECT_EQ(std::count(refused.begin(), refused.end(), 1), n);
}

TEST(Mpi, GeneratorsYieldEverythingOnEveryRank) {
  std::vector<Item> ordered;
  for (Item& item : joblet::Parallel({.backend = "mpi"})(item_tasks(123), joblet::return_as::generator)) {
    ordered.push_back(std::move(item));
  }
  expect_items(ordered, 123);
  std::vector<Item> unordered(123);
  int count = 0;
  for (auto& [index, item] :
       joblet::Parallel({.backend = "mpi"})(item_tasks(123), joblet::return_as::generator_unordered)) {
    unordered[index] = std::move(item);
    ++count;
  }
  EXPECT_EQ(count, 123);
  expect_items(unordered, 123);
}

TEST(Mpi, ATaskErrorIsRethrownAsItselfOnEveryRankWithItsRankAndIndex) {
  auto tasks = std::views::iota(0, 60) | std::views::transform([](int i) {
                 return [i] {
                   if (i == 41) throw std::domain_error("bad task");
                   return i;
                 };
               });
  try {
    joblet::Parallel({.backend = "mpi"})(tasks);
    ADD_FAILURE() << "expected a std::domain_error on rank " << world_rank();
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "bad task");
    const auto site = joblet::error_site(e);
    ASSERT_TRUE(site.has_value());
    EXPECT_EQ(site->task_index, 41u);
    EXPECT_GE(site->rank, 0);
    EXPECT_LT(site->rank, world_size());
    EXPECT_FALSE(site->host.empty());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "rank " << world_rank() << " caught " << e.what();
  }
  // The next call works: nothing of the failed one is left in flight.
  expect_items(joblet::Parallel({.backend = "mpi"})(item_tasks(50)), 50);
}

struct SolverDiverged : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct NeverRegistered : std::runtime_error {
  using std::runtime_error::runtime_error;
};

TEST(Mpi, RegisteredExceptionsAreRethrownAsThemselvesOnEveryRank) {
  joblet::register_exception<SolverDiverged>();  // on every rank, as a program does at startup
  auto failing_with = [](auto make_error) {
    return std::views::iota(0, 30) | std::views::transform([make_error](int i) {
             return [i, make_error] {
               if (i == 13) throw make_error();
               return i;
             };
           });
  };
  EXPECT_THROW(joblet::Parallel({.backend = "mpi"})(failing_with([] { return SolverDiverged("diverged"); })),
               SolverDiverged);
  try {
    joblet::Parallel({.backend = "mpi"})(failing_with([] { return NeverRegistered("unknown type"); }));
    ADD_FAILURE() << "expected a TaskError on rank " << world_rank();
  } catch (const joblet::TaskError& e) {
    EXPECT_NE(e.original_type().find("NeverRegistered"), std::string::npos) << e.original_type();
    EXPECT_EQ(e.original_message(), "unknown type");
    EXPECT_EQ(e.site().task_index, 13u);
    EXPECT_NE(std::string(e.what()).find("rank "), std::string::npos) << e.what();
  }
  expect_items(joblet::Parallel({.backend = "mpi"})(item_tasks(20)), 20);
}

TEST(Mpi, KeepGoingGivesEveryOutcomeOnEveryRank) {
  auto tasks = std::views::iota(0, 40) | std::views::transform([](int i) {
                 return [i] {
                   if (i % 9 == 4) throw std::invalid_argument("no " + std::to_string(i));
                   return i * 3;
                 };
               });
  auto outcomes = joblet::Parallel({.backend = "mpi"})(tasks, joblet::return_as::list.keep_going());
  ASSERT_EQ(outcomes.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(outcomes[i].ok(), i % 9 != 4) << i;
    if (outcomes[i].ok()) EXPECT_EQ(outcomes[i].value(), i * 3);
  }
}

// Config::retries on ranks: a task that throws runs again on the rank that ran it; one that fails
// every attempt fails on every rank with the list of them; max_failures is refused on every rank.
TEST(Mpi, RetriesRunAFailedTaskAgainOnItsRankAndListEveryAttempt) {
  static std::atomic<int> runs[40];
  for (auto& run : runs) run = 0;
  auto tasks = std::views::iota(0, 40) | std::views::transform([](int i) {
                 return [i] {
                   const int run = ++runs[i];
                   if (i % 10 == 3 && run == 1) throw std::runtime_error("flaky " + std::to_string(i));
                   if (i == 17) throw std::runtime_error("broken, run " + std::to_string(run));
                   return i * 3;
                 };
               });
  auto outcomes = joblet::Parallel({.backend = "mpi", .retries = 1})(tasks, joblet::return_as::list.keep_going());
  ASSERT_EQ(outcomes.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    if (i == 17) continue;
    ASSERT_TRUE(outcomes[i].ok()) << i << ": " << outcomes[i].error_message();
    EXPECT_EQ(outcomes[i].value(), i * 3);
  }
  try {
    outcomes[17].value();
    ADD_FAILURE() << "expected RetriesExhaustedError";
  } catch (const joblet::RetriesExhaustedError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("broken, run 1"), std::string::npos) << what;
    EXPECT_NE(what.find("broken, run 2"), std::string::npos) << what;
  }
  // The task ran twice on the one rank that ran it.
  EXPECT_TRUE(runs[17] == 0 || runs[17] == 2) << runs[17];
  EXPECT_THROW(joblet::Parallel({.backend = "mpi", .max_failures = 3})(tasks, joblet::return_as::list.keep_going()),
               joblet::ConfigError);
}

TEST(Mpi, DifferentTaskCountsAreAnErrorOnEveryRankNotAHang) {
  const int n = world_rank() == world_size() - 1 ? 11 : 10;
  try {
    joblet::Parallel({.backend = "mpi"})(item_tasks(n));
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("different task lists"), std::string::npos) << e.what();
  }
}

// A rank with no tasks still comes to the call: the others are told, instead of waiting for it.
TEST(Mpi, AnEmptyTaskListOnOneRankIsAnErrorOnEveryRank) {
  const int n = world_rank() == 0 ? 0 : 5;
  try {
    joblet::Parallel({.backend = "mpi"})(item_tasks(n));
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("different task lists"), std::string::npos) << e.what();
  }
  // Empty on every rank: an empty result everywhere, and the ranks still in step.
  EXPECT_TRUE(joblet::Parallel({.backend = "mpi"})(item_tasks(0)).empty());
  expect_items(joblet::Parallel({.backend = "mpi"})(item_tasks(7)), 7);
}

TEST(Mpi, NJobsLimitsTheRanksThatCompute) {
  auto items = joblet::Parallel({.n_jobs = 1, .backend = "mpi"})(item_tasks(30));
  expect_items(items, 30);
  for (const Item& item : items) EXPECT_EQ(item.computed_on, 0);
}

TEST(Mpi, TimeoutsFailTheCallOnEveryRank) {
  using namespace std::chrono_literals;
  // Task 3 blocks until the call has returned (on the rank that runs it, a thread abandoned at
  // its timeout runs on); the other tasks are instant, far within the timeout even on a loaded
  // machine.
  struct Gate {
    std::atomic<bool> entered{false}, release{false}, left{false};
  };
  auto gate = std::make_shared<Gate>();
  const auto wait_for = [](const std::atomic<bool>& flag) {
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (!flag.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
    return flag.load();
  };
  auto tasks = std::views::iota(0, 10) | std::views::transform([gate, wait_for](int i) {
                 return [i, gate, wait_for] {
                   if (i == 3) {
                     gate->entered = true;
                     wait_for(gate->release);
                     gate->left = true;
                   }
                   return i;
                 };
               });
  try {
    joblet::Parallel({.backend = "mpi", .timeout = 2s, .batch_size = 1})(tasks);
    ADD_FAILURE() << "expected a TimeoutError";
  } catch (const joblet::TimeoutError& e) {
    EXPECT_EQ(e.site().task_index, 3u);
  }
  // The call did not wait for the task.
  EXPECT_FALSE(gate->left.load());
  gate->release = true;
  if (gate->entered.load()) EXPECT_TRUE(wait_for(gate->left));
}

TEST(Mpi, ResultsThatCannotBeEncodedAreRejected) {
  struct Opaque {
    int x;
  };
  auto tasks = std::views::iota(0, 3) | std::views::transform([](int i) { return [i] { return Opaque{i}; }; });
  EXPECT_THROW(joblet::Parallel({.backend = "mpi"})(tasks), joblet::ConfigError);
}

}  // namespace

namespace {

TEST(MpiHybrid, RanksSharingCpusSplitThemForThreadsCalls) {
  // Under --bind-to none every rank of this node sees every CPU: threads calls get a share.
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local = 1;
  MPI_Comm_size(node, &local);
  MPI_Comm_free(&node);
  const int share = std::max(1, joblet::cpu_count() / local);
  EXPECT_EQ(joblet::effective_n_jobs(-1), share);
  // Inside an mpi task, a nested threads call uses that share, not the whole node.
  auto inner = joblet::Parallel({.backend = "mpi"})(
      std::views::iota(0, 2 * world_size()) | std::views::transform([](int) {
        return [] { return joblet::Parallel({.n_jobs = -1, .backend = "threads"}).n_workers(); };
      }));
  for (int workers : inner) EXPECT_EQ(workers, share);
}

TEST(MpiHybrid, NestedThreadsCallsComputeInsideRankTasks) {
  auto sums =
      joblet::Parallel({.backend = "mpi"})(std::views::iota(0, 12) | std::views::transform([](int outer) {
                                             return [outer] {
                                               auto values = joblet::Parallel({.n_jobs = 2, .backend = "threads"})(
                                                   std::views::iota(0, 100) | std::views::transform([outer](int i) {
                                                     return [outer, i] { return outer * i; };
                                                   }));
                                               long sum = 0;
                                               for (int v : values) sum += v;
                                               return sum;
                                             };
                                           }));
  for (int outer = 0; outer < 12; ++outer) EXPECT_EQ(sums[outer], outer * 4950L);
}

TEST(MpiHybrid, NestedCallsThatNameNoBackendStayInsideTheirRank) {
  // The ranks run different numbers of outer tasks, so an inner call on the mpi backend (the
  // default under a Session) would wait in collectives for ranks that never join it.
  const int n = 3 * world_size() + 1;
  auto sums = joblet::Parallel({.backend = "mpi", .batch_size = 1})(
      std::views::iota(0, n) | std::views::transform([](int outer) {
        return [outer] {
          joblet::Parallel inner({.n_jobs = 2});
          if (inner.backend_name() != "threads") return -1L;
          if (joblet::Parallel().backend_name() == "mpi") return -2L;
          auto values = inner(std::views::iota(0, 100) |
                              std::views::transform([outer](int i) { return [outer, i] { return outer * i; }; }));
          long sum = 0;
          for (int v : values) sum += v;
          return sum;
        };
      }));
  ASSERT_EQ(sums.size(), static_cast<std::size_t>(n));
  for (int outer = 0; outer < n; ++outer) EXPECT_EQ(sums[outer], outer * 4950L) << outer;
}

TEST(MpiHybrid, NestedCallsThatNameMpiAreAnErrorNotAHang) {
  auto tasks = std::views::iota(0, 2 * world_size() + 1) | std::views::transform([](int) {
                 return [] {
                   auto inner = joblet::Parallel({.backend = "mpi"})(
                       std::views::iota(0, 4) | std::views::transform([](int i) { return [i] { return i; }; }));
                   return static_cast<int>(inner.size());
                 };
               });
  try {
    joblet::Parallel({.backend = "mpi"})(tasks);
    ADD_FAILURE() << "expected a ConfigError on rank " << world_rank();
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(e.message().find("cannot use the mpi backend"), std::string::npos) << e.message();
    EXPECT_TRUE(e.site().task_index.has_value());
  }
  expect_items(joblet::Parallel({.backend = "mpi"})(item_tasks(20)), 20);
}

}  // namespace

namespace {

TEST(MpiConfig, ABadStreamRanksValueIsAnErrorOnEveryRankBeforeAnyCollective) {
  const char* launcher_value = std::getenv("JOBLET_MPI_STREAM_RANKS");
  const bool set_by_launcher = launcher_value != nullptr;
  const std::string kept = set_by_launcher ? launcher_value : "";
  for (const std::string value : {"0", "-2", "many", "4x"}) {
    SCOPED_TRACE(value);
    setenv("JOBLET_MPI_STREAM_RANKS", value.c_str(), 1);
    try {
      joblet::Parallel({.backend = "mpi"})(item_tasks(10));
      ADD_FAILURE() << "expected a ConfigError on rank " << world_rank();
    } catch (const joblet::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("JOBLET_MPI_STREAM_RANKS='" + value + "' is not valid"), std::string::npos)
          << e.what();
    }
  }
  if (set_by_launcher) {
    setenv("JOBLET_MPI_STREAM_RANKS", kept.c_str(), 1);
  } else {
    unsetenv("JOBLET_MPI_STREAM_RANKS");
  }
  // Nothing of the rejected calls is left behind: the next call works on every rank.
  expect_items(joblet::Parallel({.backend = "mpi"})(item_tasks(30)), 30);
}

}  // namespace

namespace {

TEST(MpiDelivery, ResultsToRootLeavesTheOtherRanksEmptyHanded) {
  auto items = joblet::Parallel({.backend = "mpi", .results_to = joblet::ResultsTo::root})(item_tasks(300));
  if (world_rank() == 0) {
    expect_items(items, 300);
  } else {
    EXPECT_TRUE(items.empty());
  }
  // Every rank still computed: rank 0 did not do it all alone.
  const std::string folder = make_shared_folder();
  ASSERT_FALSE(folder.empty()) << "rank 0 could not make a folder";  // on every rank
  auto where = joblet::Parallel({.backend = "mpi", .batch_size = 1, .results_to = joblet::ResultsTo::root})(
      tasks_every_rank_starts(6 * world_size(), folder));
  if (world_rank() == 0) {
    std::vector<int> per_rank(world_size(), 0);
    for (const Item& item : where) ++per_rank[item.computed_on];
    for (int r = 0; r < world_size(); ++r) EXPECT_GT(per_rank[r], 0) << "rank " << r;
  }
  // Generators on the other ranks end without yielding.
  int yielded = 0;
  for (auto& item : joblet::Parallel({.backend = "mpi", .results_to = joblet::ResultsTo::root})(
           item_tasks(50), joblet::return_as::generator)) {
    (void)item;
    ++yielded;
  }
  EXPECT_EQ(yielded, world_rank() == 0 ? 50 : 0);
  remove_shared_folder(folder);
}

TEST(MpiDelivery, FailuresReachEveryRankWhenResultsGoToTheRoot) {
  auto tasks = std::views::iota(0, 40) | std::views::transform([](int i) {
                 return [i] {
                   if (i == 23) throw std::runtime_error("twenty-three");
                   return i;
                 };
               });
  EXPECT_THROW(joblet::Parallel({.backend = "mpi", .results_to = joblet::ResultsTo::root})(tasks), std::runtime_error);
  auto outcomes = joblet::Parallel({.backend = "mpi", .results_to = joblet::ResultsTo::root})(
      tasks, joblet::return_as::list.keep_going());
  if (world_rank() == 0) {
    ASSERT_EQ(outcomes.size(), 40u);
    EXPECT_FALSE(outcomes[23].ok());
  } else {
    EXPECT_TRUE(outcomes.empty());
  }
}

}  // namespace

namespace {

TEST(MpiMemory, RanksMissingTheSameKeyComputeItOnce) {
  // Session turned compute-once on: every rank asks for the same result at the same time; one
  // computes it, the others wait for its entry and load it.
  const std::string directory = make_shared_folder("once");
  ASSERT_FALSE(directory.empty()) << "rank 0 could not make a folder";  // on every rank
  {
    joblet::Memory memory(directory);
    auto slow = memory.cache("slow_sum", [](int n) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      long sum = 0;
      for (int i = 0; i < n; ++i) sum += i;
      return sum;
    });
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_EQ(slow(1000), 499500);
    long misses = static_cast<long>(slow.statistics().misses), total = 0;
    MPI_Allreduce(&misses, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    EXPECT_EQ(total, 1) << "ranks computed the same key " << total << " times";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove_all(directory);
}

}  // namespace

namespace {

TEST(MpiLargeResults, ArraysAboveMaxNbytesTravelAsFilesEveryRankMaps) {
  // 8 tasks each returning a 2 MB array: above max_nbytes (1 MiB) they go through files in a
  // folder every rank sees, and every rank gets all of them.
  auto arrays = joblet::Parallel({.backend = "mpi", .max_nbytes = std::size_t{1} << 20})(
      std::views::iota(0, 8) | std::views::transform([](int i) {
        return [i] {
          joblet::NDArray<double> a({256, 1024});
          for (std::size_t k = 0; k < a.size(); ++k) a.mutable_data()[k] = i + static_cast<double>(k) * 1e-6;
          return a;
        };
      }));
  EXPECT_EQ(arrays.size(), 8u);
  for (int i = 0; i < static_cast<int>(arrays.size()); ++i) {
    EXPECT_EQ(arrays[i].size(), 256u * 1024u);
    if (arrays[i].size() != 256u * 1024u) continue;
    EXPECT_DOUBLE_EQ(arrays[i].data()[0], i);
    EXPECT_DOUBLE_EQ(arrays[i].data()[arrays[i].size() - 1], i + static_cast<double>(arrays[i].size() - 1) * 1e-6);
  }
  // The same through messages only, for comparison: identical values.
  auto through_messages = joblet::Parallel({.backend = "mpi", .max_nbytes = joblet::disable_memmapping})(
      std::views::iota(0, 2) | std::views::transform([](int i) {
        return [i] { return joblet::NDArray<double>::from(std::vector<double>(300000, i), {300000}); };
      }));
  ASSERT_EQ(through_messages.size(), 2u);
  ASSERT_EQ(through_messages[1].size(), 300000u);
  EXPECT_DOUBLE_EQ(through_messages[1].data()[299999], 1.0);
}

TEST(MpiLargeResults, TheResultFolderIsRemovedAfterTheCall) {
  const std::string folder = make_shared_folder("results");
  ASSERT_FALSE(folder.empty()) << "rank 0 could not make a folder";  // on every rank
  auto arrays = joblet::Parallel({.backend = "mpi", .max_nbytes = 1000, .temp_folder = folder})(
      std::views::iota(0, 4) | std::views::transform([](int i) {
        return [i] { return joblet::NDArray<float>::from(std::vector<float>(10000, static_cast<float>(i)), {10000}); };
      }));
  EXPECT_EQ(arrays.size(), 4u);
  if (arrays.size() == 4u && arrays[3].size() == 10000u) EXPECT_FLOAT_EQ(arrays[3].data()[9999], 3.0f);
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    EXPECT_TRUE(std::filesystem::is_empty(folder)) << "the call left files in " << folder;
    std::filesystem::remove_all(folder);
  }
}

}  // namespace

namespace {

TEST(MpiProgress, OnlyRankZeroPrintsProgress) {
  // Capture this rank's stderr while a verbose call runs.
  std::fflush(stderr);
  char path[] = "/tmp/joblet-mpi-progress-XXXXXX";
  const int file = mkstemp(path);
  const int saved = dup(STDERR_FILENO);
  dup2(file, STDERR_FILENO);
  joblet::Parallel({.backend = "mpi", .verbose = 100})(item_tasks(40));
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(file);
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  std::remove(path);
  if (world_rank() == 0) {
    EXPECT_NE(text.find("[joblet] Done 40 tasks"), std::string::npos) << text;
  } else {
    EXPECT_EQ(text.find("[joblet]"), std::string::npos) << text;
  }
}

}  // namespace
