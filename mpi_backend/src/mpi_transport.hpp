#pragma once
// The messages of one mpi call, on a communicator duplicated for the call so that they never mix
// with the program's own or with another call's:
//   CLAIM  rank -> 0   "give me up to k tasks"           (one outstanding per rank; mpi_claims.hpp),
//                      then outcomes for rank 0 riding along (mpi_delivery.hpp)
//   GRANT  0 -> rank   [begin, end); empty: none are left
//   FRAMES any -> any  outcomes of finished tasks (detail/frames.hpp; mpi_delivery.hpp)
// No send blocks: each is posted, and its bytes are kept until a later test finds it complete.
// FRAMES messages are counted both ways, so that a rank can leave a call with no message left in
// flight (see start_drain()).

#include <mpi.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace joblet::detail {

enum MpiTag : int { kClaimTag = 1, kGrantTag = 2, kFramesTag = 3 };

// Messages above this size cannot be sent: MPI counts bytes in an int.
constexpr std::size_t kMaxMessageBytes = std::size_t{1} << 30;

struct MpiMessage {
  int source;
  MpiTag tag;
  std::string_view bytes;  // valid until the next message is received
};

class MpiTransport {
 public:
  // Collective over `parent`: the call's own communicator, duplicated from it.
  explicit MpiTransport(MPI_Comm parent);
  ~MpiTransport();
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  MPI_Comm communicator() const noexcept { return comm_; }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }

  void send(int destination, MpiTag tag, std::string bytes);
  // One copy of the bytes, to every other rank (but `except`).
  void send_to_all(MpiTag tag, std::string bytes, int except = -1);
  // Forgets the sends that completed; returns whether any did.
  bool test_sends();
  // Whether a message has arrived (it stays to be received).
  bool message_waiting();
  // Hands every message that has arrived to `handle`; returns whether there was any.
  bool receive(const std::function<void(const MpiMessage&)>& handle);

  // Collective, when this rank sends no more FRAMES messages: starts learning how many every
  // rank sent to this one.
  void start_drain();
  // Whether, since start_drain(), every FRAMES message sent to this rank arrived and all of
  // this rank's sends completed.
  bool drained();
  // Whether start_drain() was called: FRAMES messages may no longer be sent.
  bool draining() const noexcept { return draining_; }

 private:
  void post(int destination, MpiTag tag, const std::shared_ptr<const std::string>& data);

  struct PendingSend {
    std::shared_ptr<const std::string> data;
    MPI_Request request;
  };

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<PendingSend> sends_;
  std::string message_;             // the message received last
  std::vector<long long> sent_to_;  // FRAMES messages sent to each rank
  long long frames_received_ = 0;
  bool draining_ = false;
  MPI_Request count_exchange_ = MPI_REQUEST_NULL;
  bool counts_known_ = false;
  long long frames_expected_ = 0;  // FRAMES messages sent to this rank, once counts_known_
};

}  // namespace joblet::detail
