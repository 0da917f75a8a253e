"""Simulate a package's dataflow top against the golden executor, end to end.

:func:`simulate_package` generates the top (or reads one already generated, after checking
that it was made from this very package), computes the test vectors, runs them on one
of two engines (the compiled Verilator harness of :mod:`sim.fast.engine`, or cocotb's
:mod:`sim.tb_dataflow` on Icarus or Verilator) and returns one summary for both: engine,
simulator and version, samples, mismatches, cycles per image measured against the
manifest's claim, latency, build and run seconds apart, and images per second of the run
(the build excluded).
"""

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.intmodel import run
from inq_hw.intmodel.package import load_package, package_hash
from rtl_gen.export import Manifest, RTLError, load_manifest
from sim.runner import SimulationError, run_testbench
from sim.vectors import golden_vectors

__all__ = ["ENGINES", "SimulationMismatch", "choose_engine", "simulate_package"]

_CYCLES_PER_BEAT_LIMIT = 64  # cycle limit per input beat, stalls included
_TIMING_IMAGES = 4  # the first results, without gaps or stalls: latency and interval


class SimulationMismatch(SimulationError):
    """The RTL's outputs differ from the golden executor's."""


def _manifest(
    package: Path,
    rtl_dir: Path,
    baseline: str | None,
    folding: Mapping[str, int] | None,
    pipeline: Mapping[str, int] | None,
) -> Manifest:
    """The dataflow manifest in ``rtl_dir``, generated there first if there is none; a
    folding or pipelining given must be the one the RTL found was generated with."""
    from rtl_gen.dataflow import generate_dataflow

    if not (rtl_dir / "manifest.json").is_file():
        generate_dataflow(package, rtl_dir, baseline=baseline, folding=folding, pipeline=pipeline)
    try:
        manifest = load_manifest(rtl_dir)
    except RTLError as error:
        raise SimulationError(f"Cannot read the RTL in {rtl_dir}: {error}") from None
    _check_choices(manifest, rtl_dir, {"fold": folding, "pipeline": pipeline})
    return manifest


def _check_choices(
    manifest: Manifest, rtl_dir: Path, asked: Mapping[str, Mapping[str, int] | None]
) -> None:
    """Refuse a folding or pipelining asked for that the RTL found in ``rtl_dir`` was not
    generated with (``None``: nothing asked), instead of silently simulating other RTL."""
    engines = {
        info["layer"]: info
        for top in manifest.tops
        if top.params.get("kind") == "dataflow"
        for info in top.params.get("engines", [])
    }
    option = {"fold": "--fold", "pipeline": "--pipeline"}
    for key, wanted in asked.items():
        for layer, value in (wanted or {}).items():
            built = engines.get(layer, {}).get(key)
            if built is not None and built != value:
                raise SimulationError(
                    f"The RTL in {rtl_dir} has {key} {built} for layer {layer!r}, not the "
                    f"{option[key]} {value} asked for; regenerate it with 'inq-hw generate "
                    f"--unit dataflow' (or give another --rtl)"
                )


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


ENGINES = ("fast", "cocotb")


def choose_engine(engine: str | None, simulator: str | None = None) -> str:
    """``engine``, or the default: ``"fast"`` when Verilator is installed (and no other
    simulator was asked for), else ``"cocotb"``.

    Raises:
        SimulationError: Unknown engine, or the fast engine on a simulator other than
            Verilator.
    """
    from sim.fast.engine import fast_available

    if engine is not None and engine not in ENGINES:
        raise SimulationError(f"Engine must be one of {ENGINES}, not {engine!r}")
    if engine == "fast" and simulator not in (None, "verilator"):
        raise SimulationError(f"The fast engine runs on Verilator, not {simulator!r}")
    if engine is None:
        engine = "fast" if simulator in (None, "verilator") and fast_available() else "cocotb"
    return engine


def simulate_package(
    package: str | os.PathLike[str],
    *,
    rtl_dir: str | os.PathLike[str] | None = None,
    engine: str | None = None,
    simulator: str | None = None,
    samples: int | None = 64,
    images: np.ndarray | None = None,
    seed: int = 0,
    idle: float = 0.2,
    stall: float = 0.2,
    waves: bool = False,
    activity: str | os.PathLike[str] | None = None,
    baseline: str | None = None,
    folding: Mapping[str, int] | None = None,
    pipeline: Mapping[str, int] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout_s: float = 3600,
    max_cycles: int | None = None,
    optimize: bool = True,
    sources: list[Path] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the package's dataflow top on ``samples`` test images (all when ``None``).

    Args:
        package: Integer model package directory.
        rtl_dir: Where the top is (default ``PACKAGE/rtl-dataflow``, or
            ``PACKAGE/rtl-dataflow-mult8`` for the twin); generated when missing.
        engine: ``"fast"`` (the compiled Verilator harness, :mod:`sim.fast.engine`),
            ``"cocotb"`` (:mod:`sim.tb_dataflow`) or None (fast when Verilator is here).
        simulator: cocotb engine: ``"icarus"``, ``"verilator"`` or None (first installed).
        samples: Test images from the package's data set (all when None).
        images: Integer input images to use instead of the data set (``(N, *shape)``).
        seed, idle, stall: The seed of the random input gaps (probability ``idle``) and
            output stalls (probability ``stall``).
        waves: Keep a waveform file (its path is in the summary).
        activity: Fast engine: write switching activity (``sim.activity``'s JSON format)
            here, from an FST of the run recorded by a separate trace-enabled build.
        baseline, folding, pipeline: For generating the top when ``rtl_dir`` has none.
        cache_dir: Simulator builds (default ``rtl_dir/sim_build``).
        timeout_s: Wall-clock limit of the simulation.
        max_cycles: Cycle limit of the testbench (default: generous for the stalls).
        optimize: Verilator: optimised build (default) or a quick -O0 one.
        sources: Verilog to simulate instead of the top's file, with the same module and
            ports: a synthesised netlist and its vendor cell models (post-synthesis check).
        optimize: cocotb on Verilator: optimised build (default) or a quick -O0 one.
        log: Where progress lines go (default: stderr, flushed per line).

    Returns:
        The summary (see the module docstring); ``mismatches`` lists the first few.

    Raises:
        SimulationError: Mismatched package and RTL, simulator missing, timeout.
        SimulationMismatch: Any output differs (the summary is its ``summary`` attribute).
    """
    run = _Run(
        engine=choose_engine(engine, simulator),
        simulator=simulator,
        seed=seed,
        idle=_check_probability("idle", idle),
        stall=_check_probability("stall", stall),
        waves=waves,
        activity=Path(activity) if activity is not None else None,
        timeout_s=timeout_s,
        max_cycles=max_cycles,
        optimize=optimize,
        log=log or _stderr,
        sources=tuple(Path(path) for path in sources) if sources else None,
    )
    if run.sources is not None and run.engine == "fast":
        raise SimulationError("Other Verilog sources (a netlist) run on the cocotb engine only")
    if run.activity is not None and run.engine != "fast":
        raise SimulationError("Switching activity (--activity) needs the fast engine")
    top, rtl, arrays = _prepare(
        Path(package), rtl_dir, baseline, (folding, pipeline), samples, images
    )
    cache = Path(cache_dir) if cache_dir else rtl / "sim_build"
    count = len(arrays["input"])
    run.log(f"simulate: {top.name} on {count} samples, engine {run.engine}")
    if run.engine == "fast":
        result = _run_fast(run, top, rtl, arrays, cache)
    else:
        result = _run_cocotb(run, top, rtl, arrays, cache)
    run.log(
        f"simulate: {result['received']}/{count} samples in {result['run_seconds']:.2f} s "
        f"(build {result['build_seconds']:.1f} s)"
    )
    return _verdict(result, top, count)


@dataclasses.dataclass(frozen=True)
class _Run:
    """How one simulation runs (the arguments of :func:`simulate_package`, checked)."""

    engine: str
    simulator: str | None
    seed: int
    idle: float
    stall: float
    waves: bool
    activity: Path | None
    timeout_s: float
    max_cycles: int | None
    optimize: bool
    log: Callable[[str], None]
    sources: tuple[Path, ...] | None = None  # instead of the top's file (a netlist)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _prepare(
    package: Path,
    rtl_dir: str | os.PathLike[str] | None,
    baseline: str | None,
    choices: tuple[Mapping[str, int] | None, Mapping[str, int] | None],
    samples: int | None,
    images: np.ndarray | None,
) -> tuple[Any, Path, dict[str, np.ndarray]]:
    """The dataflow top (checked against the package; generated with ``choices``, the
    folding and pipelining, when missing), its directory, the vectors."""
    folding, pipeline = choices
    model = load_package(package)
    default = "rtl-dataflow-mult8" if baseline else "rtl-dataflow"
    rtl = Path(rtl_dir) if rtl_dir is not None else package / default
    top = _dataflow_top(_manifest(package, rtl, baseline, folding, pipeline), rtl, package)
    # the multiplier twin computes with the package's 8-bit baseline weights
    weights = "baseline" if top.params.get("baseline") else "po2"
    arrays = (
        golden_vectors(model, samples, weights=weights)
        if images is None
        else _vectors_of(model, images, weights)
    )
    return top, rtl, arrays


def _limit(run: _Run, top: Any, count: int) -> int:
    beats = top.params["input"]["beats"]
    return run.max_cycles or _cycle_limit(count, beats, top.params["interval_cycles"])


def _run_cocotb(
    run: _Run, top: Any, rtl: Path, arrays: dict[str, np.ndarray], cache: Path
) -> dict[str, Any]:
    count = len(arrays["input"])
    with tempfile.TemporaryDirectory(prefix="inq_hw_vectors_") as tmp:
        vectors = Path(tmp) / "vectors.npz"
        np.savez(
            vectors, input=arrays["input"], output=arrays["output"], prediction=arrays["prediction"]
        )
        config = {
            "vectors": str(vectors),
            "samples": count,
            "seed": run.seed,
            "idle": run.idle,
            "stall": run.stall,
            "timing_images": _TIMING_IMAGES,
            "max_cycles": _limit(run, top, count),
            "input": top.params["input"],
            "output": top.params["output"],
        }
        start = time.perf_counter()
        result = run_testbench(
            sources=list(run.sources) if run.sources else [rtl / top.file],
            top=top.name,
            module="sim.tb_dataflow",
            config=config,
            simulator=run.simulator,
            cache_dir=cache,
            waves=run.waves,
            timeout_s=run.timeout_s,
            optimize=run.optimize,
        )
        seconds = time.perf_counter() - start
    return {**result, "engine": "cocotb", "run_seconds": seconds - result["build_seconds"]}


def _run_fast(
    run: _Run, top: Any, rtl: Path, arrays: dict[str, np.ndarray], cache: Path
) -> dict[str, Any]:
    from sim.fast.engine import build_harness, run_stream

    traced = run.waves or run.activity is not None
    widths = {port.name: port.width for port in top.ports}
    build = build_harness(
        [rtl / top.file], top.name, "stream", cache, trace=traced, port_widths=widths, log=run.log
    )
    waves = build.executable.parent / "waves.fst" if traced else None
    result = run_stream(
        build,
        arrays["input"],
        top.params["input"],
        top.params["output"],
        arrays["output"],
        arrays["prediction"],
        port_widths=widths,
        seed=run.seed,
        idle=run.idle,
        stall=run.stall,
        timing_images=_TIMING_IMAGES,
        max_cycles=_limit(run, top, len(arrays["input"])),
        timeout_s=run.timeout_s,
        trace=waves,
    )
    from sim.runner import simulator_version

    activity = _write_activity(run, waves) if waves is not None else None
    return {
        **result,
        "engine": "fast",
        "simulator": "verilator",
        "simulator_version": simulator_version("verilator"),
        "build_dir": str(build.executable.parent),
        "build_seconds": build.build_seconds,
        "build_cached": build.cached,
        "run_seconds": result["wall_seconds"],
        "waves": str(waves) if waves is not None else None,
        "activity": activity,
    }


def _write_activity(run: _Run, waves: Path) -> str | None:
    """Toggle counts from the run's FST, through :mod:`sim.activity` (the one reader of
    waveforms), when it is installed and ``activity`` was asked for."""
    if run.activity is None:
        return None
    try:
        from sim.activity import activity_from_waves  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        run.log(f"simulate: sim.activity is not available; the FST is {waves}")
        return None
    activity_from_waves(waves, clock="clk").write(run.activity)
    run.log(f"simulate: switching activity -> {run.activity}")
    return str(run.activity)


def _verdict(result: dict[str, Any], top: Any, count: int) -> dict[str, Any]:
    """The summary; raises when the run timed out or any output differs."""
    summary = _summary(result, top, count)
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


def _vectors_of(model: Any, images: np.ndarray, weights: str) -> dict[str, np.ndarray]:
    images = np.asarray(images, dtype=np.int64)
    output = run(model, images, weights=weights)
    assert isinstance(output, np.ndarray)
    return {"input": images, "output": output, "prediction": output.argmax(axis=1)}


def _check_probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise SimulationError(f"The {name} probability must be in [0, 1), not {value!r}")
    return float(value)


def _summary(result: dict[str, Any], top: Any, count: int) -> dict[str, Any]:
    claimed = {"latency": top.params["latency_cycles"], "interval": top.params["interval_cycles"]}
    run_s = result["run_seconds"]
    return {
        "top": top.name,
        "engine": result["engine"],
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
        "build_seconds": round(result["build_seconds"], 3),
        "run_seconds": round(run_s, 3),
        "seconds": round(result["build_seconds"] + run_s, 3),
        "images_per_second": round(count / run_s, 2) if run_s > 0 else None,
        # fast engine: the harness loop's CPU time, i.e. the speed on one core of its own
        "harness_cpu_seconds": result.get("cpu_seconds"),
        "harness_process_cpu_seconds": result.get("process_cpu_seconds"),
        # either engine: CPU time of the processes that ran the simulation (the harness; the
        # cocotb child and its simulator), build excluded: the ratio of engines per CPU-second
        "run_cpu_seconds": result.get("run_cpu_seconds", result.get("process_cpu_seconds")),
        "waves": result.get("waves"),
        "activity": result.get("activity"),
        "build_dir": result["build_dir"],
    }
