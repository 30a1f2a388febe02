#include "joblet/detail/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>
#include <unordered_set>

#include "joblet/error.hpp"
#include "joblet/settings.hpp"

namespace joblet {
namespace {

std::mutex g_mutex;
std::string g_identity;

std::string pattern() {
  std::string prefix = g_identity.empty() ? std::string("[joblet %l]") : "[joblet %l " + g_identity + "]";
  return prefix + " %v";
}

std::shared_ptr<spdlog::logger> make_logger() {
  if (auto existing = spdlog::get("joblet")) return existing;
  auto created = spdlog::stderr_color_mt("joblet");
  created->set_pattern(pattern());
  spdlog::level::level_enum level = spdlog::level::warn;
  // A malformed level is a warning here, not an error: a typo must not silence warnings, and
  // the logger may be made where nothing can catch (Session rejects it when it starts).
  try {
    if (auto name = detail::setting("JOBLET_LOG_LEVEL")) level = spdlog::level::from_str(*name);
  } catch (const ConfigError& e) {
    created->warn("{}", e.message());
  }
  created->set_level(level);
  created->flush_on(spdlog::level::warn);
  return created;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    std::lock_guard lock(g_mutex);
    return make_logger();
  }();
  return instance;
}

void set_log_identity(std::string_view identity) {
  auto instance = logger();  // created before locking: creating it takes the same lock
  std::lock_guard lock(g_mutex);
  g_identity = identity;
  instance->set_pattern(pattern());
}

void add_log_file(const std::string& path) {
  auto instance = logger();
  std::shared_ptr<spdlog::sinks::basic_file_sink_mt> sink;
  try {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
  } catch (const spdlog::spdlog_ex& e) {
    throw StorageError("cannot open the log file '" + path + "' (JOBLET_LOG_FILE): " + e.what() +
                       "; check that its directory exists and is writable");
  }
  std::lock_guard lock(g_mutex);
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] " + pattern());
  instance->sinks().push_back(std::move(sink));
}

namespace detail {
namespace {
// Pointers, so that a forked child can replace a mutex another thread held at fork time, and
// the set that thread may have been rehashing.
std::mutex* g_first_time_mutex = new std::mutex;
std::unordered_set<std::string>* g_first_time_seen = new std::unordered_set<std::string>;
}  // namespace

bool first_time(const std::string& key) {
  std::lock_guard lock(*g_first_time_mutex);
  return g_first_time_seen->insert(key).second;
}

void reinitialize_after_fork() {
  // Only the forking thread exists in the child: any lock another thread held is held forever.
  // The old objects are leaked on purpose (destroying a locked mutex is undefined).
  g_first_time_mutex = new std::mutex;
  g_first_time_seen = new std::unordered_set<std::string>;  // a child may repeat a once-only warning
  new (&g_mutex) std::mutex;
  auto& sinks = logger()->sinks();
  auto fresh = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  fresh->set_pattern(pattern());
  for (auto& sink : sinks) new std::shared_ptr<spdlog::sinks::sink>(sink);  // keep the old sinks alive
  sinks.assign(1, fresh);
}
}  // namespace detail

}  // namespace joblet
