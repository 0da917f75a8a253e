"""Synthesis jobs from an integer model: rtl_gen's units, optionally on a subset of outputs.

A layer's outputs share nothing but their inputs, so a unit's gates grow with its output
count; a layer too large to synthesise in reasonable time can be measured on its first
``outputs`` outputs (the shift-add unit and its twin on the same rows), and the result
says so. The output with the largest baseline weight is always among them, so the subset
is still a valid layer (its 8-bit step is unchanged).

Example usage::

    jobs = layer_jobs(load_package("build/inq5"), baseline="mult8", max_weights=144)
"""

import dataclasses
import tempfile
from typing import Any

import numpy as np

from inq_hw.cost.synth import SynthJob, jobs_from_manifest
from inq_hw.intmodel import InputLayer, IntModel, WeightLayer

__all__ = ["layer_jobs", "outputs_kept", "subset_model"]


def _rows(layer: WeightLayer, outputs: int) -> np.ndarray:
    rows = np.arange(min(outputs, layer.codes.shape[0]))
    if layer.baseline_weights is not None:
        largest = int(np.abs(layer.baseline_weights.reshape(len(layer.bias), -1)).max(1).argmax())
        if largest not in rows:
            rows[-1] = largest
    return rows


def _sliced(layer: WeightLayer, rows: np.ndarray) -> WeightLayer:
    changes: dict[str, Any] = {
        "codes": layer.codes[rows],
        "bias": layer.bias[rows],
        "shape": (len(rows), *layer.shape[1:]),
    }
    if layer.baseline_weights is not None and layer.baseline_bias is not None:
        changes["baseline_weights"] = layer.baseline_weights[rows]
        changes["baseline_bias"] = layer.baseline_bias[rows]
    return dataclasses.replace(layer, **changes)


def subset_model(model: IntModel, name: str, outputs: int) -> IntModel:
    """A two-layer model: the input of weight layer ``name`` and that layer cut to
    ``outputs`` outputs (module docstring); its unit is a slice of the full unit."""
    layer = model.layer(name)
    assert isinstance(layer, WeightLayer)
    source = model.layer(layer.inputs[0])
    head = InputLayer(name=source.name, inputs=(), shape=source.shape, out=source.out)
    return IntModel(layers=(head, _sliced(layer, _rows(layer, outputs))), output=name)


def outputs_kept(
    layer: WeightLayer, *, max_outputs: int | None = None, max_weights: int | None = None
) -> int:
    """How many of ``layer``'s outputs :func:`layer_jobs` synthesises."""
    outputs = layer.codes.shape[0]
    keep = outputs if max_outputs is None else min(outputs, max_outputs)
    if max_weights is not None:
        inputs = int(np.prod(layer.codes.shape[1:]))
        keep = min(keep, max(1, max_weights // inputs))
    return keep


def layer_jobs(
    model: IntModel,
    *,
    baseline: str | None = None,
    stages: int = 0,
    max_outputs: int | None = None,
    max_weights: int | None = None,
    layers: list[str] | None = None,
) -> list[tuple[SynthJob, dict[str, Any]]]:
    """One synthesis job per weight layer (or per name in ``layers``): the shift-add unit,
    or its ``baseline`` twin; with the unit's parameters, including ``outputs_synthesised``.

    ``max_outputs`` caps the outputs of every unit; ``max_weights`` caps them at
    ``max(1, max_weights // inputs)``, so every unit has about the same number of weights.
    """
    from rtl_gen.export import write_designs
    from rtl_gen.generate import build_designs

    result = []
    for layer in model.weight_layers():
        if layers is not None and layer.name not in layers:
            continue
        outputs = layer.codes.shape[0]
        keep = outputs_kept(layer, max_outputs=max_outputs, max_weights=max_weights)
        unit_model = model if keep == outputs else subset_model(model, layer.name, keep)
        designs = build_designs(
            unit_model, unit=f"layer:{layer.name}", stages=stages, baseline=baseline
        )
        with tempfile.TemporaryDirectory(prefix="inq_hw_cost_") as tmp:
            write_designs(designs, tmp)
            (job,) = jobs_from_manifest(tmp)
        params = {**designs[0].params, "outputs_total": int(outputs)}
        params["outputs_synthesised"] = params.pop("outputs")
        rows = _rows(layer, keep) if keep < outputs else np.arange(outputs)
        params["rows_synthesised"] = [int(r) for r in rows]
        result.append((job, params))
    return result
