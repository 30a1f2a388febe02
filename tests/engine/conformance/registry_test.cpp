// register_backend: third-party backends by name; misuse fails loudly.
#include <gtest/gtest.h>
#include <joblet/joblet.hpp>

#include <ranges>

namespace {

// A real backend: runs tasks in the caller, last index first.
class ReverseBackend final : public joblet::Backend {
  class ReverseRun final : public joblet::Run {
   public:
    explicit ReverseRun(std::shared_ptr<joblet::Job> job) : job_(std::move(job)) {}
    void wait(joblet::Job::Clock::time_point) override {
      for (std::size_t i = job_->size(); i-- > 0;) {
        if (job_->claim(1).empty()) break;  // keep the job's claim counter in step
        order.push_back(i);
      }
      for (std::size_t index : order) job_->run({index, index + 1});
    }
    void cancel() noexcept override { job_->cancel(); }
    std::vector<std::size_t> order;

   private:
    std::shared_ptr<joblet::Job> job_;
  };

 public:
  bool shares_memory() const noexcept override { return true; }
  bool needs_all_tasks() const noexcept override { return true; }
  std::unique_ptr<joblet::Run> start(std::shared_ptr<joblet::Job> job) override {
    return std::make_unique<ReverseRun>(std::move(job));
  }
};

TEST(Registry, ACustomBackendRunsCallsByName) {
  joblet::register_backend("reverse", [] { return std::make_unique<ReverseBackend>(); });
  auto names = joblet::backend_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "reverse"), names.end());
  std::vector<int> order;
  auto out = joblet::Parallel({.n_jobs = 1, .backend = "reverse"})(std::views::iota(0, 5) |
                                                                   std::views::transform([&order](int i) {
                                                                     return [i, &order] {
                                                                       order.push_back(i);
                                                                       return i * 10;
                                                                     };
                                                                   }));
  EXPECT_EQ(out, (std::vector<int>{0, 10, 20, 30, 40}));
  EXPECT_EQ(order, (std::vector<int>{4, 3, 2, 1, 0}));
}

TEST(Registry, DuplicateNamesFailLoudly) {
  try {
    joblet::register_backend("threads", [] { return std::make_unique<ReverseBackend>(); });
    FAIL();
  } catch (const joblet::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("already registered"), std::string::npos) << e.what();
  }
}

TEST(Registry, EmptyNamesAndFactoriesAreRejected) {
  EXPECT_THROW(joblet::register_backend("", [] { return std::make_unique<ReverseBackend>(); }), joblet::ConfigError);
  EXPECT_THROW(joblet::register_backend("nothing", nullptr), joblet::ConfigError);
  joblet::register_backend("broken", [] { return std::unique_ptr<joblet::Backend>(); });
  EXPECT_THROW(joblet::Parallel({.n_jobs = 2, .backend = "broken"}), joblet::ConfigError);
}

TEST(Registry, TheDefaultBackendCanBeChanged) {
  EXPECT_EQ(joblet::default_backend(), "threads");
  joblet::set_default_backend("processes");
  EXPECT_EQ(joblet::Parallel({.n_jobs = 2}).backend_name(), "processes");
  joblet::set_default_backend("threads");
  EXPECT_THROW(joblet::set_default_backend("nope"), joblet::ConfigError);
  EXPECT_EQ(joblet::default_backend(), "threads");
}

}  // namespace

// For Errors.TwoExceptionTypesOfOneNameCannotBothBeRegistered: errors_test.cpp has a different
// (anonymous namespace)::SameName.
namespace {
struct SameName : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

bool register_same_name_from_another_file() { return joblet::register_exception<SameName>(); }
