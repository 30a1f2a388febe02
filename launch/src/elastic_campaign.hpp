#pragma once
// Elastic campaigns (elastic_campaign.cpp), for launch/'s call policies (call_policies.cpp).

#include <cstddef>
#include <optional>
#include <string>

#include "joblet/observer.hpp"

namespace joblet::detail {

// Runs what this process should of a campaign before the call itself loads every result: the
// tasks no other process is computing, then the wait for those others compute.
void run_elastic_campaign(CallStart& call, Campaign& campaign, const std::string& name);

// While this thread runs one of an elastic campaign's rounds (each its own call): the campaign's
// task count, and how many of them were done before the round began. A stop (a time limit) is
// reported in the campaign's terms, not the round's.
struct ElasticRound {
  std::size_t tasks = 0;
  std::size_t done_before = 0;
};
std::optional<ElasticRound> elastic_round() noexcept;

}  // namespace joblet::detail
