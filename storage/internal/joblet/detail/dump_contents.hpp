#pragma once
// What a dump file holds, for `joblet show`: its type, datasets and the names a value gave its
// parts (joblet/dump.hpp).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace joblet::detail {

struct DumpContents {
  struct Dataset {
    std::vector<std::string> names;  // its paths: /arrays/<n>, and the names of a key
    std::string dtype;
    std::vector<std::size_t> shape;
    std::uint64_t nbytes = 0;
    std::string compression;  // empty: none
  };
  struct Attributes {
    std::string group;  // "" for the root
    std::vector<std::pair<std::string, std::string>> values;
  };
  std::string type;
  std::string written_by;  // the joblet version that wrote it
  std::uint64_t format_version = 0;
  std::uint64_t file_size = 0;
  std::uint64_t encoding_bytes = 0;  // the /value dataset
  std::vector<Dataset> datasets;
  std::vector<Attributes> attributes;
};

// Opens and checks `path` as load() does (footer, format), reads no array data. Throws
// StorageError naming what is wrong with it.
DumpContents describe_dump(const std::filesystem::path& path);

}  // namespace joblet::detail
