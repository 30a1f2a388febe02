#pragma once
// The store's file operations: POSIX calls with errno-to-StorageError translation, unique
// temporary names, directory creation with the store's permissions, and a fault injector that
// lets tests reach the error paths (ENOSPC, EROFS, a writer killed mid-write) without a
// broken disk.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace joblet::detail {

// The points of the write path where a fault can be injected.
enum class IoStep {
  create_directory,
  open_temporary,
  write,      // before the first byte
  mid_write,  // after part of the file was written (while an injector is set, the file is
              // written in two halves with this step between them)
  fsync,
  close,
  rename,
  create_lock,
};

// While set, called at each step; a non-zero return is taken as that step's errno. For tests.
void set_io_fault_injector(std::function<int(IoStep)> injector);
// 0, or the errno the injector asks for at this step.
int injected_fault(IoStep step);
bool fault_injection_active() noexcept;

// This host's name, reduced to characters safe in a file name.
const std::string& host_name_for_files();
// The Slurm job this process runs in, as squeue names it ("1234", or "1230_4" for element 4 of
// array 1230), for telling who computed an entry or holds a lock; empty outside Slurm.
const std::string& job_name_for_files();
// ".<stem>.<host>.<pid>.<thread>.<random>.tmp": unique across hosts, processes, threads and
// time, hidden (leading dot) so listings skip it, and recognisable as a leftover by its suffix.
std::string temporary_name(std::string_view stem);

// The cause and the fix for an errno met while writing the cache.
std::string describe_write_errno(int error);

// mkdir -p, giving new directories the store's permissions (setgid + group rwx when
// group_shared). Returns 0 or an errno.
int make_directories(const std::filesystem::path& directory, bool group_shared);

// Writes all of `parts` to fd (looping over short writes); returns 0 or an errno.
int write_all(int fd, std::span<const std::span<const std::byte>> parts);

// Writes `bytes` as file `name` of the directory `directory`, whole or not at all: under a
// temporary_name(), then renamed over whatever stood there (a link is replaced, never followed).
// Returns 0 or an errno; the temporary file is gone either way. For small records, not entries
// (no fsync: a record lost to a power cut is written again by the next run).
int publish_file_at(int directory, const std::string& name, std::string_view bytes);

// pread of exactly `size` bytes at `offset` (looping over short reads and EINTR): 0, an errno,
// or ENODATA when the file ends first.
int read_fully_at(int fd, void* data, std::size_t size, std::uint64_t offset);

// Whether a process of this pid exists on this host.
bool process_alive(long pid);

}  // namespace joblet::detail
