#include "completion_command.hpp"

#include <cstdio>
#include <set>
#include <string>

namespace joblet::cli {
namespace {

// Bash's word for one path of subcommands ("", "/cache", "/cache/stats").
struct PathWords {
  std::string path;
  std::string subcommands;
  std::string options;  // its own and those of the commands above it (options fall through)
};

void collect(const CommandTree& command, const std::string& path, const std::string& above,
             std::vector<PathWords>& paths, std::set<std::string>& valued, std::set<std::string>& directories) {
  std::string options = command.takes_parent_options ? above : " ";
  for (const CommandOption& option : command.options) {
    for (const std::string& name : option.names) {
      if (options.find(" " + name + " ") == std::string::npos) options += name + " ";
      if (option.takes_value) valued.insert(name);
      if (option.names_directory) directories.insert(name);
    }
  }
  std::string subcommands;
  for (const CommandTree& sub : command.subcommands) subcommands += sub.name + " ";
  paths.push_back({path, subcommands, options});
  for (const CommandTree& sub : command.subcommands) {
    collect(sub, path + "/" + sub.name, options, paths, valued, directories);
  }
}

std::string case_pattern(const std::set<std::string>& names) {
  std::string pattern;
  for (const std::string& name : names) pattern += (pattern.empty() ? "" : "|") + name;
  return pattern.empty() ? "''" : pattern;
}

}  // namespace

int run_completion_command(const CompletionArguments& arguments, const CommandTree& joblet) {
  if (arguments.shell != "bash") {
    std::fprintf(stderr, "joblet: no completion for shell '%s': only bash is supported\n", arguments.shell.c_str());
    return 1;
  }
  std::vector<PathWords> paths;
  std::set<std::string> valued, directories;
  collect(joblet, "", " ", paths, valued, directories);

  std::string script =
      "# bash completion for joblet, made by `joblet completion bash`:\n"
      "#   source <(joblet completion bash)    or save it in /etc/bash_completion.d/joblet\n"
      "_joblet_words() {\n"
      "  case $1 in\n";
  for (const PathWords& words : paths) {
    script += "    '" + words.path + "') subcommands='" + words.subcommands + "' options='" + words.options + "' ;;\n";
  }
  script += "  esac\n}\n";
  script +=
      "_joblet() {\n"
      "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} path='' subcommands options i word\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    word=${COMP_WORDS[i]}\n"
      "    case $word in\n"
      "      " +
      case_pattern(valued) +
      ") ((i++)); continue ;;\n"
      "    esac\n"
      "    _joblet_words \"$path\"\n"
      "    [[ \" $subcommands \" == *\" $word \"* ]] && path=$path/$word\n"
      "  done\n"
      "  case $prev in\n"
      "    " +
      case_pattern(directories) +
      ") COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n"
      "    " +
      case_pattern(valued) +
      ") COMPREPLY=(); return ;;\n"
      "  esac\n"
      "  _joblet_words \"$path\"\n"
      "  if [[ $cur == -* ]]; then\n"
      "    COMPREPLY=($(compgen -W \"$options\" -- \"$cur\"))\n"
      "  else\n"
      "    COMPREPLY=($(compgen -W \"$subcommands\" -- \"$cur\"))\n"
      "  fi\n"
      "}\n"
      "complete -F _joblet joblet\n";
  std::fputs(script.c_str(), stdout);
  return 0;
}

}  // namespace joblet::cli
