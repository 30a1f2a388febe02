#pragma once
// `joblet completion bash`: a bash completion script for the joblet command, made from the
// same declarations as its parser (main.cpp hands them over as a CommandTree), so it never
// falls behind the options.
#include <string>
#include <vector>

namespace joblet::cli {

struct CommandOption {
  std::vector<std::string> names;  // "-d", "--dir"
  bool takes_value = false;
  bool names_directory = false;
};

struct CommandTree {
  std::string name;
  bool takes_parent_options = false;  // options of the commands above may follow its name
  std::vector<CommandOption> options;
  std::vector<CommandTree> subcommands;
};

struct CompletionArguments {
  std::string shell = "bash";
};

// Prints the script to stdout; 1 (with a message) for a shell it cannot complete for.
int run_completion_command(const CompletionArguments& arguments, const CommandTree& joblet);

}  // namespace joblet::cli
