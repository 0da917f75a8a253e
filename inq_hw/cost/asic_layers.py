"""Nangate45 figures of a network's layers, beside the analytic model of the same slices.

For every weight layer: the shift-add unit and its multiplier twin (the same outputs:
:func:`inq_hw.cost.designs.layer_jobs`), their switching activity on real test images
(:func:`sim.unit_activity.unit_activity`, one evaluation per cycle), their
:func:`inq_hw.cost.asic.asic_cost`, and the analytic 45 nm figures of the same slice
(:func:`inq_hw.cost.analytic.analyze` of :func:`~inq_hw.cost.designs.subset_model`).

Energy per inference of a layer is the unit's energy per evaluation (total power × clock
period, measured activity when there is one) times the evaluations per inference (the
layer's output positions), for the outputs synthesised. Both sides are kept apart:
``asic`` and ``analytic`` per design, and their ratio.

Example usage::

    layers = asic_layers(model, activity=lambda job, layer: unit_activity(
        job, model, layer, images=4, cache_dir=Path("build/activity")), max_weights=288)
    layers[0]["asic"]["shift-add"]["area_um2"], layers[0]["analytic"]["mult8"]["area_um2"]
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from inq_hw.cost.analytic import analyze
from inq_hw.cost.asic import DEFAULT_PERIOD_NS, DEFAULT_TIMEOUT_S, Activity, AsicResult, asic_cost
from inq_hw.cost.designs import layer_jobs, subset_model
from inq_hw.cost.synth import SynthJob
from inq_hw.intmodel import IntModel
from inq_hw.progress import Progress

__all__ = ["DESIGNS", "METRICS", "asic_figures", "asic_layers", "network_totals"]

DESIGNS = (("shift-add", None), ("mult8", "mult8"))
#: Figures compared per layer: (name, the ASIC result's, the analytic design's).
METRICS = (
    ("area_um2", "area_um2", "area_um2"),
    ("critical_ns", "critical_ns", None),
    ("power_mw", "power_mw", None),
    ("energy_pj", "energy_pj", "energy_pj"),
)


def _analytic(model: IntModel, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    name = params["layer"]
    keep = params["outputs_synthesised"]
    sliced = model if keep == params["outputs_total"] else subset_model(model, name, keep)
    (layer,) = [cost for cost in analyze(sliced).layers if cost.name == name]
    return {
        design: {
            "area_um2": layer.designs[design].area_um2,
            "energy_pj": layer.designs[design].energy_pj,
            "positions": layer.positions,
        }
        for design, _ in DESIGNS
    }


def asic_figures(result: AsicResult, evaluations: int) -> dict[str, Any]:
    """The result's figures with power (measured activity when there is one, else
    OpenSTA's default) and energy per inference: energy per cycle × ``evaluations`` (a
    unit's output positions; a dataflow top's cycles per image)."""
    measured = result.power_measured_mw is not None
    power = result.power_measured_mw if measured else result.power_mw
    assert power is not None
    per_cycle = result.energy_measured_pj if measured else result.energy_pj
    assert per_cycle is not None
    return {
        **result.to_dict(),
        "activity": "measured" if measured else "opensta-default",
        "power_mw": power["total"],
        "power_breakdown_mw": power,
        "power_default_mw": result.power_mw,
        "energy_per_evaluation_pj": per_cycle,
        "energy_pj": per_cycle * evaluations,
    }


def asic_layers(
    model: IntModel,
    *,
    max_weights: int | None = 288,
    max_outputs: int | None = None,
    activity: Callable[[SynthJob, str], Activity] | None = None,
    period_ns: float = DEFAULT_PERIOD_NS,
    cache_dir: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    abc: str = "fast",
    layers: list[str] | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Per weight layer: its parameters, the ASIC and the analytic figures of both designs
    (module docstring). ``activity(job, layer)`` measures a unit's switching activity
    (the callers pass :func:`sim.unit_activity.unit_activity`); without it OpenSTA's
    default activity is used."""
    progress = progress or Progress()
    pairs = {
        design: layer_jobs(
            model,
            baseline=baseline,
            max_weights=max_weights,
            max_outputs=max_outputs,
            layers=layers,
        )
        for design, baseline in DESIGNS
    }
    count = len(pairs["shift-add"])
    progress.phase(f"nangate45 ({count} layers x {len(DESIGNS)} designs)", count * len(DESIGNS))
    out = []
    for index in range(count):
        params = pairs["shift-add"][index][1]
        analytic = _analytic(model, params)
        asic = {}
        for design, _ in DESIGNS:
            job = pairs[design][index][0]
            result = asic_cost(
                job,
                period_ns=period_ns,
                activity=activity(job, params["layer"]) if activity else None,
                cache_dir=cache_dir,
                timeout_s=timeout_s,
                abc=abc,
            )
            asic[design] = asic_figures(result, analytic[design]["positions"])
            progress.advance()
        out.append({"layer": params["layer"], "params": params, "asic": asic,
                    "analytic": analytic})  # fmt: skip
    return out


def network_totals(layers: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per design, over the layers' slices: Nangate45 area, power and energy summed, the
    longest critical path, and the analytic area and energy of the same slices."""
    totals: dict[str, dict[str, float]] = {}
    for design, _ in DESIGNS:
        asic = [layer["asic"][design] for layer in layers]
        analytic = [layer["analytic"][design] for layer in layers]
        totals[design] = {
            "area_um2": sum(a["area_um2"] for a in asic),
            "critical_ns": max(a["critical_ns"] for a in asic),
            "power_mw": sum(a["power_mw"] for a in asic),
            "energy_pj": sum(a["energy_pj"] for a in asic),
            "analytic_area_um2": sum(a["area_um2"] for a in analytic),
            "analytic_energy_pj": sum(a["energy_pj"] for a in analytic),
        }
    return totals
