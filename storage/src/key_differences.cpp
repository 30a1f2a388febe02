#include "joblet/detail/key_differences.hpp"

#include <algorithm>
#include <tuple>

namespace joblet::detail {
namespace {

std::string quoted_or_none(const std::string& text) { return text.empty() ? std::string("none") : "'" + text + "'"; }

// Build ids are 32 hex digits: the first 12 tell two builds apart.
std::string short_salt(const std::string& salt) {
  if (salt.empty()) return "none";
  return salt.size() > 12 ? salt.substr(0, 12) + "..." : salt;
}

std::string argument_text(const ArgumentHash& argument) { return argument.ignored ? "ignored" : argument.hash.hex(); }

}  // namespace

KeyComparison compare_keys(const EntryMetadata& subject, const EntryMetadata& other) {
  KeyComparison comparison;
  const auto differ = [&](KeyPart part, std::string here, std::string there, std::size_t position = 0) {
    comparison.differences.push_back({part, position, std::move(here), std::move(there)});
  };
  comparison.arguments_unknown = !subject.key_parts || !other.key_parts;
  if (!comparison.arguments_unknown) {
    const KeyParts& here = *subject.key_parts;
    const KeyParts& there = *other.key_parts;
    if (here.version != there.version) {
      differ(KeyPart::version, quoted_or_none(here.version), quoted_or_none(there.version));
    }
    if (here.source_salt != there.source_salt) {
      differ(KeyPart::source_salt, short_salt(here.source_salt), short_salt(there.source_salt));
    }
    if (here.build_salt != there.build_salt) {
      differ(KeyPart::build_salt, short_salt(here.build_salt), short_salt(there.build_salt));
    }
  } else if (subject.version != other.version) {
    // Without the parts, the version as the key used it: the explicit one with its salts.
    differ(KeyPart::version, quoted_or_none(subject.version), quoted_or_none(other.version));
  }
  if (subject.result_type != other.result_type) {
    differ(KeyPart::result_type, subject.result_type, other.result_type);
  }
  if (comparison.arguments_unknown) return comparison;
  const std::vector<ArgumentHash>& here = subject.key_parts->arguments;
  const std::vector<ArgumentHash>& there = other.key_parts->arguments;
  if (here.size() != there.size()) {
    differ(KeyPart::argument_count, std::to_string(here.size()), std::to_string(there.size()));
  }
  for (std::size_t position = 0; position < std::min(here.size(), there.size()); ++position) {
    if (here[position] != there[position]) {
      differ(KeyPart::argument, argument_text(here[position]), argument_text(there[position]), position);
    }
  }
  return comparison;
}

std::string describe(const KeyDifference& difference) {
  const std::string sides = " (" + difference.here + " here, " + difference.there + " there)";
  switch (difference.part) {
    case KeyPart::version:
      return "version" + sides;
    case KeyPart::source_salt:
      return "source text" + sides;
    case KeyPart::build_salt:
      return "build id" + sides;
    case KeyPart::result_type:
      return "result type" + sides;
    case KeyPart::argument_count:
      return "number of arguments" + sides;
    case KeyPart::argument:
      break;
  }
  const std::string name = "argument #" + std::to_string(difference.position);
  if (difference.here == "ignored") return name + " (ignored here, in the key there)";
  if (difference.there == "ignored") return name + " (in the key here, ignored there)";
  return name;
}

std::string describe(const KeyComparison& comparison) {
  constexpr const char* kUnknown =
      "one of the two was written without per-argument hashes (by an older joblet), so which argument differs "
      "cannot be told";
  const std::size_t count = comparison.differences.size();
  if (count == 0) {
    // The keys differ, so something the key hashed does.
    return comparison.arguments_unknown
               ? std::string("the version and result type are the same: an argument differs; ") + kUnknown
               : std::string("no recorded part differs");
  }
  std::string text = std::to_string(count) + (count == 1 ? " part differs: " : " parts differ: ");
  for (std::size_t i = 0; i < count; ++i) text += (i == 0 ? "" : ", ") + describe(comparison.differences[i]);
  if (comparison.arguments_unknown) text += std::string("; the arguments may differ too: ") + kUnknown;
  return text;
}

std::vector<NearEntry> nearest_entries(const EntryMetadata& subject, const std::vector<EntryInfo>& listed) {
  std::vector<NearEntry> near;
  for (const EntryInfo& info : listed) {
    if (info.kind != EntryKind::entry || !info.metadata || info.key == subject.key) continue;
    near.push_back({&info, compare_keys(subject, *info.metadata)});
  }
  std::sort(near.begin(), near.end(), [](const NearEntry& a, const NearEntry& b) {
    return std::make_tuple(a.comparison.differences.size(), a.comparison.arguments_unknown, b.info->metadata->created,
                           a.info->key) < std::make_tuple(b.comparison.differences.size(),
                                                          b.comparison.arguments_unknown, a.info->metadata->created,
                                                          b.info->key);
  });
  return near;
}

}  // namespace joblet::detail
