"""Nangate45 figures of a whole dataflow top and its multiplier twin, beside the analytic
model of the network.

For each design (shift-add, and the 8-bit multiplier twin of the same generator):
:func:`rtl_gen.dataflow.generate_dataflow` writes the top at the given folding, its
switching activity is measured on real test images (the callers pass
:func:`sim.top_activity.top_activity`: the fast engine's trace build, every output
checked bit-exact), and :func:`inq_hw.cost.asic.asic_cost` synthesises, times (a clock on
``clk``) and powers it (the measured rates on every input port). Energy per inference is
the energy per cycle times the manifest's interval, the cycles per image at the top's
steady rate (:func:`inq_hw.cost.asic_layers.asic_figures`).

The folding defaults to :func:`full_folding`: each weight layer folded by its outputs, one
lane (a runtime-weight shift-MAC tree, or a multiplier tree in the twin) per layer. It is
the smallest top the generator builds, and the one whose twin synthesises in minutes
(digits-cnn's twin at the flow's ``all=8`` has about 2,000 multiplier lanes). A fold
larger than a layer's outputs is capped at them (:func:`rtl_gen.dataflow.cap_folding`, as
in the flow).

The analytic figures (:func:`inq_hw.cost.analytic.analyze`) are those of the network's
unrolled constant-weight units (one unit per layer, every output), not of the folded top:
the energy per inference prices the same operations; the area prices another
architecture. Both sides are kept apart.

Example usage::

    top = asic_top(Path("build/inq5"), activity=lambda rtl: top_activity(
        Path("build/inq5"), rtl, images=4, cache_dir=Path("build/activity")))
    top["asic"]["mult8"]["area_um2"] / top["asic"]["shift-add"]["area_um2"]
"""

import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from inq_hw.cost.analytic import analyze
from inq_hw.cost.asic import (
    DEFAULT_PERIOD_NS,
    DEFAULT_TIMEOUT_S,
    Activity,
    asic_cost,
    check_tools,
)
from inq_hw.cost.asic_layers import DESIGNS, asic_figures
from inq_hw.cost.errors import CostError
from inq_hw.cost.synth import jobs_from_manifest
from inq_hw.intmodel import IntModel
from inq_hw.intmodel.package import load_package
from inq_hw.progress import Progress

__all__ = ["asic_top", "full_folding"]


def full_folding(model: IntModel) -> dict[str, int]:
    """Each weight layer folded by its outputs: one lane per layer."""
    return {layer.name: int(layer.codes.shape[0]) for layer in model.weight_layers()}


def _analytic(model: IntModel) -> dict[str, dict[str, float]]:
    network = analyze(model)
    return {
        design: {
            "area_um2": network.total(design).area_um2,
            "energy_pj": network.total(design).energy_pj,
        }
        for design, _ in DESIGNS
    }


def asic_top(
    package: Path,
    *,
    folding: Mapping[str, int] | None = None,
    activity: Callable[[Path], Activity] | None = None,
    period_ns: float = DEFAULT_PERIOD_NS,
    cache_dir: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    abc: str = "fast",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The Nangate45 figures of both tops and the analytic network totals (module
    docstring). ``activity(rtl_dir)`` measures the top written in ``rtl_dir``; without it
    OpenSTA's default activity is used.

    Raises
    ------
    ConfigError
        A folding the generator refuses.
    LibertyError, ToolNotFound, ToolTimeout, ToolError
        As :func:`inq_hw.cost.asic.asic_cost`.
    """
    if abc != "fast":  # fanout buffering is part of the fast script (cost.asic)
        raise CostError(f"The dataflow top is mapped with the fast ABC script, not --abc {abc}")
    from rtl_gen.dataflow import cap_folding, generate_dataflow

    check_tools()
    progress = progress or Progress()
    model = load_package(package)
    chosen = cap_folding(model, folding) if folding else full_folding(model)
    progress.phase(f"nangate45 dataflow top ({len(DESIGNS)} designs)", len(DESIGNS))
    figures = {}
    for design, baseline in DESIGNS:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="inq_hw_asic_top_") as tmp:
            rtl = Path(tmp)
            manifest = generate_dataflow(package, rtl, baseline=baseline, folding=chosen)
            params = manifest["tops"][0]["params"]
            (job,) = jobs_from_manifest(rtl)
            measured = activity(rtl) if activity else None
            result = asic_cost(
                job,
                period_ns=period_ns,
                activity=measured,
                cache_dir=cache_dir,
                timeout_s=timeout_s,
                abc=abc,
                buffer=True,
            )
        interval = int(params["interval_cycles"])
        figures[design] = {
            **asic_figures(result, interval),
            "interval_cycles": interval,
            "latency_cycles": int(params["latency_cycles"]),
        }
        progress.message(
            f"nangate45 top {design}: {result.area_um2:,.0f} um2, {result.critical_ns:.3f} ns, "
            f"{time.perf_counter() - start:.0f} s{' (cached)' if result.cached else ''}"
        )
        progress.advance()
    return {
        "folding": chosen,
        "period_ns": period_ns,
        "asic": figures,
        "analytic": _analytic(model),
    }
