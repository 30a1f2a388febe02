#include "mpi_claims.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "joblet/error.hpp"
#include "mpi_transport.hpp"

namespace joblet::detail {
namespace {

// A claim should take about this long to run, so that the round trip to rank 0 stays small
// against the work it buys; and, with many ranks, at least kClaimCostBound per rank, so that
// rank 0 (which serves one claim in about 5 µs on a cluster) stays at most half busy serving
// claims, however many ranks ask (docs/mpi-scaling.md).
constexpr auto kBatchTarget = std::chrono::milliseconds(1);
constexpr auto kClaimCostBound = std::chrono::microseconds(10);
// Below this estimated duration a rank always holds one batch in reserve; above it, it asks for
// the next one shortly before the current one should end, so the last batches stay balanced.
constexpr auto kPrefetchBelow = std::chrono::milliseconds(2);
// Batches shorter than this are tiny (tiny_batches()).
constexpr auto kTinyBatch = std::chrono::microseconds(50);

std::int64_t now_ns() { return Job::Clock::now().time_since_epoch().count(); }

}  // namespace

MpiTaskCounter::MpiTaskCounter(const Job& job, int ranks, int n_workers)
    : job_(job), n_workers_(n_workers), grants_(&job, ranks) {}

IndexRange MpiTaskCounter::grant(std::uint64_t count, int rank) {
  std::lock_guard lock(mutex_);
  return grant_locked(count, rank);
}

IndexRange MpiTaskCounter::grant_own() {
  std::lock_guard lock(mutex_);
  return grant_locked(own_batch_, 0);
}

void MpiTaskCounter::set_own_batch(std::uint64_t count) {
  std::lock_guard lock(mutex_);
  own_batch_ = count;
}

IndexRange MpiTaskCounter::grant_locked(std::uint64_t count, int rank) {
  if (job_.cancelled() || next_ >= job_.size()) return {};
  const std::size_t left = job_.size() - next_;
  const std::size_t share = std::max<std::size_t>(left / (2 * static_cast<std::size_t>(n_workers_)), 1);
  const std::size_t take =
      std::min<std::size_t>({static_cast<std::size_t>(std::max<std::uint64_t>(count, 1)), share, left});
  const IndexRange range{next_, next_ + take};
  next_ += take;
  grants_.record(rank, range.begin, range.end);
  return range;
}

// The sizer adapts even when the call fixes the batch size: its estimate of a task's duration
// still times the prefetch. Rank 0's grants apply the share of what is left, not the sizer.
MpiClaims::MpiClaims(const Job& job, MpiTransport& transport, MpiComputeThreads& compute)
    : job_(job),
      transport_(transport),
      compute_(compute),
      fixed_batch_(job.settings().batch_size),
      sizer_(0, std::max<std::chrono::nanoseconds>(kBatchTarget, kClaimCostBound * transport.size()),
             job.settings().n_workers) {
  if (MpiTaskCounter* counter = compute_.counter()) counter->set_own_batch(next_batch_size());
}

std::uint64_t MpiClaims::next_batch_size() {
  return fixed_batch_ > 0 ? fixed_batch_ : sizer_.next(std::numeric_limits<std::size_t>::max());
}

void MpiClaims::observe(const std::vector<MpiComputeThreads::Finished>& finished) {
  for (const auto& batch : finished) sizer_.observe(batch.range.size(), batch.elapsed);
  MpiTaskCounter* counter = compute_.counter();
  if (counter != nullptr && !finished.empty()) counter->set_own_batch(next_batch_size());
}

bool MpiClaims::ask_for_work(const std::function<std::string()>& riding) {
  next_claim_ns_ = 0;
  if (transport_.rank() == 0 || exhausted_ || job_.cancelled()) return false;
  const MpiComputeThreads::Backlog backlog = compute_.backlog();
  const std::size_t coming = backlog.queued + static_cast<std::size_t>(outstanding_);
  if (coming >= (tiny_batches() ? 2U : 1U) || (backlog.running && !time_to_prefetch(backlog))) return false;
  const std::uint64_t count = next_batch_size();
  ++outstanding_;
  claims_sent_ns_.push_back(now_ns());
  std::string claim(reinterpret_cast<const char*>(&count), sizeof count);
  claim += riding();
  transport_.send(0, kClaimTag, std::move(claim));
  return true;
}

bool MpiClaims::tiny_batches() const noexcept {
  const double ns_per_task = sizer_.ns_per_task();
  return ns_per_task >= 0 &&
         ns_per_task * static_cast<double>(sizer_.last()) < std::chrono::nanoseconds(kTinyBatch).count();
}

// Short batches: always keep one in reserve. Long ones: ask a round trip (with margin) before the
// running batch should end.
bool MpiClaims::time_to_prefetch(const MpiComputeThreads::Backlog& backlog) {
  const double ns_per_task = sizer_.ns_per_task();
  const double batch_ns = ns_per_task * static_cast<double>(sizer_.last());
  const bool short_batches = batch_ns >= 0 && batch_ns < std::chrono::nanoseconds(kPrefetchBelow).count();
  if (short_batches) return true;
  if (ns_per_task < 0) return false;  // nothing measured yet: wait for the first batch
  const double lead = std::max(2.0 * std::max(round_trip_ns_, 0.0), 200e3);
  const double expected = ns_per_task * static_cast<double>(backlog.tasks);
  const auto ask_at = backlog.started_ns + static_cast<std::int64_t>(expected - lead);
  if (now_ns() >= ask_at) return true;
  next_claim_ns_ = ask_at;
  return false;
}

std::string_view MpiClaims::answer(int rank, std::string_view claim) {
  std::uint64_t count = 0;
  if (claim.size() < sizeof count) throw Error(fmt::format("mpi backend: a malformed claim from rank {}", rank));
  std::memcpy(&count, claim.data(), sizeof count);
  const IndexRange range = compute_.counter()->grant(count, rank);
  const std::uint64_t reply[2] = {range.begin, range.end};
  transport_.send(rank, kGrantTag, std::string(reinterpret_cast<const char*>(reply), sizeof reply));
  return claim.substr(sizeof count);
}

void MpiClaims::accept(std::string_view grant) {
  std::uint64_t reply[2];
  std::memcpy(reply, grant.data(), sizeof reply);
  if (outstanding_ == 0) throw Error("mpi backend: a grant that answers no claim");
  --outstanding_;
  const double round_trip = static_cast<double>(now_ns() - claims_sent_ns_.front());
  claims_sent_ns_.pop_front();
  round_trip_ns_ = round_trip_ns_ < 0 ? round_trip : 0.7 * round_trip_ns_ + 0.3 * round_trip;
  const IndexRange range{reply[0], reply[1]};
  if (range.empty()) exhausted_ = true;
  compute_.give(range);
}

}  // namespace joblet::detail
