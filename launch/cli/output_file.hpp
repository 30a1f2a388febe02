#pragma once
// The files `joblet` writes where the user asked (`trace --chrome`, `trace --html`).
#include <string>
#include <string_view>

namespace joblet::cli {

// Writes `bytes` to `path` whole: into a temporary file next to it, renamed over `path` once
// complete, so that a browser or a script never reads half a file, and a failed write leaves what
// was there before. Throws ConfigError naming `what` ("the HTML report"), the system's reason and
// `option`, the option to give another path.
void write_output_file(const std::string& path, std::string_view bytes, std::string_view what, std::string_view option);

}  // namespace joblet::cli
