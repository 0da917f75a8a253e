"""Bench: the PE array's FPGA resource model (:mod:`inq_hw.cost.fpga_pe`) against synthesis.

Each case is a digits-cnn package (2 or 4 bits) compiled for an R×C shift-PE array
(:func:`inq_hw.implement.pe_array.compile_for`), synthesised with
:func:`inq_hw.cost.synth.synthesize` (``synth_ice40`` / ``synth_ecp5``, fast ABC, cached
under ``$INQ_HW_CACHE/synth``). Printed per case and family: predicted and synthesised
LUT, FF, carry and block RAM and the errors; then every resource's weights re-fitted on
these cases (non-negative least squares on the relative error, as
:data:`inq_hw.cost.fpga_pe.WEIGHTS` were) beside the committed ones.

Packages: ``$INQ_HW_BENCH_PACKAGES/pkg<b>-random`` (default ``runs/demo/table``, written
by ``make demo``); missing ones are skipped with a note. ``$INQ_HW_BENCH_FIT_PE`` picks
cases by name (comma-separated, default all). A case takes 20 to 60 s of synthesis per
family on one core.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

from benches._harness import print_table

_ICE40, _BOTH = ("ice40",), ("ice40", "ecp5")
#: name -> (bits of the digits-cnn package, rows, cols, families)
CASES: dict[str, tuple[int, int, int, tuple[str, ...]]] = {
    "pe2-1x1": (2, 1, 1, _BOTH),
    "pe2-1x2": (2, 1, 2, _ICE40),
    "pe2-1x4": (2, 1, 4, _BOTH),
    "pe2-1x8": (2, 1, 8, _ICE40),
    "pe2-1x16": (2, 1, 16, _BOTH),
    "pe2-1x32": (2, 1, 32, _ICE40),
    "pe2-2x2": (2, 2, 2, _ICE40),
    "pe2-2x4": (2, 2, 4, _BOTH),
    "pe4-1x4": (4, 1, 4, _BOTH),
    "pe4-1x16": (4, 1, 16, _BOTH),
    "pe4-2x4": (4, 2, 4, _ICE40),
    "pe4-4x4": (4, 4, 4, _BOTH),
}
RESOURCES = ("lut", "ff", "carry", "bram")


def measure(name: str, scratch: Path) -> list[dict[str, Any]]:
    from inq_hw.cost.fpga_pe import estimate_pe_array, pe_features
    from inq_hw.cost.synth import default_cache_dir, jobs_from_manifest, synthesize
    from inq_hw.implement.pe_array import generate_pe_array

    bits, rows, cols, families = CASES[name]
    root = Path(os.environ.get("INQ_HW_BENCH_PACKAGES", "runs/demo/table"))
    package = root / f"pkg{bits}-random"
    if not (package / "model.json").is_file():
        print(f"  (no digits-cnn {bits}-bit package; {name} skipped)")
        return []
    rtl = scratch / f"rtl-{name}"
    program = generate_pe_array(package, rtl, rows=rows, cols=cols)
    (job,) = jobs_from_manifest(rtl)
    out = []
    for family in families:
        result = synthesize(job, family, cache_dir=default_cache_dir(), timeout_s=3600)
        estimate = estimate_pe_array(program.config, family).resources()
        synthesised = {key: getattr(result, key) for key in RESOURCES}
        out.append(
            {"case": name, "family": family, "synthesised": synthesised,
             "predicted": {key: estimate[key] for key in RESOURCES},
             "seconds": result.seconds, "features": pe_features(program.config)}
        )  # fmt: skip
        print(f"  {name} ({family}): {result.lut} LUT synthesised, {estimate['lut']} predicted")
    return out


def _refit(rows: list[dict[str, Any]], family: str, resource: str) -> dict[str, float] | None:
    from benches.bench_fit import relative_nnls
    from inq_hw.cost.fpga_pe import PE_FEATURES

    mine = [r for r in rows if r["family"] == family and r["synthesised"][resource]]
    targets = [r["synthesised"][resource] for r in mine]
    return relative_nnls([r["features"] for r in mine], targets, PE_FEATURES, 4)


def _error(row: dict[str, Any], key: str) -> str:
    seen, guess = row["synthesised"][key], row["predicted"][key]
    return f"{100 * (guess / seen - 1):+.1f}%" if seen else "-"


def run() -> dict[str, Any]:
    from inq_hw.cost.fpga_pe import PE_FEATURES, WEIGHTS

    wanted = os.environ.get("INQ_HW_BENCH_FIT_PE", ",".join(CASES)).split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_fit_pe_") as tmp:
        for name in [n for n in wanted if n]:
            rows += measure(name, Path(tmp))
    table = [
        [r["case"], r["family"],
         *(f"{r['synthesised'][k]} / {r['predicted'][k]} ({_error(r, k)})" for k in RESOURCES),
         f"{r['seconds']:.0f}"]
        for r in rows
    ]  # fmt: skip
    print_table(
        "PE-array model against synthesis (synthesised / predicted, error)",
        ["case", "family", *(k.upper() for k in RESOURCES), "synth s"],
        table,
    )
    refits = {
        family: {key: _refit(rows, family, key) for key in ("lut", "ff", "carry")}
        for family in ("ice40", "ecp5")
    }
    weights = [
        [f"{family} {key} {source}", *(f"{w[k]:g}" for k in PE_FEATURES)]
        for family in ("ice40", "ecp5")
        for key in ("lut", "ff", "carry")
        for source, w in (("committed", WEIGHTS[family][key]), ("re-fitted", refits[family][key]))
        if w is not None
    ]
    print_table("Weight per feature", ["weights", *PE_FEATURES], weights)
    return {"cases": [{k: v for k, v in r.items() if k != "features"} for r in rows],
            "refit": refits}  # fmt: skip
