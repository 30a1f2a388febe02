#pragma once
// `joblet show FILE.h5`: what a file written by joblet::dump holds — its C++ type, its datasets
// (every name, dtype, shape, size, compression) and the numbers and strings its keys named —
// without reading any array.
#include <string>

namespace joblet::cli {

struct ShowArguments {
  std::string file;
};

int run_show_command(const ShowArguments& arguments);

}  // namespace joblet::cli
