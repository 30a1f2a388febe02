#pragma once
// Where the outcomes of an mpi call go. Up to JOBLET_MPI_STREAM_RANKS ranks (32 by default), each
// rank streams its results to every other rank (generators yield as results arrive everywhere).
// Beyond that, N - 1 messages per batch would swamp the network, so results go to rank 0 only,
// which ends the call with one tree broadcast of all of them (MPI_Ibcast). With ResultsTo::root
// that broadcast carries nothing but the end of the call. Failures always go to every rank at
// once, so that every rank stops and throws the same error. Every rank posts the two end-of-call
// broadcasts exactly once per call in gather modes, also when the call fails, so that no
// collective is left unmatched.
//
// Large result arrays travel as files that every rank maps (detail/result_folder.hpp).

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "joblet/backend.hpp"
#include "mpi_meetings.hpp"

namespace joblet::detail {

class MpiTransport;
class ResultFiles;

class MpiDelivery {
 public:
  // Collective: rank 0 makes the result folder and tells the others where it is.
  // `identities`: who each rank is, for error sites. `single_node`: whether every rank runs on
  // this node.
  MpiDelivery(Job& job, MpiTransport& transport, const std::vector<RankIdentity>& identities, int stream_ranks,
              bool single_node);

  // Where result arrays above max_nbytes go instead of messages (null: they never do).
  const std::shared_ptr<ResultFiles>& result_folder() const noexcept { return results_; }
  // Outcomes recorded on this rank.
  std::size_t recorded() const noexcept { return recorded_; }
  // Whether results are gathered on rank 0 and broadcast when the call ends.
  bool gathers() const noexcept { return mode_ != Mode::stream_to_all; }

  // A FRAMES message from `source`.
  void receive(std::string_view frames, int source);
  // Outcomes made on this rank (run, or failed at their timeout); send_own() sends them on.
  void record_own(std::string_view frames);
  // Sends the outcomes record_own() recorded first: failures to every rank at once; successes to
  // every rank or, in gather modes, to rank 0 only. With `hold` (a rank other than 0 running
  // batches of a few µs), successes wait: those for rank 0 ride on the next claim
  // (take_held_for_root), those for the other ranks go out together every kStreamInterval.
  void send_own(bool hold = false);
  // The successes held for rank 0.
  std::string take_held_for_root() noexcept { return std::exchange(to_root_, {}); }

  // The end-of-call broadcasts of the gather modes: {completed, bytes}, then the bytes.
  bool final_broadcast_posted() const noexcept { return final_.posted; }
  bool final_broadcast_done() const noexcept { return final_.done; }
  void post_final_broadcast();
  // Completes what it can of the posted broadcasts; returns whether any step completed.
  bool advance_final_broadcast();

 private:
  enum class Mode { stream_to_all, gather_then_broadcast, root_only };
  struct FinalBroadcast {
    bool posted = false;
    bool header_done = false;
    bool done = false;
    std::uint64_t header[2] = {0, 0};  // {1 when the call completed, bytes of results}
    std::string data;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  void open_result_folder(bool single_node);
  void check_result_folder_is_shared(const std::string& path);
  void record(std::string_view frames, int source, std::string* fresh, std::string* failures);
  // Whether this rank keeps the successful outcomes of other ranks.
  bool keeps_results() const noexcept { return mode_ != Mode::root_only || rank_ == 0; }

  Job& job_;
  MpiTransport& transport_;
  const std::vector<RankIdentity>& identities_;
  int rank_;
  Mode mode_ = Mode::stream_to_all;
  std::shared_ptr<ResultFiles> results_;
  std::size_t recorded_ = 0;
  std::string own_successes_;  // recorded here first, not sent yet
  std::string own_failures_;
  std::string to_root_;    // successes held for rank 0
  std::string to_others_;  // successes held for the ranks other than 0
  Job::Clock::time_point others_sent_{};
  std::string gathered_;  // rank 0 in gather modes: the frames the final broadcast carries
  FinalBroadcast final_;
};

}  // namespace joblet::detail
