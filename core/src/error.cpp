#include "joblet/error.hpp"

#include <cxxabi.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <typeinfo>

#include "joblet/detail/runtime.hpp"

namespace joblet {
namespace {

std::string host_name() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof buffer - 1) != 0) return "unknown-host";
  return buffer;
}

std::string with_site(const std::string& message, const ErrorSite& site) {
  // Configuration errors carry no task or rank; repeating host and pid there is noise.
  if (!site.task_index && site.rank < 0) return message;
  return message + " [" + site.describe() + "]";
}

}  // namespace

ErrorSite ErrorSite::here(std::optional<std::size_t> task_index) {
  return ErrorSite{task_index, detail::process_rank(), host_name(), static_cast<long>(detail::process_id())};
}

std::string ErrorSite::describe() const {
  std::string text;
  if (task_index) text += "task " + std::to_string(*task_index) + ", ";
  if (rank >= 0) text += "rank " + std::to_string(rank) + ", ";
  text += "pid " + std::to_string(pid) + " on " + host;
  return text;
}

Error::Error(const std::string& message, ErrorSite site)
    : std::runtime_error(with_site(message, site)), message_(message), site_(std::move(site)) {}

TaskError::TaskError(std::string original_type, std::string original_message, ErrorSite site)
    : Error(original_type + ": " + original_message, std::move(site)),
      original_type_(std::move(original_type)),
      original_message_(std::move(original_message)) {}

WorkerDiedError::WorkerDiedError(const std::string& message, int signal, int exit_code, ErrorSite site)
    : Error(message, std::move(site)), signal_(signal), exit_code_(exit_code) {}

RetriesExhaustedError::RetriesExhaustedError(const std::string& message, ErrorSite site)
    : Error(message, std::move(site)) {}

RetriesExhaustedError::RetriesExhaustedError(const std::string& message, ErrorSite site, int attempts,
                                             std::exception_ptr last_error)
    : Error(message, std::move(site)), attempts_(attempts), last_error_(std::move(last_error)) {}

std::optional<ErrorSite> error_site(const std::exception& error) {
  if (const auto* own = dynamic_cast<const Error*>(&error)) return own->site();
  const auto* nested = dynamic_cast<const std::nested_exception*>(&error);
  if (nested == nullptr || !nested->nested_ptr()) return std::nullopt;
  try {
    std::rethrow_exception(nested->nested_ptr());
  } catch (const Error& origin) {
    return origin.site();
  } catch (...) {
    return std::nullopt;
  }
}

namespace detail {

void set_process_rank(int rank) noexcept { detail::process_runtime().rank.store(rank, std::memory_order_relaxed); }
int process_rank() noexcept { return detail::process_runtime().rank.load(std::memory_order_relaxed); }

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> readable(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && readable ? std::string(readable.get()) : std::string(mangled);
}

std::string current_exception_type_name() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  return type ? demangle(type->name()) : std::string("unknown exception");
}

std::string describe_exception(const std::exception_ptr& error) {
  if (!error) return "no exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "non-standard exception of type " + current_exception_type_name();
  }
}

}  // namespace detail
}  // namespace joblet
