#!/usr/bin/python3
"""The array workloads on joblib 1.2, numpy and h5py (Debian's /usr/bin/python3), for bench/compare.

    joblib_array_bench.py --system joblib-arrays|numpy|h5py --workload W [--workers N] [--quick]

prints "<workload> <system> <value> <unit>" (the median of several runs), mirroring
bench/array_bench.cpp:
  dump-1GiB             GB/s writing a 1 GiB float64 array (sin(i * 1e-4)), then fsync:
                        joblib.dump / numpy.save / h5py create_dataset (contiguous)
  dump-1GiB-compressed  GB/s of array bytes: joblib.dump(compress=3) / numpy.savez_compressed /
                        h5py gzip level 3 with shuffle, 1 MiB chunks; then fsync
  load-1GiB             GB/s reading it back (file in the page cache): joblib.load / numpy.load /
                        h5py dataset[()]
  load-mmap-1GiB        ms for joblib.load(mmap_mode='r') / numpy.load(mmap_mode='r'); for h5py,
                        opening the file and the dataset (lazy, not a mapping: h5py cannot map)
  dump-1GiB-peak        MiB of peak resident memory a dump adds to the array's own
  load-1GiB-peak        MiB of peak resident memory a load adds beyond the loaded array
  results-8x100MB       ms for 8 tasks on N loky workers each returning a 100 MB array, until
                        the caller has summed them (joblib only)
--quick uses 64 MiB arrays and 8 x 8 MB results. '#' lines are notes. Files are made in
$ARRAY_BENCH_DIR (default: the current directory), as array_bench does.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

WORKLOADS = ["dump-1GiB", "dump-1GiB-compressed", "load-1GiB", "load-mmap-1GiB", "dump-1GiB-peak",
             "load-1GiB-peak", "results-8x100MB"]
SYSTEMS = ["joblib-arrays", "numpy", "h5py"]  # joblib-arrays: joblib.dump/load, and loky for results
CHUNK = 131072  # float64 elements: 1 MiB chunks, as joblet's compressed datasets


def report(workload, system, value, unit):
    print(f"{workload} {system} {value:.4g} {unit}", flush=True)


def note(text):
    print(f"# {text}", flush=True)


def make_field(nbytes):
    return np.sin(np.arange(nbytes // 8, dtype=np.float64) * 1e-4)


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def warm(path):
    with open(path, "rb") as f:
        while f.read(4 << 20):
            pass


def dump(system, array, path, compressed):
    if system == "joblib-arrays":
        import joblib
        joblib.dump(array, path, compress=3 if compressed else 0)
    elif system == "numpy":
        if compressed:
            np.savez_compressed(path, x=array)
        else:
            np.save(path, array)
    else:
        import h5py
        with h5py.File(path, "w") as f:
            if compressed:
                f.create_dataset("x", data=array, chunks=(min(CHUNK, array.size),), compression="gzip",
                                 compression_opts=3, shuffle=True)
            else:
                f.create_dataset("x", data=array)
    fsync_path(path)


def load(system, path, mmap):
    if system == "joblib-arrays":
        import joblib
        return joblib.load(path, mmap_mode="r" if mmap else None)
    if system == "numpy":
        return np.load(path, mmap_mode="r" if mmap else None)
    import h5py
    f = h5py.File(path, "r")
    dataset = f["x"]
    if mmap:
        return dataset  # lazy; the file stays open with it
    array = dataset[()]
    f.close()
    return array


def file_name(system):
    return {"joblib-arrays": "array.pkl", "numpy": "array.npy", "h5py": "array.h5"}[system]


def median_of(runs, measure):
    return statistics.median(measure() for _ in range(runs))


def status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return -1


def peak_extra_mib(prepare, body):
    """Peak RSS a forked child adds while running body(), after prepare(), in MiB."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            state = prepare()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = status_kib("VmRSS:")
            body(state)
            os.write(write_end, str((status_kib("VmHWM:") - before) / 1024).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    text = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    return float(text)


def run_files(args, directory):
    nbytes = (64 << 20) if args.quick else (1 << 30)
    gigabytes = nbytes / 1e9
    path = os.path.join(directory, file_name(args.system))
    if args.system == "numpy" and args.workload == "dump-1GiB-compressed":
        path = os.path.join(directory, "array.npz")
    workload = args.workload
    if workload in ("dump-1GiB", "dump-1GiB-compressed"):
        array = make_field(nbytes)
        compressed = workload == "dump-1GiB-compressed"

        def once():
            if os.path.exists(path):
                os.remove(path)
            start = time.perf_counter()
            dump(args.system, array, path, compressed)
            return time.perf_counter() - start

        seconds = median_of(1 if compressed and not args.quick else 3, once)
        note(f"{workload} {args.system}: file of {os.path.getsize(path) / 1e6:.1f} MB for {gigabytes * 1e3:.1f} MB")
        report(workload, args.system, gigabytes / seconds, "GB/s")
    elif workload in ("load-1GiB", "load-mmap-1GiB"):
        dump(args.system, make_field(nbytes), path, False)
        warm(path)
        mmap = workload == "load-mmap-1GiB"

        def once():
            start = time.perf_counter()
            loaded = load(args.system, path, mmap)
            elapsed = time.perf_counter() - start
            if not np.isfinite(loaded[len(loaded) // 2]):
                raise RuntimeError("wrong value loaded")
            return elapsed

        seconds = median_of(9 if mmap else 3, once)
        if mmap:
            if args.system == "h5py":
                note("load-mmap-1GiB h5py: opening the file and the dataset; h5py reads on access, it cannot map")
            report(workload, args.system, seconds * 1e3, "ms")
        else:
            report(workload, args.system, gigabytes / seconds, "GB/s")
    elif workload == "dump-1GiB-peak":
        def prepare():
            array = make_field(nbytes)
            array[::512] += 0  # resident before the dump
            return array

        extra = peak_extra_mib(prepare, lambda array: dump(args.system, array, path, False))
        report(workload, args.system, extra, "MiB")
    elif workload == "load-1GiB-peak":
        dump(args.system, make_field(nbytes), path, False)
        warm(path)
        extra = peak_extra_mib(lambda: None, lambda _: load(args.system, path, False))
        report(workload, args.system, extra - nbytes / (1 << 20), "MiB")
    else:
        return False
    return True


def task(i, elements):
    return np.full(elements, float(i))


def run_results(args):
    if args.workload != "results-8x100MB" or args.system != "joblib-arrays":
        return False
    from joblib import Parallel, delayed
    elements = (8_000_000 if args.quick else 100_000_000) // 8
    with Parallel(n_jobs=args.workers, backend="loky") as parallel:
        parallel(delayed(abs)(i) for i in range(2))  # warm up: start the workers

        def once():
            start = time.perf_counter()
            results = parallel(delayed(task)(i, elements) for i in range(8))
            total = sum(float(r.sum()) for r in results)
            elapsed = time.perf_counter() - start
            if total != elements * 28.0:
                raise RuntimeError("wrong sum of the results")
            return elapsed

        report(args.workload, args.system, median_of(3, once) * 1e3, "ms")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", required=True, choices=SYSTEMS)
    parser.add_argument("--workload", required=True, choices=WORKLOADS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix=".array-bench-", dir=os.environ.get("ARRAY_BENCH_DIR") or os.getcwd())
    try:
        if not (run_files(args, directory) if args.workload != "results-8x100MB" else run_results(args)):
            print(f"joblib_array_bench.py: nothing to run for {args.workload} on {args.system}", file=sys.stderr)
            return 2
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
