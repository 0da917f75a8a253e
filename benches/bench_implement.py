"""Bench: whole digits-cnn dataflow tops synthesised, placed, routed and packed.

The README's table of whole networks on an ECP5-85k at a 100 MHz constraint. Each case
(:data:`CASES`) is one ``inq-hw implement`` command, run as a user runs it (a child
process, ``--json``), so the table's rows are the commands' own results:

- ``b<b>-unrolled``: every layer unrolled, ``--pipeline auto`` (stages per layer from the
  delay model for the clock);
- ``b<b>-fit``: ``--fit ecp5-85k --pipeline 5``, the highest throughput whose predicted
  resources fill at most 85% of the device;
- ``mult8-fit-dsp`` / ``mult8-fit-lut``: the 8-bit multiplier twin fitted the same way,
  multipliers on DSPs / in LUTs (``--no-dsp``). The twin's weights are the same in every
  package of one FP32 model (only its biases differ), so it runs on the 4-bit package.

A design larger than the device is refused (after synthesis, or by the fit before it):
its row holds the one-line refusal. Printed per case: LUT / FF / carry / BRAM / DSP,
placed logic cells, Fmax, timing met, interval, images/s at Fmax, latency, and synthesis
and place-and-route seconds (each separately; a cached result says so).

Packages are read from ``$INQ_HW_BENCH_PACKAGES/pkg<b>-random`` (default
``runs/demo/table``, written by ``make demo``); missing ones are skipped with a note.
``$INQ_HW_BENCH_IMPLEMENT`` picks cases by name (comma-separated, default all);
``$INQ_HW_BENCH_IMPLEMENT_TIMEOUT`` is each tool stage's limit in seconds (default 3600);
results go under ``$INQ_HW_BENCH_OUT`` (default ``runs/bench-implement``). A whole top is
large: expect 5 to 30 minutes per case on one core.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benches._harness import print_table

_DEVICE = "ecp5-85k"
_CLOCK = ["--clock-mhz", "100"]
_UNROLLED = ["--device", _DEVICE, "--pipeline", "auto", *_CLOCK]
_FIT = ["--fit", _DEVICE, "--pipeline", "5", *_CLOCK]

#: name -> (bits of the package, the ``inq-hw implement`` options)
CASES: dict[str, tuple[int, list[str]]] = {
    **{f"b{b}-unrolled": (b, _UNROLLED) for b in (2, 3, 4, 5)},
    **{f"b{b}-fit": (b, _FIT) for b in (2, 3, 4, 5)},
    "mult8-fit-dsp": (4, [*_FIT, "--baseline", "mult8"]),
    "mult8-fit-lut": (4, [*_FIT, "--baseline", "mult8", "--no-dsp"]),
}


def _package_dir(bits: int) -> Path:
    root = Path(os.environ.get("INQ_HW_BENCH_PACKAGES", "runs/demo/table"))
    return root / f"pkg{bits}-random"


def measure(name: str) -> dict[str, Any] | None:
    """Run case ``name``: its result (``refused`` holds the one-line refusal, if any)."""
    bits, options = CASES[name]
    package = _package_dir(bits)
    if not (package / "model.json").is_file():
        print(f"  (no package at {package}; {name} skipped)")
        return None
    out = Path(os.environ.get("INQ_HW_BENCH_OUT", "runs/bench-implement")) / name
    timeout = os.environ.get("INQ_HW_BENCH_IMPLEMENT_TIMEOUT", "3600")
    command = [sys.executable, "-m", "inq_hw", "implement", str(package), *options]
    command += ["--timeout", timeout, "--out", str(out), "--json"]
    print(f"  {name}: {' '.join(command[2:])}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode == 2:  # refused: too large for the device, in one line
        refusal = done.stderr.strip().splitlines()[-1]
        print(f"  {name}: refused after {wall:.0f} s: {refusal}", flush=True)
        return {"case": name, "bits": bits, "refused": refusal, "wall_s": wall}
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {done.returncode}): {done.stderr.strip()}")
    result = json.loads(done.stdout)
    print(f"  {name}: done in {wall:.0f} s", flush=True)
    return {"case": name, "bits": bits, "wall_s": wall, **result}


def _row(result: dict[str, Any]) -> list[str]:
    if "refused" in result:
        return [result["case"], *["-"] * 12, result["refused"]]
    used = result["resources"]
    seconds = result["seconds"]
    cells = result.get("utilization", {}).get("TRELLIS_COMB", {}).get("used")
    fold = result.get("fit", {}).get("folding") if result.get("fit") else None
    return [
        result["case"],
        *(f"{used[k]:,}" if used.get(k) is not None else "-" for k in ("lut", "ff", "carry")),
        *(str(used.get(k) or 0) for k in ("bram", "dsp")),
        f"{cells:,}" if cells else "-",
        f"{result['fmax_mhz']:.1f}",
        "yes" if result["timing_met"] else "no",
        f"{result['interval_cycles']:,}",
        f"{result['images_per_second']:,.0f}",
        f"{result['latency_us']:.2f}",
        f"{seconds['synth']:.0f} / {seconds['pnr']:.0f}{' (cached)' if result['cached'] else ''}",
        ", ".join(map(str, fold.values())) if fold else "unrolled",
    ]


def run() -> dict[str, Any]:
    wanted = os.environ.get("INQ_HW_BENCH_IMPLEMENT", ",".join(CASES)).split(",")
    unknown = [n for n in wanted if n and n not in CASES]
    if unknown:
        raise ValueError(f"Unknown cases {unknown}; known: {', '.join(CASES)}")
    figures = [r for r in (measure(n) for n in wanted if n) if r is not None]
    print_table(
        f"Dataflow tops on {_DEVICE} at 100 MHz (fast ABC LUT mapping; Fmax from nextpnr)",
        ["case", "LUT", "FF", "carry", "BRAM", "DSP", "TRELLIS_COMB", "Fmax MHz", "met",
         "interval", "images/s", "latency us", "synth / P&R s", "folding / refusal"],
        [_row(r) for r in figures],
    )  # fmt: skip
    return {"cases": figures}
