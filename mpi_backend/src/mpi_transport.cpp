#include "mpi_transport.hpp"

#include <fmt/format.h>

#include "joblet/error.hpp"
#include "mpi_meetings.hpp"

namespace joblet::detail {

MpiTransport::MpiTransport(MPI_Comm parent) {
  check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  sent_to_.assign(static_cast<std::size_t>(size_), 0);
}

MpiTransport::~MpiTransport() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiTransport::post(int destination, MpiTag tag, const std::shared_ptr<const std::string>& data) {
  if (data->size() > kMaxMessageBytes) {
    throw SerializationError(fmt::format(
        "mpi backend: {} bytes of results in one message exceed what MPI can send at once; return large arrays "
        "through the cache or files instead",
        data->size()));
  }
  MPI_Request request;
  check(MPI_Isend(data->data(), static_cast<int>(data->size()), MPI_BYTE, destination, tag, comm_, &request),
        "MPI_Isend");
  sends_.push_back({data, request});
  if (tag == kFramesTag) ++sent_to_[static_cast<std::size_t>(destination)];
}

void MpiTransport::send(int destination, MpiTag tag, std::string bytes) {
  post(destination, tag, std::make_shared<const std::string>(std::move(bytes)));
}

void MpiTransport::send_to_all(MpiTag tag, std::string bytes, int except) {
  auto data = std::make_shared<const std::string>(std::move(bytes));
  for (int peer = 0; peer < size_; ++peer) {
    if (peer != rank_ && peer != except) post(peer, tag, data);
  }
}

bool MpiTransport::test_sends() {
  if (sends_.empty()) return false;
  const std::size_t before = sends_.size();
  std::erase_if(sends_, [&](PendingSend& pending) {
    int done = 0;
    check(MPI_Test(&pending.request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    return done != 0;
  });
  return sends_.size() != before;
}

bool MpiTransport::message_waiting() {
  int flag = 0;
  // Twice, as in receive().
  for (int probe = 0; probe < 2 && !flag; ++probe) {
    check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, MPI_STATUS_IGNORE), "MPI_Iprobe");
  }
  return flag != 0;
}

bool MpiTransport::receive(const std::function<void(const MpiMessage&)>& handle) {
  bool any = false;
  bool probed_again = false;
  for (;;) {
    int flag = 0;
    MPI_Status status;
    check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &status), "MPI_Iprobe");
    if (!flag) {
      // Open MPI's ob1 looks for a match before progressing the network: a message that arrived
      // since the last poll is only seen by a second probe (measured with Open MPI 4.1). With
      // more ranks than cores every probe that progresses nothing yields the core (Open MPI's
      // yield_when_idle), so after messages were handled one probe that finds none ends it.
      if (any || probed_again) return any;
      probed_again = true;
      continue;
    }
    int bytes = 0;
    MPI_Get_count(&status, MPI_BYTE, &bytes);
    message_.resize(static_cast<std::size_t>(bytes));
    check(MPI_Recv(message_.data(), bytes, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, comm_, MPI_STATUS_IGNORE),
          "MPI_Recv");
    any = true;
    if (status.MPI_TAG < kClaimTag || status.MPI_TAG > kFramesTag) {
      throw Error(
          fmt::format("mpi backend: unexpected message tag {} from rank {}", status.MPI_TAG, status.MPI_SOURCE));
    }
    if (status.MPI_TAG == kFramesTag) ++frames_received_;
    handle(MpiMessage{status.MPI_SOURCE, static_cast<MpiTag>(status.MPI_TAG), message_});
  }
}

// Every rank adds up, in O(log N) collective steps, how many FRAMES messages each rank sent to
// every other one, rather than N² point-to-point messages saying so.
void MpiTransport::start_drain() {
  draining_ = true;
  check(
      MPI_Ireduce_scatter_block(sent_to_.data(), &frames_expected_, 1, MPI_LONG_LONG, MPI_SUM, comm_, &count_exchange_),
      "MPI_Ireduce_scatter_block");
}

bool MpiTransport::drained() {
  if (!counts_known_) {
    int done = 0;
    check(MPI_Test(&count_exchange_, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (!done) return false;
    counts_known_ = true;
  }
  return frames_received_ >= frames_expected_ && sends_.empty();
}

}  // namespace joblet::detail
