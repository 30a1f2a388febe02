#!/usr/bin/python3
"""The joblib side of bench/compare: the workloads of bench/workloads.hpp on joblib 1.2.

Run with Debian's interpreter (/usr/bin/python3, which has python3-joblib), one workload and
one backend per process:

    /usr/bin/python3 bench/joblib_bench.py --workload tiny --backend loky [--workers 2] [--quick]
    -> tiny joblib-loky-cold 27.1 us
       tiny joblib-loky 4.7 us

loky keeps its worker pool between calls, so its main number is the warm pool (a warm-up call
first); on `tiny` that warm-up is itself measured and reported as joblib-loky-cold. threading
and multiprocessing start their workers in every call, as joblet does.
"""

import argparse
import sys
import time

from joblib import Parallel, delayed

# Sizes and constants: keep equal to bench/workloads.hpp.
FULL = dict(tiny_tasks=20000, sleep_tasks=200, cpu_seconds=1.0, busy_tasks=10000, skewed_tasks=2000)
QUICK = dict(tiny_tasks=5000, sleep_tasks=50, cpu_seconds=0.25, busy_tasks=2500, skewed_tasks=500)
SLEEP_EACH = 0.010
BUSY_EACH = 50e-6
SKEWED_LONG = 20e-3
SKEWED_SHORT = 20e-6
MASK = (1 << 64) - 1
LCG_MULTIPLIER = 6364136223846793005
LCG_INCREMENT = 1442695040888963407

WORKLOADS = ("tiny", "tiny-batch1", "sleep10ms", "cpu", "busy50us", "skewed")
BACKENDS = ("threading", "loky", "multiprocessing")


def identity(i):
    return i


def sleep_task(seconds):
    time.sleep(seconds)
    return seconds


def spin_task(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return 1


def cpu_kernel(iterations, seed):
    """The same arithmetic as the C++ cpu_kernel (64-bit LCG step, xor-shift)."""
    x = seed
    for _ in range(iterations):
        x = (x * LCG_MULTIPLIER + LCG_INCREMENT) & MASK
        x ^= x >> 29
    return x


def calibrate_cpu_kernel(seconds):
    iterations = 1 << 14
    while True:
        start = time.perf_counter()
        cpu_kernel(iterations, 12345)
        elapsed = time.perf_counter() - start
        if elapsed >= 0.1:
            return int(iterations * seconds / elapsed)
        iterations *= 2


def skewed_durations(n):
    """1 % long tasks in the same deterministic shuffle as skewed_durations() in C++."""
    durations = [SKEWED_LONG] * (n // 100) + [SKEWED_SHORT] * (n - n // 100)
    x = 2024
    for i in range(n - 1, 0, -1):
        x = (x * LCG_MULTIPLIER + LCG_INCREMENT) & MASK
        j = (x >> 33) % (i + 1)
        durations[i], durations[j] = durations[j], durations[i]
    return durations


def emit(workload, system, value, unit):
    print(f"{workload} {system} {value:.6g} {unit}", flush=True)


def note(text):
    print(f"# {text}", flush=True)


def timed_call(backend, workers, tasks, **options):
    start = time.perf_counter()
    results = Parallel(n_jobs=workers, backend=backend, **options)(tasks)
    return time.perf_counter() - start, results


def warm_up(backend, workers):
    """Starts loky's reusable pool so that the measured call finds it running."""
    if backend == "loky":
        timed_call(backend, workers, (delayed(identity)(i) for i in range(4 * workers)))


def tiny(workload, backend, workers, n, batch_size):
    def once():
        elapsed, results = timed_call(backend, workers, (delayed(identity)(i) for i in range(n)),
                                      batch_size=batch_size)
        if results != list(range(n)):
            raise SystemExit(f"joblib_bench: {workload} {backend}: wrong results")
        return elapsed / n * 1e6

    system = f"joblib-{backend}"
    if backend == "loky" and batch_size == "auto":
        emit(workload, system + "-cold", once(), "us")  # the first call starts the pool: our warm-up
    else:
        warm_up(backend, workers)
    emit(workload, system, once(), "us")


def efficiency(backend, workers, task, arguments):
    warm_up(backend, workers)
    elapsed, results = timed_call(backend, workers, (delayed(task)(a) for a in arguments))
    if len(results) != len(arguments):
        raise SystemExit("joblib_bench: wrong result count")
    return sum(arguments) / workers / elapsed


def cpu_speedup(backend, workers, task_seconds):
    """As measure_cpu_speedup() in C++: half of the sequential runs before the parallel one and
    half after, so that a steady drift of the CPU speed cancels out."""
    iterations = calibrate_cpu_kernel(task_seconds)
    expected = [None] * workers
    sequential = 0.0

    def run_sequential(k):
        nonlocal sequential
        start = time.perf_counter()
        expected[k] = cpu_kernel(iterations, k + 1)
        sequential += time.perf_counter() - start

    half = (workers + 1) // 2
    for k in range(half):
        run_sequential(k)
    warm_up(backend, workers)
    parallel, results = timed_call(backend, workers, (delayed(cpu_kernel)(iterations, k + 1) for k in range(workers)))
    for k in range(half, workers):
        run_sequential(k)
    if results != expected:
        raise SystemExit("joblib_bench: cpu results differ from the sequential run")
    note(f"cpu joblib-{backend}: {iterations} iterations, sequential {sequential:.3f} s, parallel {parallel:.3f} s")
    return sequential / parallel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True, choices=WORKLOADS)
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    workload, backend, workers = args.workload, args.backend, args.workers
    system = f"joblib-{backend}"

    if workload == "tiny":
        tiny(workload, backend, workers, sizes["tiny_tasks"], "auto")
    elif workload == "tiny-batch1":
        tiny(workload, backend, workers, sizes["tiny_tasks"], 1)
    elif workload == "sleep10ms":
        emit(workload, system, efficiency(backend, workers, sleep_task, [SLEEP_EACH] * sizes["sleep_tasks"]),
             "efficiency")
    elif workload == "cpu":
        emit(workload, system, cpu_speedup(backend, workers, sizes["cpu_seconds"]), "speedup")
    elif workload == "busy50us":
        emit(workload, system, efficiency(backend, workers, spin_task, [BUSY_EACH] * sizes["busy_tasks"]),
             "efficiency")
    elif workload == "skewed":
        emit(workload, system, efficiency(backend, workers, spin_task, skewed_durations(sizes["skewed_tasks"])),
             "efficiency")


if __name__ == "__main__":
    sys.exit(main())
