"""Simulate a package's dataflow top against the golden executor, end to end.

:func:`simulate_package` generates the top (or reads one already generated, after checking
that it was made from this very package), computes the test vectors, runs
:mod:`sim.tb_dataflow` on Icarus or Verilator and returns a summary: simulator and
version, samples, mismatches, cycles per image measured against the manifest's claim,
latency, images per second of simulation.
"""

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.intmodel import run
from inq_hw.intmodel.package import load_package, package_hash
from rtl_gen.export import Manifest, RTLError, load_manifest
from sim.runner import SimulationError, run_testbench
from sim.vectors import golden_vectors

__all__ = ["SimulationMismatch", "simulate_package"]

_CYCLES_PER_BEAT_LIMIT = 64  # cycle limit per input beat, stalls included


class SimulationMismatch(SimulationError):
    """The RTL's outputs differ from the golden executor's."""


def _manifest(
    package: Path, rtl_dir: Path, baseline: str | None, folding: Mapping[str, int] | None
) -> Manifest:
    """The dataflow manifest in ``rtl_dir``, generated there first if there is none."""
    from rtl_gen.dataflow import generate_dataflow

    if not (rtl_dir / "manifest.json").is_file():
        generate_dataflow(package, rtl_dir, baseline=baseline, folding=folding)
    try:
        manifest = load_manifest(rtl_dir)
    except RTLError as error:
        raise SimulationError(f"Cannot read the RTL in {rtl_dir}: {error}") from None
    return manifest


def _dataflow_top(manifest: Manifest, rtl_dir: Path, package: Path) -> Any:
    tops = [top for top in manifest.tops if top.params.get("kind") == "dataflow"]
    if len(tops) != 1:
        raise SimulationError(
            f"{rtl_dir} holds no dataflow top (run 'inq-hw generate --unit dataflow')"
        )
    top = tops[0]
    expected = package_hash(package)
    if top.source_hash != expected:
        raise SimulationError(
            f"The Verilog in {rtl_dir} was generated from another package "
            f"(hash {str(top.source_hash)[:12]}…, this package {expected[:12]}…); regenerate it"
        )
    return top


def simulate_package(
    package: str | os.PathLike[str],
    *,
    rtl_dir: str | os.PathLike[str] | None = None,
    simulator: str | None = None,
    samples: int | None = 64,
    images: np.ndarray | None = None,
    seed: int = 0,
    idle: float = 0.2,
    stall: float = 0.2,
    waves: bool = False,
    baseline: str | None = None,
    folding: Mapping[str, int] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout_s: float = 3600,
    max_cycles: int | None = None,
    optimize: bool = True,
    sources: list[Path] | None = None,
) -> dict[str, Any]:
    """Run the package's dataflow top on ``samples`` test images (all when ``None``).

    Args:
        package: Integer model package directory.
        rtl_dir: Where the top is (default ``PACKAGE/rtl-dataflow``, or
            ``PACKAGE/rtl-dataflow-mult8`` for the twin); generated when missing.
        simulator: ``"icarus"``, ``"verilator"`` or None (first installed).
        samples: Test images from the package's data set (all when None).
        images: Integer input images to use instead of the data set (``(N, *shape)``).
        seed, idle, stall: The seed of the random input gaps (probability ``idle``) and
            output stalls (probability ``stall``).
        waves: Keep a waveform file (its path is in the summary).
        baseline, folding: For generating the top when ``rtl_dir`` has none.
        cache_dir: Simulator builds (default ``rtl_dir/sim_build``).
        timeout_s: Wall-clock limit of the simulation.
        max_cycles: Cycle limit of the testbench (default: generous for the stalls).
        optimize: Verilator: optimised build (default) or a quick -O0 one.
        sources: Verilog to simulate instead of the top's file, with the same module and
            ports: a synthesised netlist and its vendor cell models (post-synthesis check).

    Returns:
        The summary (see the module docstring); ``mismatches`` lists the first few.

    Raises:
        SimulationError: Mismatched package and RTL, simulator missing, timeout.
        SimulationMismatch: Any output differs (the summary is its ``summary`` attribute).
    """
    package = Path(package)
    model = load_package(package)
    default = "rtl-dataflow-mult8" if baseline else "rtl-dataflow"
    rtl = Path(rtl_dir) if rtl_dir is not None else package / default
    top = _dataflow_top(_manifest(package, rtl, baseline, folding), rtl, package)
    if top.params.get("baseline"):
        raise SimulationError(
            "The multiplier twin has no golden vectors here; simulate the shift-add top"
        )
    _check_probability("idle", idle)
    _check_probability("stall", stall)
    arrays = golden_vectors(model, samples) if images is None else _vectors_of(model, images)
    count = len(arrays["input"])
    beats = top.params["input"]["beats"]
    with tempfile.TemporaryDirectory(prefix="inq_hw_vectors_") as tmp:
        vectors = Path(tmp) / "vectors.npz"
        np.savez(
            vectors, input=arrays["input"], output=arrays["output"], prediction=arrays["prediction"]
        )
        config = {
            "vectors": str(vectors),
            "samples": count,
            "seed": seed,
            "idle": idle,
            "stall": stall,
            "timing_images": 4,
            "max_cycles": max_cycles or _cycle_limit(count, beats, top.params["interval_cycles"]),
            "input": top.params["input"],
            "output": top.params["output"],
        }
        start = time.perf_counter()
        result = run_testbench(
            sources=sources or [rtl / top.file],
            top=top.name,
            module="sim.tb_dataflow",
            config=config,
            simulator=simulator,
            cache_dir=Path(cache_dir) if cache_dir else rtl / "sim_build",
            waves=waves,
            timeout_s=timeout_s,
            optimize=optimize,
        )
        seconds = time.perf_counter() - start
    summary = _summary(result, top, count, seconds)
    if result["timeout"]:
        raise SimulationError(
            f"The design gave {result['received']} of {count} results within "
            f"{result['cycles']} cycles (cycle limit reached)"
        )
    if summary["mismatched_samples"]:
        first = summary["mismatches"][0]
        error = SimulationMismatch(
            f"{summary['mismatched_samples']} of {count} samples differ from the golden model; "
            f"first: sample {first['sample']}, output {first['output']}: expected "
            f"{first['expected']}, seen {first['seen']}"
        )
        error.summary = summary  # type: ignore[attr-defined]
        raise error
    return summary


def _cycle_limit(count: int, beats: int, interval: int) -> int:
    return 1000 + count * (beats * _CYCLES_PER_BEAT_LIMIT + 4 * interval)


def _vectors_of(model: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    images = np.asarray(images, dtype=np.int64)
    output = run(model, images)
    assert isinstance(output, np.ndarray)
    return {"input": images, "output": output, "prediction": output.argmax(axis=1)}


def _check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise SimulationError(f"The {name} probability must be in [0, 1), not {value!r}")


def _summary(result: dict[str, Any], top: Any, count: int, seconds: float) -> dict[str, Any]:
    claimed = {"latency": top.params["latency_cycles"], "interval": top.params["interval_cycles"]}
    return {
        "top": top.name,
        "simulator": result["simulator"],
        "simulator_version": result["simulator_version"],
        "samples": count,
        "mismatched_samples": result["mismatched_samples"],
        "mismatches": result["mismatches"],
        "cycles": result["cycles"],
        "latency_cycles": result["latency_cycles"],
        "interval_cycles": result["interval_cycles"],
        "claimed_latency_cycles": claimed["latency"],
        "claimed_interval_cycles": claimed["interval"],
        "timing_matches_manifest": (
            result["latency_cycles"] == claimed["latency"]
            and result["interval_cycles"] == claimed["interval"]
        ),
        "seconds": round(seconds, 3),
        "images_per_second": round(count / seconds, 2) if seconds > 0 else None,
        "waves": result.get("waves"),
        "build_dir": result["build_dir"],
    }
