#!/usr/bin/python3
"""The cache workloads on joblib 1.2 (Debian's /usr/bin/python3), for bench/compare.

    joblib_cache_bench.py [--system joblib-memory] [--workload W] [--workers N] [--quick]

prints "<workload> joblib-memory <value> <unit>", the median of several batches, for
  cache-hit    µs per call of a joblib.Memory-cached function with a small argument, entry present
  cache-miss   µs per call that misses and stores (a new argument each call; joblib never fsyncs)
  hash-1GiB    GB/s of joblib.hash over a 1 GiB float64 array (md5, what Memory keys with)
  cache-entry  bytes allocated on disk for one small entry (its output.pkl and metadata.json;
               the func_code.py written once per function is reported in a note)
mirroring bench/cache_bench.cpp. '#' lines are notes. Caches are made in $CACHE_BENCH_DIR
(default: the current directory), as cache_bench does: compare systems on the same filesystem.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import joblib
import numpy as np

WORKLOADS = ["cache-hit", "cache-miss", "hash-1GiB", "cache-entry"]
SYSTEM = "joblib-memory"


def compute(x):
    return x * 0.5


def report(workload, value, unit):
    print(f"{workload} {SYSTEM} {value:.4g} {unit}", flush=True)


def microseconds_per_call(batches, per_batch, call):
    samples = []
    counter = 0
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(per_batch):
            call(counter)
            counter += 1
        samples.append((time.perf_counter() - start) * 1e6 / per_batch)
    return statistics.median(samples)


def scratch():
    return tempfile.mkdtemp(prefix=".joblib-cache-bench-", dir=os.environ.get("CACHE_BENCH_DIR") or os.getcwd())


def cache_hit(quick):
    location = scratch()
    try:
        cached = joblib.Memory(location, verbose=0).cache(compute)
        cached(1)
        report("cache-hit", microseconds_per_call(5, 200 if quick else 2000, lambda _: cached(1)), "us")
    finally:
        shutil.rmtree(location, ignore_errors=True)


def cache_miss(quick):
    location = scratch()
    try:
        cached = joblib.Memory(location, verbose=0).cache(compute)
        cached(-1)
        report("cache-miss", microseconds_per_call(5, 40 if quick else 300, cached), "us")
    finally:
        shutil.rmtree(location, ignore_errors=True)


def hash_1gib(quick):
    size = (128 << 20) if quick else (1 << 30)
    data = np.arange(size // 8, dtype=np.float64)  # written, so every page is touched
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        joblib.hash(data)
        samples.append(size / 1e9 / (time.perf_counter() - start))
    if quick:
        print("# hash-1GiB: quick run hashes 128 MiB")
    report("hash-1GiB", statistics.median(samples), "GB/s")


def allocated(path):
    return os.stat(path).st_blocks * 512


def cache_entry(_quick):
    location = scratch()
    try:
        cached = joblib.Memory(location, verbose=0).cache(compute)
        cached(1)
        entry_files, entry_bytes, entry_data, function_files = 0, 0, 0, []
        for directory, _, names in os.walk(location):
            for name in names:
                path = os.path.join(directory, name)
                if name in ("output.pkl", "metadata.json"):
                    entry_files += 1
                    entry_bytes += allocated(path)
                    entry_data += os.path.getsize(path)
                else:
                    function_files.append(f"{name} {allocated(path)} B")
        print(f"# cache-entry {SYSTEM}: {entry_files} files, {entry_data} bytes of data, {entry_bytes} bytes "
              f"allocated; once per function: {', '.join(function_files) or 'nothing else'}")
        report("cache-entry", entry_bytes, "B")
    finally:
        shutil.rmtree(location, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", default=SYSTEM, choices=[SYSTEM])
    parser.add_argument("--workload", choices=WORKLOADS)
    parser.add_argument("--workers", type=int, default=1, help="ignored: the cache workloads run in one process")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = {"cache-hit": cache_hit, "cache-miss": cache_miss, "hash-1GiB": hash_1gib, "cache-entry": cache_entry}
    for workload in WORKLOADS:
        if args.workload in (None, workload):
            runs[workload](args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
