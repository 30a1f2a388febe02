#include "joblet/detail/filesystem_kind.hpp"

namespace joblet::detail {
namespace {

// statfs(2) magic numbers of the filesystems HPC caches live on.
constexpr FilesystemKind kFilesystems[] = {
    {0x6969, "nfs", "shared: every node sees one cache (compute-once locks use link(), safe on NFS)", false},
    {0x0BD00BD0, "lustre", "shared: every node sees one cache", false},
    {0x47504653, "gpfs", "shared: every node sees one cache", false},
    {0x19830326, "beegfs", "shared: every node sees one cache", false},
    {0x00C36400, "ceph", "shared: every node sees one cache", false},
    {0xAAD7AAEA, "panfs", "shared: every node sees one cache", false},
    {0x65735546, "fuse", "possibly shared (FUSE)", false},
    {0x01021994, "tmpfs", "local and in memory: this node only, gone at reboot", true},
    {0xEF53, "ext2/3/4", "local: this node only", true},
    {0x58465342, "xfs", "local: this node only", true},
    {0x9123683E, "btrfs", "local: this node only", true},
    {0x2FC12FC1, "zfs", "local: this node only", true},
    {0x794C7630, "overlayfs", "local (a container's filesystem)", true},
};

}  // namespace

const FilesystemKind* filesystem_kind(unsigned long magic) {
  for (const auto& kind : kFilesystems) {
    if (kind.magic == magic) return &kind;
  }
  return nullptr;
}

}  // namespace joblet::detail
