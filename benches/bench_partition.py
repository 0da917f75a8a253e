"""Bench: one INQ step (partition + quantize + freeze) over ResNet-18-sized weights.

Goal: partition + quantize of ResNet-18-sized weights (11.7M parameters) in under 1 s on
one core. Times ``IncrementalQuantizer.advance()`` at every step of the default schedule
(0.5, 0.75, 0.875, 1.0) for the magnitude and the random partition, each step timed from
the same state in every repetition (a fresh deep copy of the model per repetition). For
scale: ``quantize_po2`` alone, the magnitude partition alone, and ``torch.abs`` over the
same weights, a memory-bandwidth baseline every figure is also given as a multiple of.
"""

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benches._harness import best_of, print_table, single_thread, time_once, verdict
from inq_hw.fold import fold_batchnorm
from inq_hw.inq import IncrementalQuantizer, INQConfig, partition_by_magnitude, portion_count
from inq_hw.models import build_model
from inq_hw.quant import quantize_po2

__all__ = ["GOAL_SECONDS", "run"]

GOAL_SECONDS = 1.0
REPEAT = 5
BITS = 5


def build_resnet18() -> nn.Module:
    """ResNet-18's widths and depth (11.68M parameters) at 32x32 input, BatchNorm folded."""
    torch.manual_seed(0)
    model = build_model(
        "resnet",
        in_channels=3,
        num_classes=1000,
        input_size=32,
        widths=[64, 128, 256, 512],
        blocks=[2, 2, 2, 2],
    )
    return fold_batchnorm(model.eval())


@dataclass(frozen=True)
class ScheduleTimes:
    """Best-of seconds of the quantizer's constructor and of each ``advance()``."""

    construct: float
    steps: dict[float, float]


def _construct(model: nn.Module, config: INQConfig) -> tuple[float, IncrementalQuantizer]:
    made: list[IncrementalQuantizer] = []
    seconds = time_once(lambda: made.append(IncrementalQuantizer(model, config)))
    return seconds, made[0]


def time_schedule(model: nn.Module, config: INQConfig, repeat: int) -> ScheduleTimes:
    """Time a whole INQ run ``repeat`` times; step k starts from the same state each time."""
    construct: list[float] = []
    steps: dict[float, list[float]] = {portion: [] for portion in config.schedule}
    for _ in range(repeat):
        seconds, inq = _construct(copy.deepcopy(model), config)
        construct.append(seconds)
        for portion in config.schedule:
            steps[portion].append(time_once(inq.advance))
    return ScheduleTimes(min(construct), {p: min(t) for p, t in steps.items()})


def _partition_all(layers: list[tuple[torch.Tensor, torch.Tensor]], portion: float) -> None:
    unused = torch.Generator()  # the registry's type demands one; magnitude ignores it
    for weight, frozen in layers:
        partition_by_magnitude(weight, frozen, portion_count(weight.numel(), portion), unused)


def time_primitives(model: nn.Module, repeat: int) -> dict[str, float]:
    """Best-of seconds of quantize, the first magnitude partition and abs over all weights."""
    inq = IncrementalQuantizer(copy.deepcopy(model), INQConfig(bits=BITS))
    weights = [(layer.weight.detach(), layer.n1) for layer in inq.layers]
    unfrozen = [(weight, torch.zeros_like(weight, dtype=torch.bool)) for weight, _ in weights]
    return {
        "quantize_po2": best_of(
            lambda: [quantize_po2(w, BITS, n1=n1) for w, n1 in weights], repeat
        ),
        "partition_by_magnitude@0.5": best_of(lambda: _partition_all(unfrozen, 0.5), repeat),
        "abs": best_of(lambda: [torch.abs(w) for w, _ in weights], repeat),
    }


def _rows(figures: dict[str, Any]) -> list[list[str]]:
    baseline = figures["primitives_s"]["abs"]

    def row(what: str, seconds: float, goal: bool) -> list[str]:
        judged = verdict(seconds < GOAL_SECONDS) if goal else ""
        return [what, f"{seconds:.3f}", f"{seconds / baseline:.0f}x", judged]

    rows = []
    for partition, times in figures["advance_s"].items():
        rows.append(row(f"IncrementalQuantizer() [{partition}]", times["construct"], False))
        rows += [row(f"  advance() -> {p}", s, True) for p, s in times["steps"].items()]
    for name, seconds in figures["primitives_s"].items():
        rows.append(
            row(f"{name} alone" if name != "abs" else "torch.abs (baseline)", seconds, False)
        )
    return rows


def run() -> dict[str, Any]:
    """Measure, print a table and return the figures."""
    with single_thread():
        model = build_resnet18()
        advance: dict[str, dict[str, Any]] = {}
        for partition in ("magnitude", "random"):
            times = time_schedule(model, INQConfig(bits=BITS, partition=partition), REPEAT)
            advance[partition] = {"construct": times.construct, "steps": times.steps}
        primitives = time_primitives(model, REPEAT)
        layers = IncrementalQuantizer(model, INQConfig(bits=BITS)).layers
    slowest = max(s for times in advance.values() for s in times["steps"].values())
    figures: dict[str, Any] = {
        "weights": sum(layer.weight.numel() for layer in layers),
        "layers": len(layers),
        "threads": 1,
        "repeat": REPEAT,
        "advance_s": advance,
        "primitives_s": primitives,
        "slowest_advance_s": slowest,
        "goal_s": GOAL_SECONDS,
        "pass": slowest < GOAL_SECONDS,
    }
    _print(figures)
    return figures


def _print(figures: dict[str, Any]) -> None:
    title = (
        f"partition: ResNet-18-sized, {figures['weights']:,} weights in {figures['layers']} "
        f"layers, {BITS} bits, torch.set_num_threads(1), best of {REPEAT}"
    )
    print_table(title, ["what", "seconds", "x abs", "< 1 s"], _rows(figures))
    slowest = figures["slowest_advance_s"]
    print(
        f"  goal: every advance() under {GOAL_SECONDS:g} s on one core: "
        f"{verdict(figures['pass'])} (slowest {slowest:.3f} s)"
    )


if __name__ == "__main__":
    run()
