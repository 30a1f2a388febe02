#include "show_command.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <string_view>

#include "joblet/detail/dump_contents.hpp"
#include "units.hpp"

namespace joblet::cli {
namespace {

std::string shape_text(const std::vector<std::size_t>& shape) {
  if (shape.empty()) return "scalar";
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i > 0 ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

// The stored type as people write it: std::string, not its libstdc++ spelling.
std::string readable_type(std::string type) {
  static constexpr std::string_view kString =
      "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
  for (std::size_t at = type.find(kString); at != std::string::npos; at = type.find(kString, at)) {
    // The demangler spaces "> >"; with the first one gone, so goes the space.
    const bool spaced = type.compare(at + kString.size(), 2, " >") == 0;
    type.replace(at, kString.size() + (spaced ? 1 : 0), "std::string");
  }
  return type;
}

}  // namespace

int run_show_command(const ShowArguments& arguments) {
  const detail::DumpContents contents = detail::describe_dump(arguments.file);
  std::string out = fmt::format("{}: joblet dump format {}, written by joblet {}, {}\n", arguments.file,
                                contents.format_version, contents.written_by, format_size(contents.file_size));
  out += fmt::format("type: {}\n", readable_type(contents.type));
  out += fmt::format("/value: the value's encoding, {}\n", format_size(contents.encoding_bytes));
  for (const auto& dataset : contents.datasets) {
    std::string names;
    for (const std::string& name : dataset.names) names += (names.empty() ? "/" : " = /") + name;
    out += fmt::format("{}: {} {}, {}{}\n", names, dataset.dtype, shape_text(dataset.shape),
                       format_size(dataset.nbytes), dataset.compression.empty() ? "" : ", " + dataset.compression);
  }
  for (const auto& attributes : contents.attributes) {
    std::string values;
    for (const auto& [name, value] : attributes.values) values += (values.empty() ? "" : ", ") + name + " = " + value;
    out += fmt::format("/{} attributes: {}\n", attributes.group, values);
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace joblet::cli
