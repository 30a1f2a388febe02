#pragma once
// For joblet's own .cpp files only: spdlog is heavy, so public headers never include this.

#include <spdlog/spdlog.h>

#include <string>

#include "joblet/log.hpp"

namespace joblet::detail {

inline spdlog::logger& log() {
  static spdlog::logger& instance = *joblet::logger();  // the shared_ptr in logger() keeps it alive
  return instance;
}

// True the first time it is called with `key` in this process: for warnings that would
// otherwise repeat once per task or per entry.
bool first_time(const std::string& key);

// In a child forked from a multithreaded parent: replaces the logging locks that another
// thread may have held at fork time, so that the child can log.
void reinitialize_after_fork();

}  // namespace joblet::detail
