// The chain of run claims of an elastic campaign (joblet/campaign.hpp: CampaignRuns).
//
// Why a chain rather than a fixed grid of blocks: each process picks its run's length from what
// its own tasks cost (a few tasks while it knows nothing, more once they prove short), and
// processes that disagree can never claim overlapping runs, because a run always starts where
// the claim before it ends. A claim is made like a compute-once lock (link of a file already
// holding its content: atomic on NFS and Lustre, with no window where it is empty) and is alive
// while its heartbeat moves; unlike a lock, it stays after its run is done, because the chain
// needs it: a finished run is recognised by its results, not by its claim.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <map>
#include <thread>

#include "beneath.hpp"
#include "io.hpp"
#include "joblet/campaign.hpp"
#include "joblet/error.hpp"
#include "lock_heartbeat.hpp"
#include "store_internal.hpp"

namespace joblet {
namespace {

using Steady = std::chrono::steady_clock;

std::string runs_directory(const std::string& campaign) { return ".campaigns/" + campaign + ".runs"; }

// A claim's file name: its first task, in decimal. Nothing else in the directory is a claim.
std::optional<std::size_t> begin_of(std::string_view name) {
  std::size_t value = 0;
  if (name.empty() || name.size() > 19 || (name.size() > 1 && name[0] == '0')) return std::nullopt;
  const auto [end, error] = std::from_chars(name.data(), name.data() + name.size(), value);
  if (error != std::errc{} || end != name.data() + name.size()) return std::nullopt;
  return value;
}

// Where the claim seen as `view`, of the run starting at `begin`, says its run ends; nullopt for
// something that is no joblet claim, or that says something impossible.
std::optional<std::size_t> claimed_end(const std::optional<detail::LockView>& view, std::size_t begin,
                                       std::size_t tasks) {
  if (!view || view->foreign || !view->text.starts_with("joblet campaign run\n")) return std::nullopt;
  const std::string_view text = detail::lock_field(view->text, "end");
  std::size_t end = 0;
  const auto [stop, error] = std::from_chars(text.data(), text.data() + text.size(), end);
  if (error != std::errc{} || stop != text.data() + text.size() || end <= begin || end > tasks) return std::nullopt;
  return end;
}

// A claim that is no claim covers its first task only: whoever finds that task missing takes it
// over at once (such a holder is gone).
std::size_t end_of(const std::optional<detail::LockView>& view, std::size_t begin, std::size_t tasks) {
  return claimed_end(view, begin, tasks).value_or(begin + 1);
}

}  // namespace

struct CampaignRuns::Impl {
  Store store;
  std::string relative;  // the runs directory, below the cache root
  detail::FileDescriptor directory;
  std::size_t tasks = 0;
  LockOptions options;
  std::size_t next = 0;  // where the chain ends, as far as this process has read it
  std::vector<TaskRun> others;
  struct Watched {
    std::optional<detail::LockView> seen;
    Steady::time_point unchanged_since{};
  };
  std::map<std::size_t, Watched> watched;  // by the run's first task
  int held_fd = -1;
  std::uint64_t heartbeat = 0;

  Impl(const std::filesystem::path& location, const std::string& campaign, std::size_t task_count,
       const LockOptions& lock_options)
      : store(location), relative(runs_directory(campaign)), tasks(task_count), options(lock_options) {}

  // The claim of the run starting at `begin`, which exists (the link said so). A client that
  // remembers failed lookups (sshfs, NFS) may not know the name yet: ask again for a while.
  std::optional<detail::LockView> read_claim(const std::string& name) const {
    auto poll = options.poll;
    const auto give_up = Steady::now() + std::chrono::duration_cast<Steady::duration>(options.stale_after);
    for (;;) {
      auto view = detail::look_at(directory.get(), name);
      if (view || Steady::now() >= give_up) return view;
      std::this_thread::sleep_for(poll);
      poll = std::min(poll * 2, options.poll_max);
    }
  }
};

CampaignRuns::CampaignRuns(const std::filesystem::path& location, const std::string& campaign, std::size_t tasks,
                           const LockOptions& options)
    : impl_(std::make_unique<Impl>(location, campaign, tasks, options)) {
  validate_lock_options(options);
  const Store::State& state = *impl_->store.state_;
  impl_->directory = state.directory.open_directory(impl_->relative, true, state.options.group_shared);
  if (!impl_->directory) {
    const int error = errno;
    throw StorageError("cannot make " + state.directory.shown(impl_->relative) + " for the run claims of campaign " +
                       campaign + ": " +
                       (error == ELOOP || error == ENOTDIR ? state.directory.describe_obstacle(impl_->relative)
                                                           : detail::describe_write_errno(error)));
  }
}

CampaignRuns::~CampaignRuns() { release(); }

void CampaignRuns::release() noexcept {
  if (impl_->heartbeat != 0) detail::stop_heartbeat(impl_->heartbeat);
  impl_->heartbeat = 0;
  if (impl_->held_fd >= 0) ::close(impl_->held_fd);
  impl_->held_fd = -1;
}

std::optional<TaskRun> CampaignRuns::claim(std::size_t length) {
  release();
  Impl& impl = *impl_;
  length = std::max<std::size_t>(length, 1);
  while (impl.next < impl.tasks) {
    const std::size_t begin = impl.next;
    const std::size_t end = begin + std::min(length, impl.tasks - begin);
    const std::string name = std::to_string(begin);
    const std::string content = "joblet campaign run\nend " + std::to_string(end) + "\n" + detail::owner_lines();
    int fd = -1;
    int error = 0;
    switch (detail::link_new_file(impl.directory.get(), name, "run-" + name, content, fd, error)) {
      case detail::LinkAttempt::held:
        impl.held_fd = fd;
        impl.heartbeat = detail::start_heartbeat(
            fd, std::chrono::duration_cast<std::chrono::steady_clock::duration>(impl.options.heartbeat));
        impl.next = end;
        return TaskRun{begin, end};
      case detail::LinkAttempt::unavailable:
        throw StorageError("cannot claim tasks of a campaign in " +
                           impl.store.state_->directory.shown(impl.relative + "/" + name) + ": " +
                           detail::describe_write_errno(error));
      case detail::LinkAttempt::busy:
        break;
    }
    const auto view = impl.read_claim(name);
    const TaskRun theirs{begin, end_of(view, begin, impl.tasks)};
    impl.others.push_back(theirs);
    impl.next = theirs.end;
  }
  return std::nullopt;
}

const std::vector<TaskRun>& CampaignRuns::others() const noexcept { return impl_->others; }

bool CampaignRuns::holder_gone(const TaskRun& run) {
  Impl& impl = *impl_;
  const auto view = detail::look_at(impl.directory.get(), std::to_string(run.begin));
  if (claimed_end(view, run.begin, impl.tasks) != run.end) return true;  // gone, replaced, or no claim
  if (detail::dead_process_of_this_host(view->host, view->pid)) return true;
  Impl::Watched& watched = impl.watched[run.begin];
  const auto now = Steady::now();
  if (watched.seen && watched.seen->same_file(*view)) return now - watched.unchanged_since >= impl.options.stale_after;
  watched.seen = view;
  watched.unchanged_since = now;
  return false;
}

std::vector<std::pair<TaskRun, LockHolder>> CampaignRuns::claimed(const Store& store, const std::string& campaign,
                                                                  std::size_t tasks, const LockOptions& options) {
  std::vector<std::pair<TaskRun, LockHolder>> runs;
  const Store::State& state = *store.state_;
  const detail::FileDescriptor directory = state.directory.open_directory(runs_directory(campaign), false, false);
  if (!directory) return runs;
  std::vector<std::size_t> begins;
  const int listing = ::dup(directory.get());
  DIR* handle = listing >= 0 ? ::fdopendir(listing) : nullptr;
  if (handle == nullptr && listing >= 0) ::close(listing);
  if (handle == nullptr) return runs;
  while (const dirent* item = ::readdir(handle)) {
    if (const auto begin = begin_of(item->d_name); begin && *begin < tasks) begins.push_back(*begin);
  }
  ::closedir(handle);
  std::sort(begins.begin(), begins.end());
  const auto now = detail::filesystem_now(state, directory.get());
  for (const std::size_t begin : begins) {
    const auto view = detail::look_at(directory.get(), std::to_string(begin));
    if (!claimed_end(view, begin, tasks)) continue;
    const auto beat = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(view->mtime_ns)));
    const bool live = !detail::dead_process_of_this_host(view->host, view->pid) && now - beat < options.stale_after;
    runs.emplace_back(TaskRun{begin, end_of(view, begin, tasks)}, LockHolder{view->host, view->pid, view->job, live});
  }
  return runs;
}

}  // namespace joblet
