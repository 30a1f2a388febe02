// Meetings and departures: how the ranks of the mpi backend keep to the SPMD contract, or fail
// on every rank instead of hanging when they do not.
//
// Every parallel call starts with a meeting: one non-blocking allgather, on a communicator of
// its own, of what each rank brings (its call number, task count, result type, pid, host). All
// ranks see the same table and so take the same decision: go on, or throw the same
// ConfigError, so that ranks that reached different calls never pair the wrong ones.
// all_agree and checkpoints meet the same way, in the same sequence: a rank that skipped a
// call meets the others at whatever it reaches next, and they all learn it there.
//
// A rank leaves the job when it finalises MPI (its Session ends, or it calls MPI_Finalize,
// intercepted through the profiling interface). It first tells every other rank, with a small
// message each on another communicator of its own, how many calls it made; then it waits for
// the same note from each of them, so that it can say what went wrong before MPI ends. While
// a rank waits at a meeting it watches for these notes: a rank that left will never come, so
// it throws a ConfigError naming that rank instead of waiting forever, and tells the leaver
// (an objection), which then logs which call the others were in. A rank that fails that way
// and leaves in turn says in its note which rank it failed for, so that every rank names the
// rank that left first, whichever note reaches it first.
//
// A meeting abandoned that way leaves its allgather pending for good (collectives cannot be
// cancelled): its buffers are kept until the process ends, and no later meeting starts once a
// departure is known.
#include "mpi_meetings.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <thread>

#include "joblet/detail/log.hpp"
#include "joblet/detail/mpi_checkpoint.hpp"
#include "joblet/detail/stop.hpp"
#include "joblet/error.hpp"
#include "mpi_liveness.hpp"

namespace joblet::detail {
namespace {

enum Tag : int { kDepartureTag = 1, kObjectionTag = 2 };

enum class Meeting : std::int32_t { call = 1, agreement = 2, checkpoint = 3, departure = 4 };

// What a rank brings to a meeting, or announces when it leaves. Sent as bytes, so fixed-size.
struct Signature {
  Meeting meeting;
  std::int32_t rank;
  std::uint64_t calls;  // parallel calls this rank entered (a call counts itself)
  std::uint64_t tasks;
  std::uint64_t type_hash;
  std::int64_t value;      // all_agree and checkpoints; in a departure note, the rank it failed for, or -1
  std::uint64_t meetings;  // meetings this rank completed (a departure note: before it left)
  std::int64_t pid;
  char host[64];
};

constexpr const char* kContract =
    "every rank must make the same Parallel calls with the same tasks, in the same order, like an MPI collective "
    "(SPMD)";

// A meeting's buffers live as long as its allgather may write into them.
struct Gathering {
  Signature mine{};
  std::vector<Signature> all;
  MPI_Request request = MPI_REQUEST_NULL;
};

MPI_Comm g_meetings = MPI_COMM_NULL;
MPI_Comm g_departures = MPI_COMM_NULL;
int g_rank = 0;
int g_size = 1;
std::int64_t g_pid = 0;
char g_host[64] = {};
std::uint64_t g_calls = 0;
std::uint64_t g_meetings_completed = 0;
bool g_departed = false;
std::int64_t g_failed_for = -1;                       // the rank whose departure this rank failed for
Signature g_note{};                                   // this rank's departure note, while it is sent
std::vector<std::optional<Signature>> g_notes;        // departure notes received, by rank
std::vector<bool> g_blamed;                           // leavers this rank already threw an error for
std::deque<Signature> g_objections;                   // objections sent (stable addresses for MPI)
std::vector<MPI_Request> g_sends;                     // departure notes and objections in flight
std::vector<std::unique_ptr<Gathering>> g_abandoned;  // meetings a departure ended

Signature own(Meeting meeting) {
  Signature mine{};
  mine.meeting = meeting;
  mine.rank = g_rank;
  mine.calls = g_calls;
  mine.meetings = g_meetings_completed;
  mine.pid = g_pid;
  std::memcpy(mine.host, g_host, sizeof mine.host);
  return mine;
}

std::string who(const Signature& s) {
  return fmt::format("rank {} (pid {} on {})", s.rank, s.pid, std::string(s.host, strnlen(s.host, sizeof s.host)));
}

// "3 parallel calls", "1 parallel call".
std::string calls_made(std::uint64_t calls) { return fmt::format("{} parallel call{}", calls, calls == 1 ? "" : "s"); }

// Where a rank is, for messages: "in its parallel call 4".
std::string doing(const Signature& s) {
  switch (s.meeting) {
    case Meeting::call:
      return fmt::format("in its parallel call {}", s.calls);
    case Meeting::agreement:
      return "in a collective check of the mpi backend after " + calls_made(s.calls);
    case Meeting::checkpoint:
      return "at a checkpoint after " + calls_made(s.calls);
    case Meeting::departure:
      return "finalising MPI after " + calls_made(s.calls);
  }
  return "somewhere unknown";
}

// Takes in the departure notes that arrived; true when any rank left.
bool receive_departures() {
  for (;;) {
    int flag = 0;
    MPI_Status status;
    check(MPI_Iprobe(MPI_ANY_SOURCE, kDepartureTag, g_departures, &flag, &status), "MPI_Iprobe");
    if (!flag) break;
    Signature note{};
    check(MPI_Recv(&note, sizeof note, MPI_BYTE, status.MPI_SOURCE, kDepartureTag, g_departures, MPI_STATUS_IGNORE),
          "MPI_Recv");
    g_notes[static_cast<std::size_t>(status.MPI_SOURCE)] = note;
    liveness_rank_left(status.MPI_SOURCE);
  }
  return std::any_of(g_notes.begin(), g_notes.end(), [](const auto& note) { return note.has_value(); });
}

// The rank that left first, following the notes of ranks that left because another had: the
// note of the rank a leaver failed for was sent before that leaver's, and is received here,
// waiting for it if it has not arrived yet.
const Signature& first_to_leave(int rank) {
  for (int steps = 0; steps < g_size; ++steps) {
    const Signature& note = *g_notes[static_cast<std::size_t>(rank)];
    const std::int64_t cause = note.value;
    if (cause < 0 || cause >= g_size || cause == g_rank || cause == rank) return note;
    auto& earlier = g_notes[static_cast<std::size_t>(cause)];
    if (!earlier) {
      Signature received{};
      check(MPI_Recv(&received, sizeof received, MPI_BYTE, static_cast<int>(cause), kDepartureTag, g_departures,
                     MPI_STATUS_IGNORE),
            "MPI_Recv");
      earlier = received;
      liveness_rank_left(static_cast<int>(cause));
    }
    rank = static_cast<int>(cause);
  }
  return *g_notes[static_cast<std::size_t>(rank)];
}

// A rank left while this one waits for it at `mine`: tells it (once), then fails here.
[[noreturn]] void fail_for_departure(const Signature& mine) {
  if (graceful_stop_enabled() && stop_requested()) {
    // The job is being stopped (a time limit: every rank got the signal), and another rank
    // stopped in a call this rank had already finished: this rank stops here, as that one did.
    log().warn(
        "stopped by {} between parallel calls, after another rank stopped; the results of cached tasks are in "
        "the cache: run the same command again to compute only what is missing",
        stop_signal() == SIGUSR1 ? "SIGUSR1 (early warning of the time limit)" : "SIGTERM");
    exit_process(kIncompleteExitStatus);
  }
  for (int rank = 0; rank < g_size; ++rank) {
    if (g_notes[static_cast<std::size_t>(rank)]) {
      g_failed_for = first_to_leave(rank).rank;
      break;
    }
  }
  std::string message;
  for (int rank = 0; rank < g_size; ++rank) {
    const auto& note = g_notes[static_cast<std::size_t>(rank)];
    if (!note) continue;
    if (!g_blamed[static_cast<std::size_t>(rank)]) {
      g_blamed[static_cast<std::size_t>(rank)] = true;
      const Signature& objection = g_objections.emplace_back(mine);
      MPI_Request request;
      check(MPI_Isend(&objection, sizeof objection, MPI_BYTE, rank, kObjectionTag, g_departures, &request),
            "MPI_Isend");
      g_sends.push_back(request);
    }
    if (rank == g_failed_for) {
      message = fmt::format(
          "{} left the MPI job (it finalised MPI: returned from main, or called MPI_Finalize) after {}, while this "
          "rank (rank {}) is {} and waits for it: {}. Make rank {} reach the same calls as the others, and let every "
          "rank finish its calls before any returns from main or finalises MPI",
          who(*note), calls_made(note->calls), g_rank, doing(mine), kContract, rank);
    }
  }
  throw ConfigError(message);
}

// Whether a rank that left will never come to the meeting this rank is in. A rank that met here
// and then left can have its note arrive before this rank's part of the allgather completes
// (over TCP between nodes, it often does): its contribution is on the way, so that is no failure.
bool departed_without_meeting() {
  return std::any_of(g_notes.begin(), g_notes.end(),
                     [](const auto& note) { return note && note->meetings <= g_meetings_completed; });
}

// Posts `mine`, then waits for every rank's signature while watching for departures.
std::vector<Signature> meet(const Signature& mine) {
  if (g_meetings == MPI_COMM_NULL) {
    throw ConfigError("the mpi backend is not set up: call joblet::register_mpi_backend() on every rank first");
  }
  if (g_departed) {
    throw ConfigError(fmt::format(
        "rank {} already left the MPI job (it finalised MPI, or called leave_mpi_calls()) and cannot make parallel "
        "calls anymore: make every call before MPI_Finalize, or before the Session ends",
        g_rank));
  }
  if (receive_departures() && departed_without_meeting()) fail_for_departure(mine);
  auto gathering = std::make_unique<Gathering>();
  gathering->mine = mine;
  gathering->all.resize(static_cast<std::size_t>(g_size));
  check(MPI_Iallgather(&gathering->mine, sizeof(Signature), MPI_BYTE, gathering->all.data(), sizeof(Signature),
                       MPI_BYTE, g_meetings, &gathering->request),
        "MPI_Iallgather");
  // Spin first (ranks usually arrive together), then sleep longer and longer.
  constexpr int kSpins = 200;
  constexpr auto kLongestNap = std::chrono::microseconds(100);
  auto nap = std::chrono::microseconds(1);
  for (int polls = 0;; ++polls) {
    int done = 0;
    check(MPI_Test(&gathering->request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) {
      ++g_meetings_completed;
      return std::move(gathering->all);
    }
    if (receive_departures() && departed_without_meeting()) {
      g_abandoned.push_back(std::move(gathering));
      fail_for_departure(mine);
    }
    if (polls >= kSpins) {
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, kLongestNap);
    }
  }
}

// "rank 0 is in its parallel call 4; rank 1 (pid 7 on n2) is at a checkpoint after 3 parallel
// calls": the ranks whose signature differs from rank 0's in `differs` (the first few of them,
// for messages that stay readable with 1,000 ranks).
template <class Differs>
std::string describe_table(const std::vector<Signature>& all, Differs differs) {
  constexpr int kNamed = 8;
  std::string text = fmt::format("rank 0 is {}", doing(all[0]));
  int named = 0, more = 0;
  for (const Signature& other : all) {
    if (!differs(other)) continue;
    if (named++ < kNamed) {
      text += fmt::format("; {} is {}", who(other), doing(other));
    } else {
      ++more;
    }
  }
  if (more > 0) text += fmt::format("; and {} more ranks", more);
  return text;
}

// The ranks of `all` all meet at `kind` with the same call count; else the same ConfigError on
// every rank.
void require_same_meeting(const std::vector<Signature>& all, Meeting kind) {
  const bool same = std::all_of(all.begin(), all.end(),
                                [&](const Signature& s) { return s.meeting == kind && s.calls == all[0].calls; });
  if (same) return;
  throw ConfigError(fmt::format(
      "the ranks met at different points ({}): a rank skipped a parallel call or made one more, but {}. Make every "
      "rank make the same calls (this rank, rank {}, gives up this one)",
      describe_table(all, [&](const Signature& s) { return s.meeting != all[0].meeting || s.calls != all[0].calls; }),
      kContract, g_rank));
}

}  // namespace

void check(int status, const char* what) {
  if (status != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(status, text, &length);
    throw Error(fmt::format("mpi backend: {} failed: {}", what, std::string(text, static_cast<std::size_t>(length))));
  }
}

void open_meetings(MPI_Comm communicator) {
  if (g_meetings != MPI_COMM_NULL) MPI_Comm_free(&g_meetings);
  if (g_departures != MPI_COMM_NULL) MPI_Comm_free(&g_departures);
  check(MPI_Comm_dup(communicator, &g_meetings), "MPI_Comm_dup");
  check(MPI_Comm_dup(communicator, &g_departures), "MPI_Comm_dup");
  MPI_Comm_rank(g_meetings, &g_rank);
  MPI_Comm_size(g_meetings, &g_size);
  g_pid = static_cast<std::int64_t>(getpid());
  const std::string host = ErrorSite::here().host;
  std::memset(g_host, 0, sizeof g_host);
  std::strncpy(g_host, host.c_str(), sizeof g_host - 1);
  g_calls = 0;
  g_meetings_completed = 0;
  g_departed = false;
  g_failed_for = -1;
  g_notes.assign(static_cast<std::size_t>(g_size), std::nullopt);
  g_blamed.assign(static_cast<std::size_t>(g_size), false);
}

MPI_Comm meetings_communicator() noexcept { return g_meetings; }

std::vector<RankIdentity> meet_for_call(std::uint64_t tasks, std::uint64_t type_hash) {
  ++g_calls;
  Signature mine = own(Meeting::call);
  mine.tasks = tasks;
  mine.type_hash = type_hash;
  const std::vector<Signature> all = meet(mine);
  require_same_meeting(all, Meeting::call);
  std::string differences;
  for (const Signature& other : all) {
    if (other.tasks != all[0].tasks || other.type_hash != all[0].type_hash) {
      differences += fmt::format("; rank {}: {} tasks", other.rank, other.tasks);
      if (other.type_hash != all[0].type_hash) differences += " with another result type";
    }
  }
  if (!differences.empty()) {
    throw ConfigError(fmt::format(
        "ranks reached this parallel call with different task lists (rank 0: {} tasks{}): every rank must make the "
        "same calls with the same tasks, like an MPI collective",
        all[0].tasks, differences));
  }
  std::vector<RankIdentity> identities;
  identities.reserve(all.size());
  for (const Signature& s : all)
    identities.push_back({static_cast<long>(s.pid), std::string(s.host, strnlen(s.host, sizeof s.host))});
  return identities;
}

bool meet_to_agree(bool value) {
  Signature mine = own(Meeting::agreement);
  mine.value = value ? 1 : 0;
  const std::vector<Signature> all = meet(mine);
  require_same_meeting(all, Meeting::agreement);
  return std::all_of(all.begin(), all.end(), [](const Signature& s) { return s.value == 1; });
}

std::int64_t meet_to_share(std::int64_t value) {
  Signature mine = own(Meeting::agreement);
  mine.value = value;
  const std::vector<Signature> all = meet(mine);
  require_same_meeting(all, Meeting::agreement);
  return all.front().value;
}

std::vector<long long> mpi_checkpoint(long long value) {
  for (;;) {
    Signature mine = own(Meeting::checkpoint);
    mine.value = value;
    const std::vector<Signature> all = meet(mine);
    // Ranks elsewhere (in a call this rank skipped) fail there on seeing this rank here, and
    // come to the checkpoint next: meet again until everyone is here.
    if (!std::all_of(all.begin(), all.end(), [](const Signature& s) { return s.meeting == Meeting::checkpoint; })) {
      continue;
    }
    std::vector<long long> values;
    for (const Signature& s : all) {
      values.push_back(s.value);
      g_calls = std::max(g_calls, s.calls);
    }
    return values;
  }
}

void leave_mpi_calls() noexcept {
  if (g_departed || g_departures == MPI_COMM_NULL) return;
  g_departed = true;
  g_note = own(Meeting::departure);
  g_note.value = g_failed_for;
  for (int rank = 0; rank < g_size; ++rank) {
    if (rank == g_rank) continue;
    MPI_Request request;
    if (MPI_Isend(&g_note, sizeof g_note, MPI_BYTE, rank, kDepartureTag, g_departures, &request) == MPI_SUCCESS) {
      g_sends.push_back(request);
    }
  }
}

void leave_meetings() noexcept {
  if (g_departures == MPI_COMM_NULL) return;
  try {
    leave_mpi_calls();
    // Every other rank's note; an objection from a rank comes before its note (MPI keeps the
    // order of one sender's messages on one communicator).
    std::vector<std::optional<Signature>> objections(static_cast<std::size_t>(g_size));
    for (int rank = 0; rank < g_size; ++rank) {
      if (rank == g_rank) continue;
      while (!g_notes[static_cast<std::size_t>(rank)]) {
        Signature message{};
        MPI_Status status;
        check(MPI_Recv(&message, sizeof message, MPI_BYTE, rank, MPI_ANY_TAG, g_departures, &status), "MPI_Recv");
        if (status.MPI_TAG == kDepartureTag) {
          g_notes[static_cast<std::size_t>(rank)] = message;
          liveness_rank_left(rank);
        } else {
          objections[static_cast<std::size_t>(rank)] = message;
        }
      }
    }
    check(MPI_Waitall(static_cast<int>(g_sends.size()), g_sends.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    g_sends.clear();
    // Ranks that waited for this one, or made another number of calls, and were not told yet.
    std::string others;
    for (int rank = 0; rank < g_size; ++rank) {
      const auto index = static_cast<std::size_t>(rank);
      if (rank == g_rank || g_blamed[index]) continue;
      if (objections[index]) {
        others += fmt::format("; {} was waiting for it {}", who(*objections[index]), doing(*objections[index]));
      } else if (g_notes[index]->calls != g_calls) {
        others += fmt::format("; {} made {}", who(*g_notes[index]), calls_made(g_notes[index]->calls));
      }
    }
    if (!others.empty()) {
      log().error(
          "{} finalised MPI after {}{}: {}. Make every rank make the same calls before it returns from main "
          "or calls MPI_Finalize",
          who(g_note), calls_made(g_calls), others, kContract);
    }
  } catch (const std::exception& e) {
    log().error("rank {} could not exchange departures with the other ranks before finalising MPI: {}", g_rank,
                e.what());
  }
  // Every rank is here (or the exchange failed): no silence is a lost node anymore.
  stop_liveness_watch();
  // An abandoned meeting still uses its communicator: MPI_Finalize takes both down.
  if (g_abandoned.empty()) {
    MPI_Comm_free(&g_departures);
    MPI_Comm_free(&g_meetings);
  }
  g_departures = g_meetings = MPI_COMM_NULL;
}

}  // namespace joblet::detail

// Both Session (when it ends) and programs that finalise MPI themselves come through here:
// this rank's departure is announced, and the other ranks' collected, before MPI ends. This
// uses the MPI profiling interface, which exists so that tools can wrap MPI calls this way.
extern "C" int MPI_Finalize() {
  joblet::detail::leave_meetings();
  return PMPI_Finalize();
}
