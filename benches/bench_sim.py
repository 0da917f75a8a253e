"""Bench: the whole digits test split through the dataflow top on Verilator, b = 5..2.

For each bit-width the package's dataflow top (fully unrolled) is generated, built by
Verilator (cached per design hash) and fed every test image with random input gaps and
output stalls (probability 0.2 each, seed 0); the scoreboard compares every logit and the
class with the golden executor. Printed: mismatches, cycles per image measured without
stalls against the manifest's claim, latency, simulation speed, build and run seconds.

Packages are read from ``$INQ_HW_BENCH_PACKAGES/pkg<b>-random`` (default
``runs/demo/table``, written by ``make demo``'s accuracy table); missing ones are skipped
with a note.
"""

import os
import time
from pathlib import Path
from typing import Any

from benches._harness import print_table

BITS = (5, 4, 3, 2)


def _package_dir(bits: int) -> Path:
    root = Path(os.environ.get("INQ_HW_BENCH_PACKAGES", "runs/demo/table"))
    return root / f"pkg{bits}-random"


def measure(bits: int) -> dict[str, Any] | None:
    from sim.simulate import simulate_package

    package = _package_dir(bits)
    if not (package / "model.json").is_file():
        print(f"  (no package at {package}; skipped)")
        return None
    start = time.perf_counter()
    summary = simulate_package(
        package,
        rtl_dir=package / "rtl-dataflow",
        simulator="verilator",
        samples=None,
        idle=0.2,
        stall=0.2,
        seed=0,
    )
    return {"bits": bits, **summary, "total_seconds": round(time.perf_counter() - start, 1)}


def run() -> dict[str, Any]:
    rows, figures = [], []
    for bits in BITS:
        result = measure(bits)
        if result is None:
            continue
        figures.append(result)
        rows.append(
            [
                str(bits),
                str(result["samples"]),
                str(result["mismatched_samples"]),
                f"{result['interval_cycles']} / {result['claimed_interval_cycles']}",
                f"{result['latency_cycles']} / {result['claimed_latency_cycles']}",
                f"{result['images_per_second']:.1f}",
                f"{result['seconds']:.0f}",
                f"{result['total_seconds']:.0f}",
            ]
        )
    print_table(
        "Dataflow top on Verilator, whole digits test split, random gaps and stalls (p = 0.2)",
        [
            "bits",
            "images",
            "mismatches",
            "cycles/image (measured / manifest)",
            "latency (measured / manifest)",
            "sim images/s",
            "build+run s",
            "total s",
        ],
        rows,
    )
    return {"runs": figures}


if __name__ == "__main__":
    run()
