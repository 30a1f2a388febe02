#!/usr/bin/python3
"""The MPI workloads on mpi4py.futures (python3-mpi4py 3.1.4, Debian's /usr/bin/python3), for bench/compare.

    mpirun --oversubscribe --bind-to none -n 2 /usr/bin/python3 -m mpi4py.futures bench/mpi4py_bench.py \\
        --workload tiny [--workers N] [--quick]
    -> tiny mpi4py-futures 51.2 us

Started through `python3 -m mpi4py.futures`, rank 0 runs this script and every other rank is a
worker of the MPIPoolExecutor it makes (no MPI_Comm_spawn, which oversubscribed OpenMPI jobs
refuse). Rank 0 hands out tasks and collects results but runs none, so on N ranks N - 1 compute.
The measurement is the job's first map(), the executor's creation included; mpirun's start-up
is not. Sizes mirror bench/workloads.hpp:
  tiny         20,000 tasks returning i, map(chunksize = tasks / (4 × workers)): mpi4py has no
               automatic batching, so this is the chunking a user would pick; µs per task
  tiny-batch1  the same with chunksize = 1 (map's default)
  sleep10ms    200 × 10 ms sleeps; efficiency = (200 × 10 ms / ranks) / wall, ranks including rank 0
'#' lines are notes (the second, warm call's number).
"""

import argparse
import sys
import time

from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor

SYSTEM = "mpi4py-futures"
FULL = dict(tiny_tasks=20000, sleep_tasks=200)
QUICK = dict(tiny_tasks=5000, sleep_tasks=50)
SLEEP_EACH = 0.010


def identity(i):
    return i


def sleep_task(seconds):
    time.sleep(seconds)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", required=True, choices=["tiny", "tiny-batch1", "sleep10ms"])
    parser.add_argument("--system", default=SYSTEM, choices=[SYSTEM])
    parser.add_argument("--workers", type=int, help="ignored: every rank but rank 0 is a worker")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    ranks = MPI.COMM_WORLD.Get_size()
    if ranks < 2:
        sys.exit("mpi4py_bench.py: run it under mpirun with at least 2 ranks, through python3 -m mpi4py.futures")
    workers = ranks - 1

    if args.workload == "sleep10ms":
        n = sizes["sleep_tasks"]
        function, arguments, expected, chunksize = sleep_task, [SLEEP_EACH] * n, [SLEEP_EACH] * n, 1
    else:
        n = sizes["tiny_tasks"]
        chunksize = max(n // (4 * workers), 1) if args.workload == "tiny" else 1
        function, arguments, expected = identity, range(n), list(range(n))

    start = time.perf_counter()
    with MPIPoolExecutor() as executor:
        results = list(executor.map(function, arguments, chunksize=chunksize))
        seconds = time.perf_counter() - start  # the executor's creation included
        start = time.perf_counter()
        warm_results = list(executor.map(function, arguments, chunksize=chunksize))
        warm_seconds = time.perf_counter() - start
    if results != expected or warm_results != expected:
        sys.exit(f"mpi4py_bench.py: wrong results for {args.workload}")

    def value(wall):
        if args.workload == "sleep10ms":
            return n * SLEEP_EACH / ranks / wall
        return wall / n * 1e6

    unit = "efficiency" if args.workload == "sleep10ms" else "us"
    print(f"# {args.workload} {SYSTEM}: {ranks} ranks, {workers} computing; chunksize {chunksize}; "
          f"a second (warm) call: {value(warm_seconds):.4g} {unit}")
    print(f"{args.workload} {SYSTEM} {value(seconds):.4g} {unit}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
