#pragma once
// Whether this thread is running a task of a parallel call: calls made inside one are nested,
// and leave process-wide decisions (a graceful stop) to the outermost call.

namespace joblet::detail {

bool in_task() noexcept;

class TaskScope {
 public:
  TaskScope() noexcept;
  ~TaskScope();
  TaskScope(const TaskScope&) = delete;
  TaskScope& operator=(const TaskScope&) = delete;

 private:
  bool outer_;
};

}  // namespace joblet::detail
