"""Bench: an INQ re-training epoch against a plain fine-tuning epoch of the same model.

Goal: INQ re-training costs under 5% more than plain fine-tuning, measured as a ratio in
one run. Two deep copies of one model train on the same batches (same shuffle generator
per epoch); the INQ copy has advanced one step (half of every layer frozen) and its
optimizer is attached, so every step runs the gradient mask and the weight restore.
Epochs alternate plain, INQ, plain, INQ ... after warm-up; medians are compared. The time
spent inside ``optimizer.step()`` (INQ's hooks included) is also clocked within those
epochs, which shows how much of the overhead the step hooks account for.
"""

import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from benches._harness import BenchError, median, print_table, single_thread, time_once, verdict
from inq_hw.data import DataSplit, load_dataset
from inq_hw.inq import IncrementalQuantizer, INQConfig
from inq_hw.models import build_model
from inq_hw.train import TrainConfig, epoch_generator, make_optimizer, train_epoch

__all__ = ["GOAL_OVERHEAD", "run"]

GOAL_OVERHEAD = 0.05
WARMUP = 2
EPOCHS = 40
TRAIN = TrainConfig()


@dataclass(frozen=True)
class Case:
    """A model and the data set it trains on."""

    model: str
    dataset: str
    input_size: int


CASES = (Case("digits-cnn", "digits", 8), Case("lenet5", "digits28", 28))


class _StepClock:
    """Stands in for ``optimizer.step`` (hooks included) and adds up the seconds it takes."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.seconds = 0.0
        self._step = optimizer.step
        optimizer.step = self  # type: ignore[method-assign]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._step(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def lap(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


@dataclass
class _Arm:
    """One side of the comparison: a model, its optimizer and what its epochs took."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    clock: _StepClock
    epoch_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)

    def train(self, split: DataSplit, epoch: int, *, record: bool) -> None:
        generator = epoch_generator(TRAIN.seed, epoch)
        seconds = time_once(
            lambda: train_epoch(
                self.model, split, self.optimizer, batch_size=TRAIN.batch_size, generator=generator
            )
        )
        step_seconds = self.clock.lap()
        if record:
            self.epoch_s.append(seconds)
            self.step_s.append(step_seconds)


def _arm(model: nn.Module, optimizer: torch.optim.Optimizer) -> _Arm:
    return _Arm(model, optimizer, _StepClock(optimizer))


def run_case(case: Case) -> dict[str, Any]:
    """Interleaved plain and INQ epochs of one model; figures of both and their ratio."""
    split = load_dataset(case.dataset).train
    torch.manual_seed(0)
    base = build_model(case.model, in_channels=1, num_classes=10, input_size=case.input_size)
    plain_model, inq_model = copy.deepcopy(base), copy.deepcopy(base)
    plain = _arm(plain_model, make_optimizer(plain_model.parameters(), TRAIN))
    inq = IncrementalQuantizer(inq_model, INQConfig(bits=5))
    inq.advance()
    quant = _arm(inq_model, make_optimizer(inq_model.parameters(), TRAIN))
    handle = inq.attach(quant.optimizer)
    for epoch in range(WARMUP + EPOCHS):
        plain.train(split, epoch, record=epoch >= WARMUP)
        quant.train(split, epoch, record=epoch >= WARMUP)
    handle.remove()
    if not inq.check():
        raise BenchError(f"{case.model}: frozen weights moved, so the INQ epochs were not INQ")
    return _figures(case, base, split, plain, quant)


def _figures(
    case: Case, model: nn.Module, split: DataSplit, plain: _Arm, quant: _Arm
) -> dict[str, Any]:
    plain_epoch, quant_epoch = median(plain.epoch_s), median(quant.epoch_s)
    ratio = quant_epoch / plain_epoch
    step = {"plain": median(plain.step_s), "inq": median(quant.step_s)}
    pairs = statistics.quantiles(
        [q / p for p, q in zip(plain.epoch_s, quant.epoch_s, strict=True)], n=4
    )
    return {
        "model": case.model,
        "dataset": case.dataset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps_per_epoch": -(-len(split) // TRAIN.batch_size),
        "plain_epoch_s": plain_epoch,
        "inq_epoch_s": quant_epoch,
        "ratio": ratio,
        "overhead": ratio - 1.0,
        "pair_ratio_quartiles": [pairs[0], pairs[2]],
        "step_s_per_epoch": step,
        "step_overhead": (step["inq"] - step["plain"]) / plain_epoch,
        "pass": ratio - 1.0 < GOAL_OVERHEAD,
    }


def _row(f: dict[str, Any]) -> list[str]:
    return [
        f"{f['model']} / {f['dataset']}",
        f"{f['parameters']:,}",
        str(f["steps_per_epoch"]),
        f"{1e3 * f['plain_epoch_s']:.1f}",
        f"{1e3 * f['inq_epoch_s']:.1f}",
        f"{f['ratio']:.3f}",
        f"{100 * f['overhead']:+.1f}",
        "{:.3f}-{:.3f}".format(*f["pair_ratio_quartiles"]),
        f"{1e3 * f['step_s_per_epoch']['plain']:.1f}",
        f"{1e3 * f['step_s_per_epoch']['inq']:.1f}",
        f"{100 * f['step_overhead']:+.1f}",
        verdict(f["pass"]),
    ]


HEADER = (
    "model / data",
    "params",
    "steps",
    "plain ms",
    "INQ ms",
    "INQ/plain",
    "overhead %",
    "pairs q1-q3",
    "step ms",
    "INQ step ms",
    "of it in step %",
    "< 5%",
)


def run() -> dict[str, Any]:
    """Measure every case, print a table and return the figures."""
    with single_thread():
        cases = [run_case(case) for case in CASES]
    title = (
        f"inq_overhead: INQ epoch vs plain epoch, torch.set_num_threads(1), "
        f"medians of {EPOCHS} interleaved epochs each after {WARMUP} warm-up, "
        f"batch {TRAIN.batch_size}, {TRAIN.optimizer}"
    )
    print_table(title, HEADER, [_row(f) for f in cases])
    print(
        "  pairs q1-q3: quartiles of INQ/plain over the epoch pairs (the noise); step ms: time "
        "inside optimizer.step() per epoch, INQ hooks included; of it in step %: "
        "(INQ step ms - step ms) / plain ms"
    )
    return {"threads": 1, "epochs": EPOCHS, "warmup": WARMUP, "cases": cases}


if __name__ == "__main__":
    run()
