#pragma once
// One parallel call of the mpi backend on this rank (see mpi_run.cpp).

#include <memory>

#include "joblet/backend.hpp"

namespace joblet::detail {

// Collective: every rank starts the call, or the meeting that opens it fails on every rank.
// `stream_ranks`: up to how many ranks results are streamed to every rank (mpi_delivery.hpp);
// `single_node`: whether every rank runs on this node.
std::unique_ptr<Run> start_mpi_run(std::shared_ptr<Job> job, int stream_ranks, bool single_node);

}  // namespace joblet::detail
