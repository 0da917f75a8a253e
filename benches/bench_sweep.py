"""Bench: a design-space sweep on Ray against the local process pool, and Ray's overhead.

The sweep is tests/test_sweep.py's: 4 points (weight bits 2, 3 x seeds 0, 1) of the tiny
flow (a narrow digits-cnn, 4 FP32 epochs, 1 INQ epoch per step, 3 images simulated on
Icarus, analytic cost), each executor from an empty stage cache, one after the other in
this process, with ``jobs`` tasks in flight (``$INQ_HW_BENCH_SWEEP_JOBS``, default 2).
Printed: the sweep's wall time on each (the pool's includes starting its workers; Ray's
cluster start is timed apart), and the time per no-op task on each executor, in flight
``jobs`` at a time (the scheduling overhead a stage pays besides its work).
"""

import concurrent.futures
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benches._harness import BenchError, print_table
from tests.test_sweep import TINY

SWEEP = TINY  # the tests' 4-point sweep (tests/test_sweep.py)
NOOP_TASKS = 200


def noop() -> None:
    """A task that does nothing (importable by Ray's and the pool's workers)."""


def _sweep_seconds(directory: Path, executor: str, jobs: int) -> float:
    from inq_hw.sweep import SweepConfig, run_sweep

    sweep = SweepConfig.from_toml(directory / "sweep.toml")
    start = time.perf_counter()
    record = run_sweep(
        sweep, out=directory / executor, executor=executor, jobs=jobs, echo=lambda _: None
    )
    seconds = time.perf_counter() - start
    if [p for p in record["points"] if p["stages_computed"] == []]:
        raise BenchError(f"The {executor} sweep read a point back from an old cache")
    return seconds


def _ray_noop_seconds(jobs: int) -> tuple[float, float]:
    """Per task: ``NOOP_TASKS`` in flight ``jobs`` at a time; and one task's round trip."""
    import ray

    task = ray.remote(noop).options(num_cpus=1)
    ray.get([task.remote() for _ in range(2 * jobs)])  # workers up and warm
    start = time.perf_counter()
    pending: list[Any] = []
    for _ in range(NOOP_TASKS):
        if len(pending) >= jobs:
            _, pending = ray.wait(pending, num_returns=1)
        pending.append(task.remote())
    ray.get(pending)
    in_flight = (time.perf_counter() - start) / NOOP_TASKS
    start = time.perf_counter()
    for _ in range(50):
        ray.get(task.remote())
    return in_flight, (time.perf_counter() - start) / 50


def _pool_noop_seconds(jobs: int) -> tuple[float, float]:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        list(pool.map(_call_noop, range(2 * jobs)))
        start = time.perf_counter()
        list(pool.map(_call_noop, range(NOOP_TASKS), chunksize=1))
        in_flight = (time.perf_counter() - start) / NOOP_TASKS
        start = time.perf_counter()
        for _ in range(50):
            pool.submit(noop).result()
        return in_flight, (time.perf_counter() - start) / 50


def _call_noop(_: int) -> None:
    noop()


def run() -> dict[str, Any]:
    from inq_hw.sweep.executors import RayExecutor

    jobs = int(os.environ.get("INQ_HW_BENCH_SWEEP_JOBS", "2"))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as name:
        directory = Path(name)
        (directory / "sweep.toml").write_text(SWEEP)
        pool_s = _sweep_seconds(directory, "pool", jobs)
        pool_noop, pool_trip = _pool_noop_seconds(jobs)
        start = time.perf_counter()
        cluster = RayExecutor(jobs, None)  # the local cluster the sweep then joins
        init_s = time.perf_counter() - start
        try:
            ray_s = _sweep_seconds(directory, "ray", jobs)
            ray_noop, ray_trip = _ray_noop_seconds(jobs)
        finally:
            cluster.close()
    rows = [
        ["4-point tiny sweep, wall s", f"{pool_s:.1f}", f"{ray_s:.1f} (+{init_s:.1f} start)"],
        [f"no-op task, {jobs} in flight, ms", f"{1e3 * pool_noop:.2f}", f"{1e3 * ray_noop:.2f}"],
        ["no-op task round trip, ms", f"{1e3 * pool_trip:.2f}", f"{1e3 * ray_trip:.2f}"],
    ]
    print_table(f"Sweep executors ({jobs} jobs)", ["", "process pool", "Ray (local)"], rows)
    return {
        "jobs": jobs,
        "pool_sweep_s": pool_s,
        "ray_sweep_s": ray_s,
        "ray_init_s": init_s,
        "pool_noop_task_s": pool_noop,
        "ray_noop_task_s": ray_noop,
        "pool_noop_round_trip_s": pool_trip,
        "ray_noop_round_trip_s": ray_trip,
    }


if __name__ == "__main__":
    run()
