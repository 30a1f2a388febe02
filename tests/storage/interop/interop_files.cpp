// The C++ half of the interoperability check (h5py_check.py is the other): `write DIR` writes
// dump files and a SharedArray file for h5py and h5dump to read; `read DIR` reads the file
// h5py wrote there. Exit status 0 when every check holds; failures are printed to stderr.

#include <complex>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "joblet/dump.hpp"
#include "joblet/shared_array.hpp"

namespace {

using joblet::NDArray;

int failures = 0;
void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "interop_files: FAILED: %s\n", what.c_str());
    ++failures;
  }
}

// The values h5py_check.py expects: element i (in C order) of field is i * 0.5.
struct Simulation {
  std::string label;
  NDArray<double> field;
  std::vector<float> energies;
  std::map<std::string, NDArray<std::int32_t>> counts;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(label, field, energies, counts);
  }
};

Simulation make_simulation() {
  Simulation s{"ising", NDArray<double>({4, 5}), {1.0f, 2.0f, 3.0f}, {}};
  for (std::size_t i = 0; i < s.field.size(); ++i) s.field.mutable_data()[i] = static_cast<double>(i) * 0.5;
  s.counts["up"] = NDArray<std::int32_t>({2, 3}, 7);
  return s;
}

// Two arrays under one key: /runs/<name>/0 and /1.
struct Run {
  NDArray<double> field;
  std::vector<float> energies;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(field, energies);
  }
  bool operator==(const Run& other) const { return field == other.field && energies == other.energies; }
};

template <class T>
NDArray<T> ramp(std::vector<std::size_t> shape) {
  auto a = NDArray<T>::uninitialized(std::move(shape));
  std::size_t i = 0;
  for (T& x : a.mutable_span()) x = static_cast<T>(i++ % 100);
  return a;
}

void write_files(const std::filesystem::path& dir) {
  joblet::dump(make_simulation(), dir / "simulation.h5");
  joblet::dump(make_simulation(), dir / "compressed.h5", {.compress = 4});
  // Chunks compressed in parallel, with partial chunks along the first and a later axis.
  joblet::dump(std::make_pair(ramp<double>({300, 700, 3}), ramp<std::int32_t>({3, 300000})), dir / "chunks.h5",
               {.compress = 1});
  joblet::dump(ramp<double>({1000, 10}), dir / "szip.h5", {.compress = 1, .compressor = joblet::Compressor::szip});
  NDArray<bool> flags({5});
  for (std::size_t i = 0; i < 5; ++i) flags.mutable_data()[i] = i % 2 == 0;
  joblet::dump(std::make_tuple(flags, ramp<std::int8_t>({3}), ramp<std::int16_t>({3}), ramp<std::int32_t>({3}),
                               ramp<std::int64_t>({3}), ramp<std::uint8_t>({3}), ramp<std::uint16_t>({3}),
                               ramp<std::uint32_t>({3}), ramp<std::uint64_t>({3}), ramp<float>({2, 2}),
                               NDArray<double>({}, 3.5), NDArray<double>({0, 4})),
               dir / "types.h5");
  joblet::SharedArray::write(dir / "shared.h5", ramp<float>({6, 7}), "field");
  // Element i of each complex array is (i, -i / 2).
  auto waves = NDArray<std::complex<double>>::uninitialized({3, 4});
  std::vector<std::complex<float>> phases(5);
  for (std::size_t i = 0; i < waves.size(); ++i) waves.mutable_data()[i] = {double(i), -double(i) / 2};
  for (std::size_t i = 0; i < phases.size(); ++i) phases[i] = {float(i), -float(i) / 2};
  const auto complex_values = std::make_tuple(waves, phases, std::complex<double>(1.5, -2));
  joblet::dump(complex_values, dir / "complex.h5");

  // Named: what h5py_check.py opens by name.
  const std::map<std::string, NDArray<double>> arrays{{"field", ramp<double>({4, 5})},
                                                      {"value", ramp<double>({2})}};  // reserved: unnamed
  const std::map<std::string, double> parameters{{"temperature", 2.27}, {"joblet_type", 1.0}};
  const std::map<std::string, std::string> labels{{"model", "ising"}};
  const std::map<std::string, std::map<std::string, Run>> runs{{"run1", {{"a", Run{ramp<double>({3}), {1.5f, 2.5f}}}}},
                                                               {"bad/key", {{"b", Run{ramp<double>({1}), {}}}}}};
  const std::map<std::string, std::map<std::string, std::int32_t>> counts{{"run1", {{"steps", 1000}}}};
  const std::vector<std::pair<std::string, NDArray<float>>> listed{{"pressure", ramp<float>({2, 2})},
                                                                     {"density", ramp<float>({3})}};
  const auto named = std::make_tuple(arrays, parameters, labels, runs, counts, listed);
  joblet::dump(named, dir / "named.h5");
  check(joblet::load<std::remove_const_t<decltype(named)>>(dir / "named.h5") == named,
        "a value with named parts round-trips");
  joblet::dump(complex_values, dir / "complex_compressed.h5", {.compress = 3});
  check(joblet::load<std::remove_const_t<decltype(complex_values)>>(dir / "complex_compressed.h5") == complex_values,
        "complex values round-trip through a compressed file");
}

template <class F>
bool throws_storage_error(F f, const char* fragment) {
  try {
    f();
  } catch (const joblet::StorageError& e) {
    if (e.message().find(fragment) != std::string::npos) return true;
    std::fprintf(stderr, "interop_files: unexpected message: %s\n", e.message().c_str());
  }
  return false;
}

void read_files(const std::filesystem::path& dir) {
  const auto file = dir / "from_h5py.h5";
  // h5py wrote x = arange(12).reshape(3, 4) as float64, contiguous: mapped, not read.
  auto x = joblet::SharedArray(file, "x").get<double>();
  check(x.is_mapped(), "x is mapped");
  check(x.shape() == std::vector<std::size_t>{3, 4}, "x has shape (3, 4)");
  for (std::size_t i = 0; i < 12; ++i) check(x.data()[i] == static_cast<double>(i), "x values");
  // y: int32, chunked and gzip-compressed by h5py: read, not mapped.
  auto y = joblet::SharedArray(file, "group/y").get<std::int32_t>();
  check(!y.is_mapped() && y.size() == 1000 && y(999) == 999, "y read through HDF5's filters");
  auto b = joblet::SharedArray(file, "flags").get<bool>();
  check(b.size() == 3 && b(0) && !b(1) && b(2), "h5py's bool");
  check(throws_storage_error([&] { joblet::SharedArray(file, "big_endian").get<double>(); }, "big-endian"),
        "big-endian data is refused");
  check(throws_storage_error([&] { joblet::SharedArray(file, "names").get<double>(); }, "strings"),
        "strings are refused");
  auto z = joblet::SharedArray(file, "z").get<std::complex<double>>();
  check(z.size() == 4 && z(3) == std::complex<double>(3, -1.5), "h5py's complex128");
  auto zf = joblet::SharedArray(file, "zf").get<std::complex<float>>();
  check(zf.size() == 2 && zf(1) == std::complex<float>(1, 1), "h5py's complex64");
  check(throws_storage_error([&] { joblet::SharedArray(file, "z").get<double>(); }, "complex128"),
        "complex128 is not read as float64");
  check(
      throws_storage_error([&] { joblet::load<NDArray<double>>(file); }, "not a complete file written by joblet::dump"),
      "load() names a foreign file");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "write") != 0 && std::strcmp(argv[1], "read") != 0)) {
    std::fprintf(stderr, "usage: interop_files write|read DIR\n");
    return 2;
  }
  try {
    if (std::strcmp(argv[1], "write") == 0) {
      write_files(argv[2]);
    } else {
      read_files(argv[2]);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "interop_files: %s\n", e.what());
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
