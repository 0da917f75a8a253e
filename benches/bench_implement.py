"""Bench: whole digits-cnn dataflow tops synthesised, placed, routed and packed.

Cases (:data:`CASES`): each bit-width's shift-add top and the 8-bit multiplier twin (with
DSPs and LUT-only) on ECP5-85k at 100 MHz, through :func:`inq_hw.implement.flow.
implement_package` (fast ABC LUT mapping, cached). Printed per case: LUT / FF / carry /
BRAM / DSP, Fmax, timing met, images/s at Fmax, synthesis and place-and-route seconds.

Packages are read from ``$INQ_HW_BENCH_PACKAGES/pkg<b>-random`` (default
``runs/demo/table``, written by ``make demo``); missing ones are skipped with a note.
``$INQ_HW_BENCH_IMPLEMENT`` picks cases by name (comma-separated, default all);
``$INQ_HW_BENCH_IMPLEMENT_TIMEOUT`` is each tool stage's limit in seconds (default 3600).
A whole unrolled top is large: expect tens of minutes per case on one core.
"""

import os
from pathlib import Path
from typing import Any

from benches._harness import print_table

#: name -> (bits, device, clock MHz, baseline, dsp, folding)
CASES: dict[str, tuple[int, str, float, str | None, bool | None, dict[str, int] | None]] = {
    "b2-ecp5-85k": (2, "ecp5-85k", 100.0, None, None, None),
    "b3-ecp5-85k": (3, "ecp5-85k", 100.0, None, None, None),
    "b4-ecp5-85k": (4, "ecp5-85k", 100.0, None, None, None),
    "b5-ecp5-85k": (5, "ecp5-85k", 100.0, None, None, None),
    "mult8-dsp-ecp5-85k": (4, "ecp5-85k", 100.0, "mult8", True, None),
    "mult8-nodsp-ecp5-85k": (4, "ecp5-85k", 100.0, "mult8", False, None),
}


def _package_dir(bits: int) -> Path:
    root = Path(os.environ.get("INQ_HW_BENCH_PACKAGES", "runs/demo/table"))
    return root / f"pkg{bits}-random"


def measure(name: str) -> dict[str, Any] | None:
    from inq_hw.implement.flow import implement_package
    from inq_hw.progress import Progress

    bits, device, clock, baseline, dsp, folding = CASES[name]
    package = _package_dir(bits)
    if not (package / "model.json").is_file():
        print(f"  (no package at {package}; {name} skipped)")
        return None

    class _Lines(Progress):
        def message(self, text: str) -> None:
            print(f"  {name}: {text}", flush=True)

    result = implement_package(
        package,
        device,
        out_dir=Path(os.environ.get("INQ_HW_BENCH_OUT", "runs/bench-implement")) / name,
        baseline=baseline,
        folding=folding,
        clock_mhz=clock,
        dsp=dsp,
        timeout_s=float(os.environ.get("INQ_HW_BENCH_IMPLEMENT_TIMEOUT", "3600")),
        progress=_Lines(),
    )
    return {"case": name, "bits": bits, **result}


def run() -> dict[str, Any]:
    wanted = os.environ.get("INQ_HW_BENCH_IMPLEMENT", ",".join(CASES)).split(",")
    rows, figures = [], []
    for name in [n for n in wanted if n]:
        result = measure(name)
        if result is None:
            continue
        figures.append(result)
        used = result["resources"]
        seconds = result["seconds"]
        rows.append(
            [
                name,
                *(str(used[k]) for k in ("lut", "ff", "carry", "bram", "dsp")),
                f"{result['fmax_mhz']:.1f}",
                "yes" if result["timing_met"] else "no",
                f"{result['images_per_second']:.0f}",
                f"{seconds['synth']:.0f}",
                f"{seconds['pnr']:.0f}",
                "cached" if result["cached"] else "",
            ]
        )
    print_table(
        "Dataflow tops implemented (fast ABC LUT mapping; Fmax from nextpnr)",
        ["case", "LUT", "FF", "carry", "BRAM", "DSP", "Fmax MHz", "met", "images/s", "synth s",
         "P&R s", ""],
        rows,
    )  # fmt: skip
    return {"cases": figures}
