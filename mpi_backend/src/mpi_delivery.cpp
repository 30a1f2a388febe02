#include "mpi_delivery.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <utility>

#include "joblet/detail/frames.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/detail/result_files.hpp"
#include "joblet/settings.hpp"
#include "mpi_transport.hpp"

namespace joblet::detail {
namespace {

// A rank that holds its successes (send_own) sends those for the ranks other than 0 this often,
// or once this many bytes wait: results still stream everywhere, in a message per rank per
// interval rather than per task.
constexpr auto kStreamInterval = std::chrono::milliseconds(1);
constexpr std::size_t kStreamBytes = 64 * 1024;

bool is_failure(const char* frame) {
  FrameHeader header;
  std::memcpy(&header, frame, sizeof header);
  return header.length > 0 && frame[sizeof header] != '\0';
}

}  // namespace

MpiDelivery::MpiDelivery(Job& job, MpiTransport& transport, const std::vector<RankIdentity>& identities,
                         int stream_ranks, bool single_node)
    : job_(job), transport_(transport), identities_(identities), rank_(transport.rank()) {
  open_result_folder(single_node);
  if (job_.settings().results_to_root) {
    mode_ = Mode::root_only;
  } else if (transport_.size() > stream_ranks) {
    mode_ = Mode::gather_then_broadcast;
  }
}

// In /dev/shm (or temp_folder) when all ranks share a node, else in temp_folder or the cache
// directory, which a cluster keeps on a filesystem every node sees. Rank 0 picks the folder and
// removes it.
void MpiDelivery::open_result_folder(bool single_node) {
  const JobSettings& settings = job_.settings();
  if (settings.max_nbytes == std::numeric_limits<std::size_t>::max()) return;
  std::string path;
  if (rank_ == 0) {
    std::string root = settings.temp_folder;
    if (root.empty() && !single_node) {
      root = (std::filesystem::absolute(default_cache_dir()) / ".results").string();
    }
    results_ = make_result_files({.max_nbytes = settings.max_nbytes,
                                  .root = root,
                                  .shared_path = {},
                                  .remove_when_done = true,
                                  .map_arrays = single_node});
    if (results_) path = results_->path();
    // Made before the others learn its name, so that they can check they see it.
    std::error_code error;
    if (!single_node && !path.empty() && !std::filesystem::create_directories(path, error) && error) {
      results_.reset();  // the files would fail anyway: messages it is
      path.clear();
    }
  }
  unsigned long long length = path.size();
  check(MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, 0, transport_.communicator()), "MPI_Bcast");
  path.resize(length);
  check(MPI_Bcast(path.data(), static_cast<int>(length), MPI_CHAR, 0, transport_.communicator()), "MPI_Bcast");
  if (rank_ != 0 && !path.empty()) {  // empty: nothing provides files, results stay inline
    results_ = make_result_files({.max_nbytes = settings.max_nbytes,
                                  .root = {},
                                  .shared_path = path,
                                  .remove_when_done = false,
                                  .map_arrays = single_node});
  }
  if (!single_node && !path.empty()) check_result_folder_is_shared(path);
}

// Across nodes the folder must be one folder for every rank: a temp_folder on a node's own disk
// (/tmp, /dev/shm) would be a different, empty folder elsewhere, and a result written there
// unreadable. Rank 0 made the folder before it told the others its name; now every other rank
// tries to make it too: mkdir asks the file server itself, where a lookup could be answered
// from a client cache that has not seen the new folder yet (NFS, sshfs). A rank that succeeds
// made a folder of its own, so large results travel in messages for this call, and rank 0
// says which hosts and what to do.
void MpiDelivery::check_result_folder_is_shared(const std::string& path) {
  int seen = 1;  // rank 0 made it
  if (rank_ != 0) {
    if (::mkdir(path.c_str(), 0700) == 0) {
      ::rmdir(path.c_str());
      seen = 0;
    } else {
      // EEXIST; an SFTP server says EPERM for it. ENOENT: not even the folder above is there.
      seen = errno == EEXIST || errno == EPERM ? 1 : 0;
    }
  }
  std::vector<int> seen_by(static_cast<std::size_t>(transport_.size()), 0);
  check(MPI_Allgather(&seen, 1, MPI_INT, seen_by.data(), 1, MPI_INT, transport_.communicator()), "MPI_Allgather");
  std::string blind;
  for (std::size_t rank = 0; rank < seen_by.size(); ++rank) {
    if (seen_by[rank] != 0) continue;
    if (!blind.empty()) blind += ", ";
    blind += fmt::format("rank {} on {}", rank, rank < identities_.size() ? identities_[rank].host : "?");
  }
  if (blind.empty()) return;
  if (rank_ == 0 && first_time("joblet.mpi.results-folder:" + std::filesystem::path(path).parent_path().string())) {
    log().warn(
        "large results of this call travel in MPI messages: the result folder {} is not visible to {} (a folder on "
        "a node's own disk?); set temp_folder (or JOBLET_TEMP_FOLDER) to a folder on a filesystem every node mounts",
        path, blind);
  }
  results_.reset();  // on rank 0 this removes the folder
}

void MpiDelivery::receive(std::string_view frames, int source) { record(frames, source, nullptr, nullptr); }

void MpiDelivery::record_own(std::string_view frames) { record(frames, rank_, &own_successes_, &own_failures_); }

// Records each outcome in `frames` (made on rank `source`). The frames of outcomes recorded here
// first go on: failures to `failures`; successes to `fresh` and, on rank 0 in gather modes, to
// the end-of-call broadcast.
void MpiDelivery::record(std::string_view frames, int source, std::string* fresh, std::string* failures) {
  std::size_t at = 0;
  while (at + sizeof(FrameHeader) <= frames.size()) {
    FrameHeader header;
    std::memcpy(&header, frames.data() + at, sizeof header);
    if (header.index >= job_.size() || header.length > frames.size() - at - sizeof header) {
      throw Error(fmt::format("mpi backend: a malformed outcome from rank {} (task {}, {} bytes)", source, header.index,
                              header.length));
    }
    const std::size_t whole = sizeof header + header.length;
    const bool failure = is_failure(frames.data() + at);
    if (!failure && !keeps_results()) {
      // ResultsTo::root: this rank's successes go to rank 0 without being kept here.
      if (fresh != nullptr) fresh->append(frames, at, whole);
      at += whole;
      continue;
    }
    const auto* payload = reinterpret_cast<const std::byte*>(frames.data() + at + sizeof header);
    const RankIdentity& who = identities_[static_cast<std::size_t>(source)];
    // Maps arrays that came as files.
    const bool recorded = job_.complete_encoded(header.index, {payload, header.length},
                                                ErrorSite{header.index, source, who.host, who.pid},
                                                results_ ? &results_->reader() : nullptr);
    if (recorded) {
      ++recorded_;
      std::string* next = failure ? failures : fresh;
      if (next != nullptr) next->append(frames, at, whole);
      // Rank 0 ends gather-mode calls with a broadcast: of every outcome, or (results to the
      // root only) of the failures, so that no rank can finish without having seen them.
      if (rank_ == 0 && (mode_ == Mode::gather_then_broadcast || (failure && mode_ == Mode::root_only))) {
        gathered_.append(frames, at, whole);
      }
    }
    at += whole;
  }
}

void MpiDelivery::send_own(bool hold) {
  std::string successes = std::exchange(own_successes_, {});
  std::string failures = std::exchange(own_failures_, {});
  // Once the ranks counted the FRAMES messages they sent each other, no more may go out.
  if (transport_.draining()) return;
  if (!failures.empty()) transport_.send_to_all(kFramesTag, std::move(failures));
  if (!hold && to_root_.empty() && to_others_.empty()) {  // nothing held: one copy to whoever keeps them
    if (successes.empty()) return;
    if (mode_ == Mode::stream_to_all) {
      transport_.send_to_all(kFramesTag, std::move(successes));
    } else if (rank_ != 0) {
      transport_.send(0, kFramesTag, std::move(successes));
    }
    return;
  }
  if (rank_ != 0) to_root_ += successes;
  const bool others = transport_.size() > (rank_ == 0 ? 1 : 2);
  if (mode_ == Mode::stream_to_all && others) to_others_ += successes;
  if (!hold && !to_root_.empty()) transport_.send(0, kFramesTag, std::exchange(to_root_, {}));
  if (to_others_.empty()) return;
  const auto now = Job::Clock::now();
  if (hold && now - others_sent_ < kStreamInterval && to_others_.size() < kStreamBytes) return;
  others_sent_ = now;
  transport_.send_to_all(kFramesTag, std::exchange(to_others_, {}), /*except=*/0);
}

void MpiDelivery::post_final_broadcast() {
  FinalBroadcast& f = final_;
  if (f.posted) return;
  if (rank_ == 0) {
    const bool completed = !job_.cancelled() && recorded_ >= job_.size();
    f.data.swap(gathered_);
    f.header[0] = completed ? 1 : 0;
    f.header[1] = f.data.size();
    if (f.data.size() > kMaxMessageBytes) {
      throw SerializationError(
          fmt::format("mpi backend: {} bytes of results exceed what one broadcast can send; "
                      "return large arrays through the cache or files instead",
                      f.data.size()));
    }
  }
  check(MPI_Ibcast(f.header, 2, MPI_UINT64_T, 0, transport_.communicator(), &f.request), "MPI_Ibcast");
  f.posted = true;
}

bool MpiDelivery::advance_final_broadcast() {
  FinalBroadcast& f = final_;
  if (!f.posted || f.done) return false;
  bool changed = false;
  for (;;) {
    int done = 0;
    check(MPI_Test(&f.request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (!done) return changed;
    changed = true;
    if (!f.header_done) {
      f.header_done = true;
      if (rank_ != 0) f.data.resize(f.header[1]);
      check(
          MPI_Ibcast(f.data.data(), static_cast<int>(f.header[1]), MPI_BYTE, 0, transport_.communicator(), &f.request),
          "MPI_Ibcast");
      continue;
    }
    f.done = true;
    if (rank_ != 0) {
      record(f.data, 0, nullptr, nullptr);  // failures first: they decide how the call ends
      if (f.header[0] == 1 && mode_ == Mode::root_only) job_.finish_without_results();
    }
    std::string().swap(f.data);
    return true;
  }
}

}  // namespace joblet::detail
