#pragma once
// Which parts of their keys two entries of one function differ in, from the parts each entry
// records (EntryMetadata::key_parts, version, result_type): what `joblet cache explain` prints,
// and what a miss names at debug level. Keys are one-way hashes, so a miss can only be
// explained by the parts its entries kept.

#include <cstddef>
#include <string>
#include <vector>

#include "joblet/store.hpp"

namespace joblet::detail {

// The parts in the order the key hashes them: the first difference in this order is the one a
// miss names.
enum class KeyPart { version, source_salt, build_salt, result_type, argument_count, argument };

struct KeyDifference {
  KeyPart part = KeyPart::version;
  std::size_t position = 0;  // of the argument (KeyPart::argument), from 0 as ignore_args counts
  std::string here;          // the subject's side, as text ("ignored" for an ignored argument)
  std::string there;         // the other entry's side
};

struct KeyComparison {
  std::vector<KeyDifference> differences;  // in key order
  // One of the two records no key parts (written by a joblet before they were recorded): only
  // the whole version and the result type were compared; the arguments may differ too.
  bool arguments_unknown = false;
};

KeyComparison compare_keys(const EntryMetadata& subject, const EntryMetadata& other);

// "argument #1", "version ('2' here, '1' there)", "argument #2 (ignored here, in the key there)".
std::string describe(const KeyDifference& difference);
// "1 part differs: argument #1", "2 parts differ: version (...), argument #0", or what cannot
// be told for an entry without per-argument hashes.
std::string describe(const KeyComparison& comparison);

struct NearEntry {
  const EntryInfo* info = nullptr;  // an entry of the listing given to nearest_entries()
  KeyComparison comparison;         // the subject compared with it
};
// The readable entries of `listed` other than the subject's own key, nearest first: fewest
// differing parts, entries whose arguments can be compared before those whose cannot, then the
// most recently created. Pointers into `listed`, which must outlive the result.
std::vector<NearEntry> nearest_entries(const EntryMetadata& subject, const std::vector<EntryInfo>& listed);

}  // namespace joblet::detail
