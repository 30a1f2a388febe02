#pragma once
// What kind of filesystem a cache lives on, from statfs(2)'s magic number: one table for the
// store (which trusts a local filesystem's failed lookups and not a network client's) and for
// `joblet info` (which tells the user whether every node sees the cache).

namespace joblet::detail {

struct FilesystemKind {
  unsigned long magic;
  const char* name;
  const char* note;  // what it means for a cache there, in `joblet info`'s words
  bool local;        // this node only: a failed lookup is never stale
};

// The kind with statfs's f_type `magic`; null for one the table does not know.
const FilesystemKind* filesystem_kind(unsigned long magic);

}  // namespace joblet::detail
