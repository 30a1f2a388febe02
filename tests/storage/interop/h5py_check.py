#!/usr/bin/python3
"""The Python half of the interoperability check, run by CTest with Debian's /usr/bin/python3.

    h5py_check.py DIR

DIR holds the files `interop_files write DIR` made. Checks them with h5py (which joblet did
not write) and h5dump, then writes DIR/from_h5py.h5 for `interop_files read DIR`.
Exit status 0 when every check holds.
"""

import subprocess
import sys

import h5py
import numpy as np

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"h5py_check: FAILED: {what}", file=sys.stderr)


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def check_dump_root(f, type_name):
    check(text(f.attrs["joblet_format"]) == "joblet.dump", "joblet_format attribute")
    check(int(f.attrs["joblet_format_version"]) == 1, "joblet_format_version attribute")
    check(text(f.attrs["joblet_type"]) == type_name, f"joblet_type is {type_name}")
    check(f["value"].dtype == np.uint8 and f["value"].ndim == 1, "/value holds the encoding as bytes")


def check_simulation(path, compressed):
    with h5py.File(path, "r") as f:
        check_dump_root(f, "(anonymous namespace)::Simulation")
        field = f["arrays/0"]
        check(field.dtype == np.float64 and field.shape == (4, 5), "field is float64 (4, 5)")
        check(np.array_equal(field[()], np.arange(20).reshape(4, 5) * 0.5), "field values")
        check(text(field.attrs["joblet_dtype"]) == "float64", "joblet_dtype attribute")
        energies = f["arrays/1"]
        check(energies.dtype == np.float32 and list(energies[()]) == [1.0, 2.0, 3.0], "energies")
        counts = f["arrays/2"]
        check(counts.dtype == np.int32 and np.all(counts[()] == 7) and counts.shape == (2, 3), "counts")
        if compressed:
            check(field.compression == "gzip" and field.chunks is not None, "compressed: chunked gzip")
        else:
            check(field.chunks is None and field.compression is None, "uncompressed: contiguous")
            check(field.id.get_offset() % 64 == 0, "array data is 64-byte aligned in the file")
            check("joblet_xxh3_128" in field.attrs, "checksum attribute")


def check_types(path):
    with h5py.File(path, "r") as f:
        check_dump_root(f, "std::tuple<joblet::NDArray<bool>, joblet::NDArray<signed char>, joblet::NDArray<short>, "
                           "joblet::NDArray<int>, joblet::NDArray<long>, joblet::NDArray<unsigned char>, "
                           "joblet::NDArray<unsigned short>, joblet::NDArray<unsigned int>, "
                           "joblet::NDArray<unsigned long>, joblet::NDArray<float>, joblet::NDArray<double>, "
                           "joblet::NDArray<double> >")
        expected = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                    np.float32, np.float64, np.float64]
        for i, dtype in enumerate(expected):
            d = f[f"arrays/{i}"]
            check(d.dtype == dtype, f"arrays/{i} is {np.dtype(dtype)} (got {d.dtype})")
            check(text(d.attrs["joblet_dtype"]) == np.dtype(dtype).name, f"arrays/{i} joblet_dtype")
        check(list(f["arrays/0"][()]) == [True, False, True, False, True], "bool values")
        check(list(f["arrays/4"][()]) == [0, 1, 2], "int64 values")
        check(f["arrays/9"].shape == (2, 2), "float32 shape")
        check(f["arrays/10"].shape == () and f["arrays/10"][()] == 3.5, "rank-0 array is a scalar dataset")
        check(f["arrays/11"].shape == (0, 4), "empty array keeps its shape")


def check_others(directory):
    with h5py.File(f"{directory}/szip.h5", "r") as f:
        d = f["arrays/0"]
        check(d.compression == "szip", "szip compression")
        check(np.array_equal(d[()], (np.arange(10000) % 100).reshape(1000, 10).astype(np.float64)), "szip values")
    with h5py.File(f"{directory}/chunks.h5", "r") as f:
        rows, columns = f["arrays/0"], f["arrays/1"]
        check(rows.compression == "gzip" and rows.shuffle and rows.chunks[1:] == (700, 3), "rows: chunked, shuffled")
        check(np.array_equal(rows[()], (np.arange(630000) % 100).reshape(300, 700, 3).astype(np.float64)),
              "rows: every chunk, the partial last one too")
        check(columns.chunks[0] == 1 and np.array_equal(
            columns[()], (np.arange(900000) % 100).reshape(3, 300000).astype(np.int32)), "columns: chunked by row")
    with h5py.File(f"{directory}/shared.h5", "r") as f:
        d = f["field"]
        check(d.shape == (6, 7) and d.dtype == np.float32, "SharedArray file dataset")
        check(np.array_equal(d[()], (np.arange(42) % 100).reshape(6, 7).astype(np.float32)), "SharedArray values")


def check_complex(path, compressed):
    expected = np.arange(12) - 0.5j * np.arange(12)
    with h5py.File(path, "r") as f:
        waves, phases = f["arrays/0"], f["arrays/1"]
        check(waves.dtype == np.complex128 and waves.shape == (3, 4), f"{path}: waves are complex128 (3, 4)")
        check(np.array_equal(waves[()], expected.reshape(3, 4)), f"{path}: complex128 values")
        check(phases.dtype == np.complex64 and np.array_equal(phases[()], expected[:5].astype(np.complex64)),
              f"{path}: complex64 values")
        check(text(waves.attrs["joblet_dtype"]) == "complex128", f"{path}: joblet_dtype complex128")
        stored = waves.id.get_type()
        check([stored.get_member_name(0), stored.get_member_name(1)] == [b"r", b"i"], f"{path}: members r and i")
        check((waves.compression == "gzip") == compressed, f"{path}: compressed only when asked")


def check_named(path):
    with h5py.File(path, "r") as f:
        field = f["field"]
        check(field.shape == (4, 5) and field.dtype == np.float64, "named: /field is the (4, 5) array")
        check(np.array_equal(field[()], (np.arange(20) % 100).reshape(4, 5).astype(np.float64)), "named: field values")
        check(field.id == f["arrays/0"].id, "named: /field is /arrays/0 by another name, not a copy")
        check(f["value"].dtype == np.uint8, "named: the reserved key 'value' leaves /value alone")
        check(abs(f.attrs["temperature"] - 2.27) < 1e-12, "named: a number is a root attribute")
        check(text(f.attrs["model"]) == "ising", "named: a string is a root attribute")
        check(text(f.attrs["joblet_type"]).startswith("std::tuple"), "named: joblet_ attributes stay joblet's")
        check(np.array_equal(f["run1/a/0"][()], np.arange(3, dtype=np.float64)), "named: nested maps are groups")
        check(list(f["run1/a/1"][()]) == [1.5, 2.5], "named: several arrays under a key are numbered")
        check(int(f["run1"].attrs["steps"]) == 1000, "named: a number in a nested map is its group's attribute")
        check("bad" not in f, "named: a key with '/' names nothing")
        check(f["pressure"].shape == (2, 2) and list(f["density"][()]) == [0.0, 1.0, 2.0],
              "named: a list of (name, value) pairs names its arrays too")


def check_h5dump(directory):
    for name in ["simulation.h5", "compressed.h5", "chunks.h5", "szip.h5", "types.h5", "shared.h5", "complex.h5"]:
        run = subprocess.run(["h5dump", "-H", f"{directory}/{name}"], capture_output=True, text=True)
        check(run.returncode == 0 and "DATASET" in run.stdout, f"h5dump -H parses {name}")
    run = subprocess.run(["h5dump", "-d", "/arrays/0", f"{directory}/simulation.h5"], capture_output=True, text=True)
    check(run.returncode == 0 and "(0,0): 0, 0.5, 1, 1.5, 2," in run.stdout, "h5dump prints the field's values")


def write_for_joblet(directory):
    with h5py.File(f"{directory}/from_h5py.h5", "w") as f:
        f["x"] = np.arange(12, dtype=np.float64).reshape(3, 4)
        f.create_dataset("group/y", data=np.arange(1000, dtype=np.int32), chunks=(100,), compression="gzip")
        f["flags"] = np.array([True, False, True])
        f["big_endian"] = np.arange(4, dtype=">f8")
        f["names"] = np.array([b"a", b"bc"])
        f["z"] = np.arange(4) - 0.5j * np.arange(4)
        f["zf"] = np.array([0, 1 + 1j], dtype=np.complex64)


def main():
    directory = sys.argv[1]
    check_simulation(f"{directory}/simulation.h5", compressed=False)
    check_simulation(f"{directory}/compressed.h5", compressed=True)
    check_types(f"{directory}/types.h5")
    check_others(directory)
    check_complex(f"{directory}/complex.h5", compressed=False)
    check_complex(f"{directory}/complex_compressed.h5", compressed=True)
    check_named(f"{directory}/named.h5")
    check_h5dump(directory)
    write_for_joblet(directory)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
