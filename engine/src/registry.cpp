// The backend registry: names to factories. Duplicates and unknown names fail loudly, and
// the error lists what is registered.
#include <pthread.h>

#include <map>
#include <mutex>

#include "backends.hpp"
#include "joblet/backend.hpp"
#include "joblet/cpu.hpp"
#include "worker_context.hpp"

namespace joblet {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, BackendFactory> factories;
  std::string default_name = "threads";

  Registry() {
    factories.emplace("sequential", detail::make_sequential_backend);
    factories.emplace("threads", detail::make_threads_backend);
    factories.emplace("processes", detail::make_processes_backend);
  }

  std::string names() const {
    std::string text;
    for (const auto& [name, factory] : factories) text += (text.empty() ? "" : ", ") + name;
    return text;
  }
};

Registry& registry() {
  static Registry instance;
  // A process worker may make nested calls: never fork while another thread holds the lock.
  static const int fork_guard =
      pthread_atfork([] { instance.mutex.lock(); }, [] { instance.mutex.unlock(); }, [] { instance.mutex.unlock(); });
  (void)fork_guard;
  return instance;
}

}  // namespace

int Backend::effective_n_jobs(int n_jobs) const { return joblet::effective_n_jobs(n_jobs); }

void register_backend(const std::string& name, BackendFactory factory) {
  if (name.empty()) throw ConfigError("register_backend: the backend name is empty; give it a name");
  if (!factory) throw ConfigError("register_backend('" + name + "'): the factory is empty");
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (!r.factories.emplace(name, std::move(factory)).second) {
    throw ConfigError("register_backend: a backend named '" + name +
                      "' is already registered; choose another name (registered: " + r.names() + ")");
  }
}

std::vector<std::string> backend_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, factory] : r.factories) names.push_back(name);
  return names;
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  Registry& r = registry();
  BackendFactory factory;
  {
    std::lock_guard lock(r.mutex);
    auto found = r.factories.find(name);
    if (found == r.factories.end()) {
      std::string hint;
      if (name == "mpi") {
        hint = " (the mpi backend registers itself when the program links joblet::mpi and creates a joblet::Session)";
      } else if (name == "loky" || name == "multiprocessing") {
        hint = " (joblib's '" + name + "' backend is called \"processes\" in joblet: forked worker processes)";
      } else if (name == "threading") {
        hint = " (joblib's 'threading' backend is called \"threads\" in joblet)";
      }
      throw ConfigError("unknown backend '" + name + "'; registered backends: " + r.names() + hint);
    }
    factory = found->second;
  }
  auto backend = factory();
  if (!backend) throw ConfigError("the factory of backend '" + name + "' returned no backend");
  return backend;
}

std::string default_backend() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return r.default_name;
}

void set_default_backend(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (!r.factories.count(name)) {
    throw ConfigError("set_default_backend: unknown backend '" + name + "'; registered backends: " + r.names());
  }
  r.default_name = name;
}

}  // namespace joblet
