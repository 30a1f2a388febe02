#pragma once
// The built-in backends, registered by the registry under their names.
#include <memory>

#include "joblet/backend.hpp"

namespace joblet::detail {

std::unique_ptr<Backend> make_sequential_backend();
std::unique_ptr<Backend> make_threads_backend();
std::unique_ptr<Backend> make_processes_backend();

}  // namespace joblet::detail
