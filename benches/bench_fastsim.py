"""Bench: the compiled Verilator engine against the cocotb engine, same design, same run.

digits-cnn unrolled (bits from ``$INQ_HW_FASTSIM_BITS``, default ``2,3``; the 4- and 5-bit
tops take far longer to build): the whole digits test split, repeated until the run lasts
at least a second, through the fast engine with random gaps and stalls (p = 0.2, seed 0),
0 mismatches required; then ``$INQ_HW_FASTSIM_COCOTB`` images (default 24) of the same
top through cocotb on Verilator. Printed per design: build seconds of each engine (its own
Verilator build, timed apart from the run), run images/s of each (build excluded; the fast
engine's also per CPU second of the harness, its speed on one core of its own whatever
the machine's load; the cocotb engine's per CPU second of its child and simulator), and
the ratio, wall against wall and CPU against CPU. Then lenet5 on digits28 with its first
Linear folded (``$INQ_HW_FASTSIM_LENET_FOLD``, default 30), 2,000 images (the 359 test
images repeated).

``$INQ_HW_FASTSIM_COCOTB_CACHE`` keeps the cocotb builds in that directory across runs (a
5-bit cocotb build takes minutes); their build column is then marked "(cache kept)": a
cache check where the build was kept, a build where it was not (the runner does not say
which). The fast engine builds afresh in every run (a temporary directory).

Packages come from ``$INQ_HW_BENCH_PACKAGES`` (default ``runs/demo/table``):
``pkg<b>-random`` for digits-cnn and ``lenet5-4`` for lenet5 (``inq-hw export`` of an INQ
checkpoint); missing ones are skipped with a note.
"""

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benches._harness import BenchError, print_table

LENET_IMAGES = 2000
_MIN_RUN_S = 1.0


def _root() -> Path:
    return Path(os.environ.get("INQ_HW_BENCH_PACKAGES", "runs/demo/table"))


def _bits() -> list[int]:
    return [int(b) for b in os.environ.get("INQ_HW_FASTSIM_BITS", "2,3").split(",") if b]


def _cocotb_cache() -> Path | None:
    chosen = os.environ.get("INQ_HW_FASTSIM_COCOTB_CACHE")
    return Path(chosen) if chosen else None


def _test_inputs(package: Path) -> np.ndarray:
    from inq_hw.intmodel.package import load_package
    from sim.vectors import golden_vectors

    return golden_vectors(load_package(package), None)["input"]


def _fast(package: Path, rtl: Path, images: np.ndarray, cache: Path) -> dict[str, Any]:
    """The fast engine on ``images``, repeated until the run lasts a second."""
    from sim.simulate import simulate_package

    summary = simulate_package(package, rtl_dir=rtl, images=images, engine="fast", cache_dir=cache)
    if summary["run_seconds"] < _MIN_RUN_S:
        repeat = math.ceil(_MIN_RUN_S / max(summary["run_seconds"], 1e-3)) + 1
        build_s = summary["build_seconds"]
        summary = simulate_package(
            package,
            rtl_dir=rtl,
            images=np.concatenate([images] * repeat),
            engine="fast",
            cache_dir=cache,
        )
        summary["build_seconds"] = build_s  # the first call built it; this one was cached
    return summary


def measure_digits(bits: int, cocotb_images: int) -> dict[str, Any] | None:
    from rtl_gen.dataflow import generate_dataflow
    from sim.simulate import simulate_package

    package = _root() / f"pkg{bits}-random"
    if not (package / "model.json").is_file():
        print(f"  (no package at {package}; skipped)")
        return None
    rtl = package / "rtl-dataflow"
    if not (rtl / "manifest.json").is_file():
        generate_dataflow(package, rtl)
    images = _test_inputs(package)
    load_start, start = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_fastsim_") as tmp:
        fast = _fast(package, rtl, images, Path(tmp) / "fast")
        _report(f"digits-cnn {bits}-bit fast", fast)
        slow = simulate_package(
            package,
            rtl_dir=rtl,
            images=images[:cocotb_images],
            engine="cocotb",
            simulator="verilator",
            cache_dir=_cocotb_cache() or Path(tmp) / "cocotb",
        )
        _report(f"digits-cnn {bits}-bit cocotb", slow)
    if fast["mismatched_samples"] or slow["mismatched_samples"]:
        raise BenchError(f"{bits}-bit: mismatches in a run that must have none")
    return {
        "design": f"digits-cnn {bits}-bit unrolled",
        "fast": fast,
        "cocotb": slow,
        "load_average_1min": [load_start, os.getloadavg()[0]],
        "seconds": time.perf_counter() - start,
    }


def _report(name: str, summary: dict[str, Any]) -> None:
    """One line per finished run, at once (a long bench stopped early keeps its figures)."""
    keys = (
        "samples",
        "mismatched_samples",
        "interval_cycles",
        "build_seconds",
        "run_seconds",
        "images_per_second",
        "harness_cpu_seconds",
        "harness_process_cpu_seconds",
        "run_cpu_seconds",
    )
    figures = {key: summary.get(key) for key in keys}
    print(f"  {name}: {json.dumps(figures)} load {os.getloadavg()[0]:.1f}", flush=True)


def measure_lenet(fold: int) -> dict[str, Any] | None:
    from inq_hw.intmodel.package import load_package
    from rtl_gen.dataflow import generate_dataflow

    package = _root() / "lenet5-4"
    if not (package / "model.json").is_file():
        print(f"  (no package at {package}; skipped)")
        return None
    first_linear = next(
        layer.name for layer in load_package(package).weight_layers() if layer.kind == "linear"
    )
    rtl = package / f"rtl-dataflow-fold{fold}"
    if not (rtl / "manifest.json").is_file():
        generate_dataflow(package, rtl, folding={first_linear: fold})
    test = _test_inputs(package)
    images = np.concatenate([test] * math.ceil(LENET_IMAGES / len(test)))[:LENET_IMAGES]
    with tempfile.TemporaryDirectory(prefix="bench_fastsim_") as tmp:
        from sim.simulate import simulate_package

        fast = simulate_package(
            package, rtl_dir=rtl, images=images, engine="fast", cache_dir=Path(tmp) / "fast"
        )
    return {"design": f"lenet5 4-bit, {first_linear} folded by {fold}", "fast": fast}


def _row(result: dict[str, Any]) -> list[str]:
    fast, slow = result["fast"], result.get("cocotb")
    cpu = fast["harness_cpu_seconds"]
    ratio = fast["images_per_second"] / slow["images_per_second"] if slow else None
    # per CPU-second of the processes that ran each simulation (build excluded): the
    # engines' speed ratio whatever share of a core the machine's load left them
    fast_cpu, slow_cpu = fast.get("run_cpu_seconds"), (slow or {}).get("run_cpu_seconds")
    cpu_ratio = (
        (fast["samples"] / fast_cpu) / (slow["samples"] / slow_cpu)
        if slow and fast_cpu and slow_cpu
        else None
    )
    return [
        result["design"],
        str(fast["samples"]),
        str(fast["mismatched_samples"]),
        f"{fast['interval_cycles']} / {fast['claimed_interval_cycles']}",
        f"{fast['build_seconds']:.0f}",
        f"{fast['images_per_second']:.0f}",
        f"{fast['samples'] / cpu:.0f}" if cpu else "-",
        (f"{slow['build_seconds']:.0f}" + (" (cache kept)" if _cocotb_cache() else ""))
        if slow
        else "-",
        f"{slow['images_per_second']:.1f} ({slow['samples']})" if slow else "-",
        f"{slow['samples'] / slow_cpu:.1f}" if slow and slow_cpu else "-",
        f"{ratio:.0f}x" if ratio else "-",
        f"{cpu_ratio:.0f}x" if cpu_ratio else "-",
    ]


def run() -> dict[str, Any]:
    cocotb_images = int(os.environ.get("INQ_HW_FASTSIM_COCOTB", "24"))
    results = [r for bits in _bits() if (r := measure_digits(bits, cocotb_images))]
    lenet = measure_lenet(int(os.environ.get("INQ_HW_FASTSIM_LENET_FOLD", "30")))
    if lenet is not None:
        results.append(lenet)
    print_table(
        "Fast engine (compiled Verilator harness) against cocotb on Verilator, gaps and "
        "stalls p = 0.2",
        [
            "design",
            "images",
            "mismatches",
            "cycles/image (measured / manifest)",
            "fast build s",
            "fast images/s",
            "fast images/CPU-s",
            "cocotb build s",
            "cocotb images/s (images)",
            "cocotb images/CPU-s",
            "ratio (wall)",
            "ratio (CPU)",
        ],
        [_row(r) for r in results],
    )
    return {"runs": results, "load_average_1min": os.getloadavg()[0]}


if __name__ == "__main__":
    run()
