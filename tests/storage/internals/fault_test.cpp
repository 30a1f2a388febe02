// The write path's error handling, reached by injecting faults at each step: a failure leaves
// neither a temporary file nor an entry, names its cause, and never costs a caller its result.

#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <string>

#include "io.hpp"
#include "joblet/detail/result_folder.hpp"
#include "joblet/dump.hpp"
#include "joblet/memory.hpp"
#include "joblet/store.hpp"
#include "support.hpp"

namespace {

using joblet::detail::IoStep;
using joblet::testing::TempDir;

class InjectorScope {
 public:
  explicit InjectorScope(std::function<int(IoStep)> injector) {
    joblet::detail::set_io_fault_injector(std::move(injector));
  }
  ~InjectorScope() { joblet::detail::set_io_fault_injector(nullptr); }
};

std::span<const std::byte> bytes_of(const std::string& text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

std::size_t files_under(const std::filesystem::path& root) {
  std::size_t count = 0;
  if (!std::filesystem::exists(root)) return 0;
  for (const auto& item : std::filesystem::recursive_directory_iterator(root)) count += item.is_regular_file();
  return count;
}

TEST(Faults, EachWriteStepFailsCleanly) {
  for (IoStep failing : {IoStep::create_directory, IoStep::open_temporary, IoStep::write, IoStep::mid_write,
                         IoStep::fsync, IoStep::close, IoStep::rename}) {
    SCOPED_TRACE(static_cast<int>(failing));
    TempDir dir;
    joblet::Store store(dir.path() / "cache");
    InjectorScope injector([failing](IoStep step) { return step == failing ? ENOSPC : 0; });
    try {
      store.save("f", joblet::hash_value(1), {}, bytes_of(std::string(1000, 'x')));
      FAIL() << "save must fail";
    } catch (const joblet::StorageError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("No space left on device"), std::string::npos) << message;
      EXPECT_NE(message.find("bytes_limit"), std::string::npos) << message;  // the fix is named
    }
    EXPECT_EQ(files_under(dir.path()), 0u);
  }
}

TEST(Faults, MemoryReturnsTheResultWhenTheDiskIsFull) {
  TempDir dir;
  joblet::Memory memory(dir.path());
  int calls = 0;
  auto cached = memory.cache("full", [&calls](int x) { return ++calls, x * 2; });
  joblet::testing::LogCapture log;
  {
    InjectorScope injector([](IoStep step) { return step == IoStep::write ? ENOSPC : 0; });
    EXPECT_EQ(cached(21), 42);
    EXPECT_EQ(cached(21), 42);
  }
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(cached.statistics().store_failures, 2u);
  EXPECT_EQ(log.warnings("No space left on device"), 1) << log.text();
  // Once the disk has room again, results are cached again.
  EXPECT_EQ(cached(21), 42);
  EXPECT_EQ(cached(21), 42);
  EXPECT_EQ(calls, 3);
}

// The same full disk, met by each writer of array files: each names the fix its caller can use.
TEST(Faults, AFullDiskGetsTheAdviceOfWhoeverWrites) {
  TempDir dir;
  InjectorScope injector([](IoStep step) { return step == IoStep::write ? ENOSPC : 0; });
  const joblet::NDArray<double> large({std::size_t{1} << 18}, 1.0);  // 2 MiB: above Memory's threshold
  try {
    joblet::dump(large, dir / "x.h5");
    FAIL() << "dump must fail";
  } catch (const joblet::StorageError& e) {
    EXPECT_NE(e.message().find("write somewhere else"), std::string::npos) << e.message();
    EXPECT_EQ(e.message().find("bytes_limit"), std::string::npos) << e.message();
  }
  joblet::testing::LogCapture log;
  joblet::Memory memory(dir.path() / "cache");
  auto cached = memory.cache("arrays", [&large](int) { return large; });
  EXPECT_EQ(cached(1), large);
  EXPECT_EQ(log.warnings("bytes_limit"), 1) << log.text();  // a companion file: the cache's advice
  {
    joblet::detail::ResultFolder folder(0, dir.path().string());
    joblet::detail::ResultWriter writer(folder);
    const std::size_t shape[1] = {large.size()};
    EXPECT_FALSE(writer.store({joblet::DType::float64, shape, large.data(), large.nbytes()}));
  }
  EXPECT_EQ(log.warnings("temp_folder"), 1) << log.text();  // a result file: another folder for them
}

TEST(Faults, ComputeOnceWithoutLocksStillComputes) {
  TempDir dir;
  joblet::Memory memory(dir.path(), {.compute_once = true});
  auto cached = memory.cache("lockless", [](int x) { return x + 1; });
  joblet::testing::LogCapture log;
  InjectorScope injector([](IoStep step) { return step == IoStep::create_lock ? EACCES : 0; });
  EXPECT_EQ(cached(1), 2);
  EXPECT_EQ(log.warnings("compute-once locks"), 1) << log.text();
  EXPECT_TRUE(cached.check_call_in_cache(1));
}

TEST(Faults, AWriterKilledMidWriteLeavesOnlyAHiddenTemporary) {
  TempDir dir;
  joblet::Store store(dir.path());
  const auto key = joblet::hash_value(7);
  const pid_t writer = joblet::testing::fork_child([&] {
    joblet::detail::set_io_fault_injector([](IoStep step) {
      if (step == IoStep::mid_write) raise(SIGKILL);
      return 0;
    });
    store.save("f", key, {}, bytes_of(std::string(1 << 20, 'x')));
    return 0;
  });
  EXPECT_EQ(joblet::testing::wait_child(writer), 128 + SIGKILL);
  EXPECT_EQ(store.load("f", key).status, joblet::LoadStatus::missing);
  EXPECT_TRUE(store.list().empty());
  const auto leftovers = store.list({.include_leftovers = true});
  ASSERT_EQ(leftovers.size(), 1u);
  EXPECT_EQ(leftovers[0].kind, joblet::EntryKind::temporary);
  EXPECT_EQ(leftovers[0].path.filename().string().front(), '.');
  EXPECT_LT(leftovers[0].size, std::uint64_t{1} << 20);  // it really stopped half way
}

}  // namespace
