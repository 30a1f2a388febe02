#include "output_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "joblet/error.hpp"

namespace joblet::cli {
namespace {

// 0 or the errno of the first failure.
int write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return errno;
    bytes.remove_prefix(static_cast<std::size_t>(written));
  }
  return 0;
}

int write_then_rename(const std::string& temporary, const std::string& path, std::string_view bytes) {
  // O_EXCL and O_NOFOLLOW: in a shared directory, a link planted under the temporary name is
  // never written through. A file left by a killed run of a process with this pid is replaced.
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::open(temporary.c_str(), flags, 0666);
  if (fd < 0 && errno == EEXIST && ::unlink(temporary.c_str()) == 0) fd = ::open(temporary.c_str(), flags, 0666);
  if (fd < 0) return errno;
  int error = write_all(fd, bytes);
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && ::rename(temporary.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) ::unlink(temporary.c_str());
  return error;
}

}  // namespace

void write_output_file(const std::string& path, std::string_view bytes, std::string_view what,
                       std::string_view option) {
  const std::filesystem::path target(path);
  const std::string temporary =
      (target.parent_path() / ("." + target.filename().string() + ".joblet-" + std::to_string(::getpid()) + ".tmp"))
          .string();
  if (const int error = write_then_rename(temporary, path, bytes); error != 0) {
    throw ConfigError("cannot write " + std::string(what) + " '" + path + "': " + std::strerror(error) + "; give " +
                      std::string(option) + " a file in a writable directory");
  }
}

}  // namespace joblet::cli
