// custom_backend: a backend is a scheduler of task indices 0..n-1; the Parallel front end
// keeps the tasks, the results, ordering, progress and error policy. This one runs the
// tasks on the caller's thread in reverse order: useful to catch tasks that secretly depend
// on running in input order (a shared accumulator, a file written by an earlier task).
#include <joblet/joblet.hpp>

#include <cstdio>
#include <ranges>
#include <vector>

class ReverseRun final : public joblet::Run {
 public:
  // Claiming every index at once works because needs_all_tasks() made the front end read the
  // whole input first: size() is final.
  explicit ReverseRun(std::shared_ptr<joblet::Job> job) : job_(std::move(job)), all_(job_->claim(job_->size())) {}

  // One task per call, so the front end can draw progress and stop us in between.
  void wait(joblet::Job::Clock::time_point deadline) override {
    if (all_.empty() || job_->cancelled()) {
      job_->wait_for_outcomes(deadline);  // nothing left to run here: wait, do not spin
      return;
    }
    --all_.end;
    job_->run({all_.end, all_.end + 1});  // records the outcome; never throws
  }

  void cancel() noexcept override { job_->cancel(); }

 private:
  std::shared_ptr<joblet::Job> job_;
  joblet::IndexRange all_;  // claimed and not yet run: the last one runs next
};

class ReverseBackend final : public joblet::Backend {
 public:
  int effective_n_jobs(int) const override { return 1; }  // only the caller's thread
  bool shares_memory() const noexcept override { return true; }
  bool needs_all_tasks() const noexcept override { return true; }
  std::unique_ptr<joblet::Run> start(std::shared_ptr<joblet::Job> job) override {
    return std::make_unique<ReverseRun>(std::move(job));
  }
};

int main() {
  joblet::register_backend("reverse", [] { return std::make_unique<ReverseBackend>(); });

  std::vector<int> ran;  // the order tasks ran in; safe to share, everything runs on one thread
  joblet::Parallel parallel({.backend = "reverse"});
  auto squares = parallel(std::views::iota(0, 5) | std::views::transform([&ran](int i) {
                            return [&ran, i] { return ran.push_back(i), i * i; };
                          }));
  std::printf("backend %s ran tasks 4 3 2 1 0? %s; results still in input order? %s\n", parallel.backend_name().c_str(),
              ran == std::vector<int>{4, 3, 2, 1, 0} ? "yes" : "no",
              squares == std::vector<int>{0, 1, 4, 9, 16} ? "yes" : "no");
  // Names are unique: a second registration fails loudly and lists what is registered.
  try {
    joblet::register_backend("reverse", [] { return std::make_unique<ReverseBackend>(); });
  } catch (const joblet::ConfigError& e) {
    std::printf("ConfigError: %s\n", e.message().c_str());
  }
  return ran == std::vector<int>{4, 3, 2, 1, 0} && squares == std::vector<int>{0, 1, 4, 9, 16} ? 0 : 1;
}
