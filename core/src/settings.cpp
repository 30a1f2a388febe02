#include "joblet/settings.hpp"

#include <unistd.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "joblet/detail/env.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/error.hpp"

extern char** environ;

namespace joblet {
namespace {

bool any_value(std::string_view) { return true; }

bool n_jobs_value(std::string_view text) {
  const auto n = detail::parse_integer(text);
  return n && *n != 0 && *n <= 1'000'000 && *n >= -1'000'000;
}

bool positive_integer(std::string_view text) {
  const auto n = detail::parse_integer(text);
  return n && *n >= 1;
}

bool non_negative_integer(std::string_view text) {
  const auto n = detail::parse_integer(text);
  return n && *n >= 0 && *n <= 1'000'000;
}

bool log_level(std::string_view text) {
  for (std::string_view level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    if (text == level) return true;
  }
  return false;
}

bool on_or_off(std::string_view text) { return text == "on" || text == "off"; }

bool shard(std::string_view text) {
  if (text == "off" || text == "dynamic" || text == "static") return true;
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return false;
  const auto index = detail::parse_integer(text.substr(0, slash));
  const auto count = detail::parse_integer(text.substr(slash + 1));
  return index && count && *index >= 0 && *index < *count;
}

struct Setting {
  SettingInfo info;
  bool (*valid)(std::string_view);
  // What a valid value is, for the error: "JOBLET_X='v' is not valid: <expected>".
  std::string_view expected;
  bool integer = false;
};

// Sorted by name.
constexpr Setting kSettings[] = {
    {{"JOBLET_BACKEND", "backend name", "threads (mpi under a launcher with several ranks)",
      "the backend of calls whose code and scopes name none"},
     any_value,
     "the name of a registered backend"},
    {{"JOBLET_CACHE_DIR", "path", "./joblet-cache", "the cache directory of Session::cache_dir() and the joblet CLI"},
     any_value,
     "a directory"},
    {{"JOBLET_ELASTIC", "on or off", "on",
      "a process running a campaign computes the tasks no other process is computing, and waits for those "
      "results instead of computing them too (off: each process computes every missing task, as before)"},
     on_or_off,
     "use on (processes running the same campaign share it) or off (each computes every missing task)"},
    {{"JOBLET_LOG_FILE", "path pattern", "none",
      "also write joblet's log lines to this file, one per process under Session (%j job, %t rank, %A array job, "
      "%a array index, %N host, %p pid)"},
     any_value,
     "a file name"},
    {{"JOBLET_LOG_LEVEL", "level", "warn", "trace, debug, info, warn, error, critical or off"},
     log_level,
     "use trace, debug, info, warn, error, critical or off"},
    {{"JOBLET_MAX_FAILURES", "integer", "none",
      "keep_going() calls whose code and scopes set no max_failures stop starting tasks after this many failed "
      "(Config::max_failures)"},
     positive_integer,
     "give after how many failed tasks a keep_going() call stops (>= 1), or unset it for no limit",
     true},
    {{"JOBLET_MPI_LOST_AFTER", "seconds", "10",
      "in an mpi job across nodes, a rank silent this long is lost (its node died or was cut off) and the job "
      "stops, naming it; 0: wait forever"},
     non_negative_integer,
     "give whole seconds (>= 1; 0 waits forever), or unset it",
     true},
    {{"JOBLET_MPI_STREAM_RANKS", "integer", "32",
      "up to this many ranks, every rank receives each result of an mpi call as it arrives; above, at the end"},
     positive_integer,
     "give the number of ranks (>= 1) up to which every rank receives each result as it arrives (default 32), or "
     "unset it",
     true},
    {{"JOBLET_N_JOBS", "integer", "1 (joblib's default; -1: every CPU)",
      "the n_jobs of calls whose code and scopes set none"},
     n_jobs_value,
     "use -1 for all CPUs, a positive count, or unset it",
     true},
    {{"JOBLET_RETRIES", "integer", "0",
      "how many more times a failed task runs, in calls whose code and scopes set no retries (Config::retries)"},
     non_negative_integer,
     "give how many more times a failed task may run (0 for none), or unset it",
     true},
    {{"JOBLET_SHARD", "k/K, static, dynamic or off", "dynamic",
      "k/K: this process computes only shard k of K of each campaign; static: a job-array element computes the "
      "shard SLURM_ARRAY_TASK_ID gives it (tasks i % K == k); dynamic: array elements take the tasks no other "
      "process is computing, as any elastic process does; off: whole calls"},
     shard,
     "write k/K, two whole numbers with 0 <= k < K (this process computes shard k of K), static (the shard of "
     "SLURM_ARRAY_TASK_ID), dynamic (elements share each campaign as they go), or off to run whole calls"},
    {{"JOBLET_TEMP_FOLDER", "path", "/dev/shm when it has 2 GiB free, else $TMPDIR, else /tmp",
      "where process and mpi workers write results larger than max_nbytes"},
     any_value,
     "a directory"},
    {{"JOBLET_TRACE", "path", "none",
      "record every task attempt of every call in this directory (Config::trace), one JSON Lines file per "
      "process; `joblet trace DIR` summarises them"},
     any_value,
     "a directory"},
};

const Setting* find_setting(std::string_view name) {
  for (const Setting& setting : kSettings) {
    if (setting.info.name == name) return &setting;
  }
  return nullptr;
}

const Setting& known_setting(std::string_view name) {
  if (const Setting* setting = find_setting(name)) return *setting;
  throw std::logic_error("joblet reads " + std::string(name) + ", which core/src/settings.cpp does not list");
}

std::optional<std::string> checked_value(const Setting& setting) {
  auto text = detail::env_string(std::string(setting.info.name).c_str());
  if (text && !setting.valid(*text)) {
    throw ConfigError(std::string(setting.info.name) + "='" + *text +
                      "' is not valid: " + std::string(setting.expected));
  }
  return text;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::span<const SettingInfo> settings_catalogue() {
  static const std::vector<SettingInfo> infos = [] {
    std::vector<SettingInfo> list;
    for (const Setting& setting : kSettings) list.push_back(setting.info);
    return list;
  }();
  return infos;
}

void check_settings() {
  for (const Setting& setting : kSettings) checked_value(setting);
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view variable = *entry;
    const std::string_view name = variable.substr(0, variable.find('='));
    if (!name.starts_with("JOBLET_") || find_setting(name) != nullptr) continue;
    const Setting* nearest = &kSettings[0];
    for (const Setting& setting : kSettings) {
      if (edit_distance(name, setting.info.name) < edit_distance(name, nearest->info.name)) nearest = &setting;
    }
    if (detail::first_time("unknown-setting-" + std::string(name))) {
      detail::log().warn("{} is set but joblet has no such variable (did you mean {}?); `joblet info` lists them", name,
                         nearest->info.name);
    }
  }
}

std::string default_cache_dir() { return detail::setting("JOBLET_CACHE_DIR").value_or("joblet-cache"); }

namespace detail {

std::optional<std::string> setting(std::string_view name) { return checked_value(known_setting(name)); }

std::optional<long long> integer_setting(std::string_view name) {
  const Setting& known = known_setting(name);
  if (!known.integer) throw std::logic_error(std::string(name) + " is not an integer setting");
  const auto text = checked_value(known);
  return text ? parse_integer(*text) : std::nullopt;
}

}  // namespace detail
}  // namespace joblet
