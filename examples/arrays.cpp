// arrays: NDArray, dump/load to HDF5 files that h5py and h5dump read, memory-mapped loads,
// SharedArray handles, and large results of worker processes travelling through files.
#include <unistd.h>

#include <joblet/dump.hpp>
#include <joblet/joblet.hpp>
#include <joblet/shared_array.hpp>

#include <cstdio>
#include <filesystem>
#include <ranges>

// Any cereal-serializable value can be dumped; each of its arrays becomes an HDF5 dataset.
struct Snapshot {
  double time = 0;
  joblet::NDArray<double> density;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(time, density);
  }
};

int main() {
  const auto dir = std::filesystem::temp_directory_path() / ("joblet-arrays-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  Snapshot snapshot{1.5, joblet::NDArray<double>({512, 512})};  // zeros, C order
  for (std::size_t i = 0; i < 512; ++i) snapshot.density.mutable_at(i, i) = 1.0;

  // Uncompressed arrays are contiguous and aligned in the file, so they can be mapped later;
  // in Python: h5py.File(path)["arrays/0"]. Compressed ones are chunked and deflated.
  joblet::dump(snapshot, dir / "snapshot.h5");
  joblet::dump(snapshot, dir / "snapshot-small.h5", {.compress = 3});

  // A mapped load costs the same for 1 MB or 1 TB: pages are read when touched. read_only
  // arrays refuse writes (StorageError); MmapMode::copy_on_write gives private, writable pages.
  const auto mapped = joblet::load<Snapshot>(dir / "snapshot.h5", {.mmap_mode = joblet::MmapMode::read_only});
  std::printf("mapped: %d, density(7, 7) = %g\n", mapped.density.is_mapped(), mapped.density(7, 7));

  // A SharedArray is ~100 bytes: workers (processes, MPI ranks) map the file when they first
  // ask, instead of receiving a copy of the data.
  const auto handle = joblet::SharedArray::write(dir / "density.h5", snapshot.density);
  joblet::Parallel parallel({.n_jobs = 2, .backend = "processes"});
  auto traces = parallel(std::views::iota(0, 4) | std::views::transform([&](int quarter) {
                           return joblet::delayed(
                               [handle](int q) {
                                 const auto d = handle.get<double>();
                                 double sum = 0;
                                 for (std::size_t i = q * 128; i < (q + 1) * 128u; ++i) sum += d(i, i);
                                 return sum;
                               },
                               quarter);
                         }));
  std::printf("trace by quarters: %g %g %g %g\n", traces[0], traces[1], traces[2], traces[3]);

  // Results above max_nbytes (1 MiB) come back through a file in /dev/shm that the caller maps,
  // not through a pipe; the call's folder is removed when the call ends.
  auto fields = parallel(std::views::iota(0, 2) | std::views::transform([](int k) {
                           return joblet::delayed([](int v) { return joblet::NDArray<double>({512, 512}, v); }, k);
                         }));
  std::printf("2 MiB result mapped: %d, value %g\n", fields[1].is_mapped(), fields[1](511, 511));
  std::filesystem::remove_all(dir);
}
