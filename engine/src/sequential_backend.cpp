// sequential: the caller runs the tasks itself, a batch per wait(). Used for n_jobs == 1,
// inside forked workers where oneTBB cannot run, and in tests as the reference.
#include "backends.hpp"
#include "joblet/detail/batch_sizer.hpp"

namespace joblet::detail {
namespace {

constexpr auto kBatchTarget = std::chrono::microseconds(100);

class SequentialRun final : public Run {
 public:
  explicit SequentialRun(std::shared_ptr<Job> job)
      : job_(std::move(job)), sizer_(job_->settings().batch_size, kBatchTarget, 1) {}

  void wait(Job::Clock::time_point deadline) override {
    const IndexRange range = job_->claim(sizer_.next(job_->unclaimed()));
    if (range.empty()) {
      job_->wait_for_outcomes(deadline);  // nothing left to run here: do not spin
      return;
    }
    const auto start = Job::Clock::now();
    job_->run(range);
    sizer_.observe(range.size(), Job::Clock::now() - start);
  }

  void cancel() noexcept override { job_->cancel(); }

 private:
  std::shared_ptr<Job> job_;
  BatchSizer sizer_;
};

class SequentialBackend final : public Backend {
 public:
  bool shares_memory() const noexcept override { return true; }
  int effective_n_jobs(int) const override { return 1; }
  std::unique_ptr<Run> start(std::shared_ptr<Job> job) override { return std::make_unique<SequentialRun>(std::move(job)); }
};

}  // namespace

std::unique_ptr<Backend> make_sequential_backend() { return std::make_unique<SequentialBackend>(); }

}  // namespace joblet::detail
