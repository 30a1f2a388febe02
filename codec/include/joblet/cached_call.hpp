#pragma once
/// @file
/// What makes a function a cached one, for code that must recognise calls of cached functions
/// without including the cache itself: the engine recognises a Parallel call whose tasks all call
/// one cached function (a campaign: its task keys are known before anything runs) through this
/// concept alone. CachedFunction (memory.hpp) satisfies it.

#include <concepts>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>

#include "joblet/hash.hpp"

namespace joblet {

/// F caches the results of calls with arguments Args in a store: it can name each call's key and
/// tell whether the result is stored, without running anything.
template <class F, class... Args>
concept CachedCallable = F::is_cached_function::value && requires(const F& f, const Args&... args) {
  { f.key(args...) } -> std::same_as<Hash128>;
  { f.check_call_in_cache(args...) } -> std::same_as<bool>;
  { f.name() } -> std::convertible_to<const std::string&>;
  // The cache directory; nullopt for a function that caches nothing.
  { f.location() } -> std::same_as<std::optional<std::filesystem::path>>;
};

namespace detail {

/// How the cached calls of an elastic campaign (launch/'s campaign policy) claim their keys, set
/// where each task runs (a worker thread, a worker process, a rank) by CampaignClaimScope:
/// - defer: take the compute-once lock, or throw ComputingElsewhere at once when another live
///   process holds it (the policy computes other tasks, and comes back to this one);
/// - wait: take the compute-once lock, or wait for the process that holds it (Store::claim);
/// - held: the process holds the claim of a run of tasks that includes this one (CampaignRuns):
///   compute it with no lock of its own;
/// - held_recheck: the same, after looking for its entry once more past the client's memory of
///   missing names (NFS, sshfs): other processes had results of the campaign before this
///   one started, and may have written this one since this node last looked.
/// Every mode but none keeps compute-once on unless a Memory or a function turns it off by name.
enum class CampaignClaim { none, defer, wait, held, held_recheck };

class ComputingElsewhere final : public std::exception {
 public:
  const char* what() const noexcept override;
};

/// The calling thread's mode: that of the innermost CampaignClaimScope, else none.
CampaignClaim campaign_claim() noexcept;

class CampaignClaimScope {
 public:
  explicit CampaignClaimScope(CampaignClaim claim) noexcept;
  ~CampaignClaimScope();
  CampaignClaimScope(const CampaignClaimScope&) = delete;
  CampaignClaimScope& operator=(const CampaignClaimScope&) = delete;

 private:
  CampaignClaim previous_;
};

}  // namespace detail

}  // namespace joblet
