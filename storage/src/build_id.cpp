// The build id behind CacheOptions::salt_with_build_id: the GNU build-id note that the linker
// puts in the executable (Debian's toolchain does by default; -Wl,--build-id elsewhere), found
// in memory through dl_iterate_phdr. Without one, a hash of the executable file itself, which
// changes whenever the binary does.

#include <link.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "joblet/detail/function_cache.hpp"
#include "joblet/error.hpp"

namespace joblet::detail {
namespace {

int find_build_id(dl_phdr_info* info, std::size_t, void* out) {
  auto& hex = *static_cast<std::string*>(out);
  // The first object reported is the executable itself.
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    if (header.p_type != PT_NOTE) continue;
    const auto* note = reinterpret_cast<const unsigned char*>(info->dlpi_addr + header.p_vaddr);
    const unsigned char* end = note + header.p_memsz;
    while (note + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note_header;
      std::memcpy(&note_header, note, sizeof note_header);
      const unsigned char* name = note + sizeof note_header;
      const unsigned char* description = name + ((note_header.n_namesz + 3) & ~3u);
      if (description + note_header.n_descsz > end) break;
      if (note_header.n_type == NT_GNU_BUILD_ID && note_header.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        static constexpr char kDigits[] = "0123456789abcdef";
        for (std::size_t byte = 0; byte < note_header.n_descsz; ++byte) {
          hex += kDigits[description[byte] >> 4];
          hex += kDigits[description[byte] & 0xf];
        }
        return 1;
      }
      note = description + ((note_header.n_descsz + 3) & ~3u);
    }
  }
  return 1;  // only the executable matters: stop after it
}

std::string executable_hash() {
  std::ifstream file("/proc/self/exe", std::ios::binary);
  if (!file) return {};
  Hasher hasher;
  std::vector<char> buffer(1 << 20);
  while (file.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || file.gcount() > 0) {
    hasher.update_bytes(buffer.data(), static_cast<std::size_t>(file.gcount()));
  }
  return hasher.digest().hex();
}

}  // namespace

const std::string& build_id() {
  static const std::string id = [] {
    std::string hex;
    dl_iterate_phdr(&find_build_id, &hex);
    if (hex.empty()) hex = executable_hash();
    if (hex.empty()) {
      throw ConfigError(
          "salt_with_build_id: this program has no GNU build id and /proc/self/exe cannot be read; "
          "link with -Wl,--build-id or drop the option");
    }
    return hex;
  }();
  return id;
}

}  // namespace joblet::detail
