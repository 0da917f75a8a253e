"""Bench: the FPGA resource model (:mod:`inq_hw.cost.fpga`) against synthesis, and its fit.

Each case is a package and a folding, synthesised with
:func:`inq_hw.cost.synth.synthesize` (``synth_ice40`` / ``synth_ecp5``, fast ABC, cached
under ``$INQ_HW_CACHE/synth``). Printed per case and family: predicted and synthesised
LUTs and FFs and the error. Then the LUT weights re-fitted on these cases (non-negative
least squares on the relative error, as :data:`inq_hw.cost.fpga.LUT_WEIGHTS` were) beside
the committed ones.

Packages: ``$INQ_HW_BENCH_PACKAGES/pkg<b>-random`` (default ``runs/demo/table``, written
by ``make demo``), and the tests' small tops (built here, no torch training). Missing
packages are skipped with a note. ``$INQ_HW_BENCH_FIT`` picks cases by name
(comma-separated, default all). A digits-cnn folding takes one to four minutes of
synthesis per family on one core.
"""

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from benches._harness import print_table

_DIGITS_MAX = {
    "features.conv1": 16,
    "features.conv2": 32,
    "features.conv3": 32,
    "classifier.fc": 10,
}
_DIGITS_MID = {"features.conv2": 8, "features.conv3": 8}
#: name -> (package: "micro" | "small" | bits of a digits-cnn package, folding, families)
CASES: dict[str, tuple[str | int, dict[str, int], tuple[str, ...]]] = {
    "micro": ("micro", {}, ("ice40", "ecp5")),
    "micro-folded": ("micro", {"c1": 2, "f": 3}, ("ice40", "ecp5")),
    "small": ("small", {}, ("ice40", "ecp5")),
    "small-folded": ("small", {"c1": 3, "c2": 4, "f1": 6, "f2": 5}, ("ice40", "ecp5")),
    "small-mixed": ("small", {"f1": 2, "c2": 2}, ("ice40", "ecp5")),
    "digits2-unrolled": (2, {}, ("ice40",)),
    "digits2-folded": (2, _DIGITS_MAX, ("ice40", "ecp5")),
    "digits2-mixed": (2, _DIGITS_MID, ("ice40",)),
}


def _package(source: str | int, scratch: Path) -> Path | None:
    if isinstance(source, int):
        root = Path(os.environ.get("INQ_HW_BENCH_PACKAGES", "runs/demo/table"))
        path = root / f"pkg{source}-random"
        return path if (path / "model.json").is_file() else None
    from inq_hw.intmodel.package import save_package
    from tests.test_dataflow import small_cnn
    from tests.test_implement import micro_cnn

    path = scratch / source
    if not path.is_dir():
        save_package({"micro": micro_cnn, "small": small_cnn}[source](), path)
    return path


def measure(name: str, scratch: Path) -> list[dict[str, Any]]:
    from inq_hw.cost.fpga import FEATURES, estimate_top, top_features
    from inq_hw.cost.synth import default_cache_dir, jobs_from_manifest, synthesize
    from inq_hw.intmodel.package import load_package
    from rtl_gen.dataflow import build_dataflow, generate_dataflow

    source, folding, families = CASES[name]
    package = _package(source, scratch)
    if package is None:
        print(f"  (no digits-cnn {source}-bit package; {name} skipped)")
        return []
    model = load_package(package)
    rtl = scratch / f"rtl-{name}"
    generate_dataflow(package, rtl, folding=folding)
    (job,) = jobs_from_manifest(rtl)
    rows = []
    for family in families:
        result = synthesize(job, family, cache_dir=default_cache_dir(), timeout_s=3600)
        top = build_dataflow(model, folding=folding)
        estimate = estimate_top(top, model, family)
        counts = top_features(build_dataflow(model, folding=folding), model)
        features = {k: sum(c.bits[k] for *_, c in counts) for k in FEATURES}
        if family == "ecp5":
            features["mul"] = 0.0  # DSPs, as estimate_top counts them
        rows.append(
            {"case": name, "family": family, "lut": result.lut, "ff": result.ff,
             "predicted_lut": estimate.lut, "predicted_ff": estimate.ff,
             "seconds": result.seconds, "features": features}
        )  # fmt: skip
        print(f"  {name} ({family}): {result.lut} LUT synthesised, {estimate.lut} predicted")
    return rows


def relative_nnls(
    features: list[dict[str, float]], targets: list[float], names: tuple[str, ...], digits: int
) -> dict[str, float] | None:
    """Non-negative weights of ``names`` that fit ``targets`` from ``features`` with the
    least squared relative error (None with fewer cases than weights)."""
    import numpy as np
    from scipy.optimize import nnls

    if len(features) < len(names):
        return None
    a = np.array([[row[k] for k in names] for row in features])
    b = np.array(targets, dtype=float)
    weights, _ = nnls(a / b[:, None], np.ones(len(b)))
    return dict(zip(names, (round(float(w), digits) for w in weights), strict=True))


def _refit(rows: list[dict[str, Any]], family: str) -> dict[str, float] | None:
    from inq_hw.cost.fpga import FEATURES

    mine = [r for r in rows if r["family"] == family]
    return relative_nnls([r["features"] for r in mine], [r["lut"] for r in mine], FEATURES, 3)


def run() -> dict[str, Any]:
    from amaranth.hdl import UnusedElaboratable

    from inq_hw.cost.fpga import FEATURES, LUT_WEIGHTS

    # the model reads tops it never elaborates; Amaranth warns of each when collected
    warnings.simplefilter("ignore", UnusedElaboratable)

    wanted = os.environ.get("INQ_HW_BENCH_FIT", ",".join(CASES)).split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_fit_") as tmp:
        for name in [n for n in wanted if n]:
            rows += measure(name, Path(tmp))
    table = [
        [r["case"], r["family"], str(r["lut"]), str(r["predicted_lut"]),
         f"{100 * (r['predicted_lut'] / r['lut'] - 1):+.1f}%", str(r["ff"]),
         str(r["predicted_ff"]), f"{100 * (r['predicted_ff'] / r['ff'] - 1):+.1f}%",
         f"{r['seconds']:.0f}"]
        for r in rows
    ]  # fmt: skip
    print_table(
        "Resource model against synthesis (fast ABC; errors of the committed LUT weights)",
        ["case", "family", "LUT", "predicted", "error", "FF", "predicted", "error", "synth s"],
        table,
    )
    refits = {family: _refit(rows, family) for family in ("ice40", "ecp5")}
    weights = [
        [f"{family} {source}", *(f"{w[k]:g}" for k in FEATURES)]
        for family in ("ice40", "ecp5")
        for source, w in (("committed", LUT_WEIGHTS[family]), ("re-fitted", refits[family]))
        if w is not None
    ]
    print_table("LUT4 per feature bit", ["weights", *FEATURES], weights)
    return {"cases": [{k: v for k, v in r.items() if k != "features"} for r in rows],
            "refit": refits}  # fmt: skip
