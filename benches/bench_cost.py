"""Bench: the cost model. Analytic cost of a ResNet-18-sized model; synthesis seconds.

1. **Analytic.** :func:`inq_hw.cost.analyze` on a ResNet-18-sized integer model: the
   conv/linear weight shapes of ResNet-18 (7x7 stem, four stages of 3x3 convolutions with
   64..512 channels, the three 1x1 downsampling convolutions, a 512 -> 1000 classifier;
   11.7M weights) with random 5-bit power-of-two codes and a random 8-bit baseline at the
   same zero positions, chained without residual adds (the counts only need the layers).
   Goal: under 1 s of CPU (best of 3; the machine is shared, so wall seconds, also
   printed, depend on its load).
2. **Synthesis time per 1k weights.** :func:`inq_hw.cost.synth.synthesize` (no cache) on
   Linear shift-add units of 1k and 4k weights (random 5-bit codes, 15% zeros, 8-bit signed
   inputs, requantised) for the generic and iCE40 targets, and on the 8-bit multiplier
   twin of a 256-weight unit (the twin takes far longer); seconds per 1k weights. The
   iCE40 flow is the cost model's default (classic ABC LUT mapping without SAT sweeping,
   inq_hw/cost/synth.py).
"""

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benches._harness import best_of, print_table, verdict
from benches.bench_executor import _next_layer
from benches.bench_rtl_gen import _linear_unit, po2_weights, twin_weights
from inq_hw.cost import analyze
from inq_hw.cost.synth import SynthJob, jobs_from_manifest, synthesize
from inq_hw.intmodel import ActFormat, InputLayer, IntModel, Layer, WeightLayer
from rtl_gen.export import Design, write_designs
from rtl_gen.units import ConstDotUnit, Requant

__all__ = ["GOAL_S", "resnet18_model", "run"]

GOAL_S = 1.0
SEED = 0
# (in, out) channels of the 3x3 convolutions of each stage; 1x1 downsampling where they differ.
_STAGES = ((64, 64), (64, 128), (128, 256), (256, 512))
SYNTH_SHAPES = ((64, 16), (128, 32))
TWIN_SHAPE = (32, 8)


def _with_baseline(rng: np.random.Generator, layer: Layer) -> Layer:
    if not isinstance(layer, WeightLayer):
        return layer
    po2 = layer.weights_int()
    twin = twin_weights(rng, po2)
    twin.flat[int(np.flatnonzero(po2)[0])] = 127  # the step uses the whole 8-bit range
    return dataclasses.replace(
        layer,
        baseline_weights=twin.astype(np.int8),
        baseline_bias=np.zeros_like(layer.bias),
        baseline_exp=-7,
        baseline_shift=layer.shift,
        baseline_acc_bits=layer.acc_bits + 8,
    )


def resnet18_model(seed: int = SEED) -> IntModel:
    """The ResNet-18 weight shapes as a chain (module docstring), with 8-bit baselines."""
    rng = np.random.default_rng(seed)
    layers: list[Layer] = [
        InputLayer(name="x", inputs=(), shape=(3, 64, 64), out=ActFormat(8, False, 8))
    ]

    def add(op: tuple[Any, ...], src: Layer | None = None) -> Layer:
        layer = _next_layer(rng, len(layers), src or layers[-1], op)
        layers.append(_with_baseline(rng, layer))
        return layers[-1]

    add(("conv", 64, 7, 3, True))
    for c_in, c_out in _STAGES:
        add(("maxpool", 2))
        stage_input = layers[-1]
        if c_in != c_out:
            add(("conv", c_out, 1, 0, False), stage_input)  # the downsampling branch
        for i in range(4):
            add(("conv", c_out, 3, 1, True), stage_input if i == 0 else None)
    add(("maxpool", 2))
    add(("maxpool", 2))
    add(("flatten",))
    add(("linear", 1000, False))
    return IntModel(layers=tuple(layers), output=layers[-1].name)


def _cpu_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Best CPU seconds of this process (numpy runs on one thread here)."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def measure_analytic() -> dict[str, Any]:
    model = resnet18_model()
    weights = sum(layer.codes.size for layer in model.weight_layers())
    seconds = best_of(lambda: analyze(model), 3)
    cpu_seconds = _cpu_seconds(lambda: analyze(model), 3)
    cost = analyze(model)
    return {
        "weights": int(weights),
        "weight_layers": len(model.weight_layers()),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load_average_1min": os.getloadavg()[0],
        "goal_s": GOAL_S,
        "pass": cpu_seconds < GOAL_S,
        "ratios_mult8": cost.ratios("mult8"),
    }


def _job(unit: ConstDotUnit, top: str) -> SynthJob:
    with tempfile.TemporaryDirectory() as tmp:
        write_designs([Design(top=top, component=unit, latency=0)], tmp)
        (job,) = jobs_from_manifest(tmp)
    return job


def _twin_unit() -> ConstDotUnit:
    n_in, n_out = TWIN_SHAPE
    rng = np.random.default_rng(SEED + 7)
    weights = twin_weights(rng, po2_weights(rng, (n_out, n_in)))
    in_format = ActFormat(8, signed=True, frac=4)
    requant = Requant(shift=12, relu=True, out=ActFormat(8, False, 0))
    bias = np.zeros(n_out, dtype=np.int64)
    return ConstDotUnit(
        weights=weights, bias=bias, in_format=in_format, requant=requant, mode="multiply"
    )


def measure_synthesis() -> list[dict[str, Any]]:
    units = [(f"shift-add {i}x{o}", _linear_unit(i, o), i * o) for i, o in SYNTH_SHAPES]
    units.append(
        (f"mult8 twin {TWIN_SHAPE[0]}x{TWIN_SHAPE[1]}", _twin_unit(), TWIN_SHAPE[0] * TWIN_SHAPE[1])
    )
    rows = []
    for label, unit, weights in units:
        job = _job(unit, "top")
        for target in ("generic", "ice40"):
            result = synthesize(job, target, cache_dir=None, timeout_s=1800)
            size = result.gates if target == "generic" else result.lut
            rows.append(
                {
                    "design": label,
                    "weights": weights,
                    "target": target,
                    "seconds": result.seconds,
                    "s_per_1k_weights": result.seconds * 1000 / weights,
                    "size": size,
                }
            )
    return rows


def run() -> dict[str, Any]:
    """Measure, print and return the figures."""
    analytic = measure_analytic()
    print(
        f"cost: analytic, ResNet-18-sized model ({analytic['weights']:,} weights, "
        f"{analytic['weight_layers']} weight layers): {analytic['cpu_seconds']:.2f} CPU s "
        f"({analytic['seconds']:.2f} wall s at 1-min load {analytic['load_average_1min']:.1f} "
        f"on {os.cpu_count()} CPUs), goal < {GOAL_S:g} CPU s: {verdict(analytic['pass'])}"
    )
    ratios = analytic["ratios_mult8"]
    print(f"  shift-add / mult8: energy {ratios['energy_pj']:.3f}, area {ratios['area_um2']:.3f}")
    synth = measure_synthesis()
    print_table(
        "  synthesis seconds (Yosys via yowasp, no cache); generic: gates, iCE40: LUT4",
        ["design", "target", "seconds", "s / 1k weights", "size"],
        [
            [
                r["design"],
                r["target"],
                f"{r['seconds']:.1f}",
                f"{r['s_per_1k_weights']:.1f}",
                f"{r['size']:,}",
            ]
            for r in synth
        ],
    )
    return {"analytic": analytic, "synthesis": synth}


if __name__ == "__main__":
    run()
