"""Bench: Verilator build time of one large top under each build flag of the fast engine.

digits-cnn unrolled at ``$INQ_HW_FASTSIM_BUILD_BITS`` bits (default 4; the package
``$INQ_HW_BENCH_PACKAGES/pkg<b>-random`` as for ``benches/bench_fastsim.py``): the harness is
built from nothing once per flag set of :data:`VARIANTS` (``ccache`` off, a fresh build
directory each, so every build compiles everything), then the whole test split,
:data:`REPEAT` times over, is run through it with gaps and stalls (p = 0.2, seed 0),
0 mismatches required. Printed per flag set: build seconds, run seconds (wall) and the
harness's CPU seconds, build time apart from run time. ``$INQ_HW_FASTSIM_BUILD_VARIANTS``
(comma-separated names) runs a subset. One line is printed as each build ends, so a bench
stopped early keeps its figures.
"""

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benches._harness import BenchError, print_table

# name -> the changes from BuildFlags() (the first is the default itself)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "OPT_FAST=-O0": {"opt_fast": "-O0"},
    "OPT_FAST=-O2": {"opt_fast": "-O2"},
    "verilator -O0": {"verilator_opt": "-O0"},
    "no --output-split": {"output_split": 0},
    "--x-assign 0": {"x_assign": "0"},
    "-j 1": {"jobs": 1},
    "--threads 2": {"threads": 2},
    "OPT_FAST=-Os OPT_SLOW=-Os": {"opt_fast": "-Os", "opt_slow": "-Os"},
    "no split units": {"split_units": 0},
    "split units >= 500": {"split_units": 500},
    "split units >= 3000": {"split_units": 3000},
    "ungated units": {"gate_units": False},
    "units OPT_FAST=-O2": {"opt_units": "-O2"},
    "units OPT_FAST=-O3": {"opt_units": "-O3"},
    "OPT_FAST=-O3": {"opt_fast": "-O3", "opt_units": "-O3"},
}
REPEAT = 8  # the test split this many times per run: about a second at 5 bits


def _measure(package: Path, rtl: Path, changes: dict[str, Any], cache: Path) -> dict[str, Any]:
    from inq_hw.intmodel.package import load_package
    from sim.fast.engine import BuildFlags, build_harness, run_stream
    from sim.vectors import golden_vectors

    flags = dataclasses.replace(BuildFlags(), **changes)
    top = json.loads((rtl / "manifest.json").read_text())["tops"][0]
    start = time.perf_counter()
    widths = {port["name"]: port["width"] for port in top["ports"]}
    build = build_harness(
        [rtl / top["file"]], top["name"], "stream", cache, flags=flags, port_widths=widths
    )
    build_s = time.perf_counter() - start
    vectors = golden_vectors(load_package(package), None)
    count = REPEAT * len(vectors["input"])
    result = run_stream(
        build,
        np.concatenate([vectors["input"]] * REPEAT),
        top["params"]["input"],
        top["params"]["output"],
        np.concatenate([vectors["output"]] * REPEAT),
        np.concatenate([vectors["prediction"]] * REPEAT),
        port_widths=widths,
        max_cycles=1000 + count * 64 * top["params"]["input"]["beats"],
    )
    if result["mismatched_samples"] or result["timeout"]:
        raise BenchError(f"{changes}: {result['mismatched_samples']} mismatches")
    return {
        "build_seconds": round(build_s, 1),
        "run_seconds": round(result["wall_seconds"], 3),
        "harness_cpu_seconds": round(result["cpu_seconds"], 3),
        "samples": count,
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


def run() -> dict[str, Any]:
    bits = int(os.environ.get("INQ_HW_FASTSIM_BUILD_BITS", "4"))
    root = Path(os.environ.get("INQ_HW_BENCH_PACKAGES", "runs/demo/table"))
    package = root / f"pkg{bits}-random"
    rtl = package / "rtl-dataflow"
    if not (package / "model.json").is_file():
        print(f"  (no package at {package}; skipped)")
        return {}
    if not (rtl / "manifest.json").is_file():
        from rtl_gen.dataflow import generate_dataflow

        generate_dataflow(package, rtl)
    chosen = os.environ.get("INQ_HW_FASTSIM_BUILD_VARIANTS")
    names = [n for n in chosen.split(",") if n] if chosen else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise BenchError(f"Unknown build variants {unknown}; known: {list(VARIANTS)}")
    os.environ["CCACHE_DISABLE"] = "1"  # every build compiles everything
    results: dict[str, Any] = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix="bench_fastsim_build_") as tmp:
            results[name] = _measure(package, rtl, VARIANTS[name], Path(tmp))
        print(f"  {name}: {json.dumps(results[name])}", flush=True)
    print_table(
        f"Fast-engine build of the {bits}-bit unrolled digits-cnn top, ccache off",
        ["flags", "build s", "run s (wall)", "harness CPU s", "load"],
        [
            [
                name,
                f"{r['build_seconds']:.0f}",
                f"{r['run_seconds']:.2f}",
                f"{r['harness_cpu_seconds']:.3f}",
                f"{r['load_average_1min']:.1f}",
            ]
            for name, r in results.items()
        ],
    )
    return {"bits": bits, "variants": results}


if __name__ == "__main__":
    run()
