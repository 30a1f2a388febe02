// The call observers of the process: a copy-on-write list, so that a call takes a snapshot
// with one lock (none at all while the list is empty) and observers may be added meanwhile.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "joblet/error.hpp"
#include "joblet/observer.hpp"

namespace joblet {
namespace {

struct ObserverList {
  std::mutex mutex;
  std::shared_ptr<const detail::CallObservers> observers;
  std::atomic<bool> empty{true};
};

ObserverList& observer_list() {
  static ObserverList instance;
  // A forked worker may make nested calls: never fork while another thread holds the lock.
  static const int fork_guard =
      pthread_atfork([] { instance.mutex.lock(); }, [] { instance.mutex.unlock(); }, [] { instance.mutex.unlock(); });
  (void)fork_guard;
  return instance;
}

}  // namespace

void add_call_observer(std::shared_ptr<CallObserver> observer) {
  if (!observer) throw ConfigError("add_call_observer: the observer is null; pass one made with std::make_shared");
  ObserverList& list = observer_list();
  std::lock_guard lock(list.mutex);
  auto next = list.observers ? std::make_shared<detail::CallObservers>(*list.observers)
                             : std::make_shared<detail::CallObservers>();
  if (std::find(next->begin(), next->end(), observer) != next->end()) {
    throw ConfigError(
        "add_call_observer: this observer was added already; add each observer once (it would "
        "see every call twice)");
  }
  next->push_back(std::move(observer));
  list.observers = std::move(next);
  list.empty.store(false, std::memory_order_release);
}

bool remove_call_observer(const std::shared_ptr<CallObserver>& observer) {
  ObserverList& list = observer_list();
  std::lock_guard lock(list.mutex);
  if (!list.observers) return false;
  auto next = std::make_shared<detail::CallObservers>(*list.observers);
  const auto found = std::find(next->begin(), next->end(), observer);
  if (found == next->end()) return false;
  next->erase(found);
  list.empty.store(next->empty(), std::memory_order_release);
  list.observers = next->empty() ? nullptr : std::move(next);
  return true;
}

namespace detail {
std::shared_ptr<const CallObservers> call_observers() {
  ObserverList& list = observer_list();
  if (list.empty.load(std::memory_order_acquire)) return nullptr;
  std::lock_guard lock(list.mutex);
  return list.observers;
}
}  // namespace detail

}  // namespace joblet
