#include "joblet/cached_call.hpp"

namespace joblet::detail {
namespace {
thread_local CampaignClaim t_campaign_claim = CampaignClaim::none;
}  // namespace

const char* ComputingElsewhere::what() const noexcept {
  return "another process is computing this cached call (an elastic campaign defers it)";
}

CampaignClaim campaign_claim() noexcept { return t_campaign_claim; }

CampaignClaimScope::CampaignClaimScope(CampaignClaim claim) noexcept : previous_(t_campaign_claim) {
  t_campaign_claim = claim;
}

CampaignClaimScope::~CampaignClaimScope() { t_campaign_claim = previous_; }

}  // namespace joblet::detail
