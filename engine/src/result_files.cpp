#include "joblet/detail/result_files.hpp"

#include <atomic>
#include <limits>

namespace joblet::detail {
namespace {
std::atomic<ResultFilesFactory> g_factory{nullptr};
}

void set_result_files_factory(ResultFilesFactory factory) noexcept { g_factory.store(factory); }

std::unique_ptr<ResultFiles> make_result_files(const ResultFilesPlace& place) {
  const ResultFilesFactory factory = g_factory.load();
  if (factory == nullptr || place.max_nbytes == std::numeric_limits<std::size_t>::max()) return nullptr;
  return factory(place);
}

}  // namespace joblet::detail
