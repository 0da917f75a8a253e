"""The training loop shared by FP32 training and INQ re-training.

Data sets here are small tensors held in memory, so batching is slicing a permutation.
Each epoch's shuffle comes from a generator seeded by ``(seed, epoch index)``, which makes
a resumed run replay exactly the batches the killed run would have seen, and makes every
rank of a distributed run agree on the permutation (each takes its own slice).
"""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from inq_hw.data import DataSplit
from inq_hw.errors import ConfigError, TrainingDiverged

__all__ = [
    "TrainConfig",
    "epoch_generator",
    "evaluate",
    "is_main_process",
    "make_optimizer",
    "make_scheduler",
    "predict",
    "train_epoch",
]

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings of one training phase (FP32 training or one INQ step).

    The INQ defaults follow the paper: SGD, momentum 0.9, weight decay 5e-4, a small
    learning rate decayed (cosine) within each step and reset at the next.
    """

    epochs: int = 4
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    optimizer: str = "sgd"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"Epochs must be a positive integer, not {self.epochs!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"Learning rate must be a positive number, not {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"Momentum must lie in [0, 1), not {self.momentum!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0.0):
            raise ConfigError(
                f"Weight decay must be a non-negative number, not {self.weight_decay!r}"
            )
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ConfigError(f"Batch size must be a positive integer, not {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"Optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"Unknown training config keys: {sorted(unknown)}")
        return cls(**data)


def make_optimizer(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's choice) or Adam, with weight decay."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay over ``steps`` optimizer steps (one phase; reset for the next)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))


def is_main_process() -> bool:
    """True outside torch.distributed and on rank 0 inside it."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffle generator of global epoch ``epoch``: same on every rank and on resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def batches_per_epoch(num_samples: int, batch_size: int) -> int:
    """Optimizer steps one epoch takes on each rank."""
    _, world = _world()
    return math.ceil(math.ceil(num_samples / world) / batch_size)


def train_epoch(
    model: nn.Module,
    split: DataSplit,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    on_batch: Callable[[], None] | None = None,
) -> float:
    """One pass over ``split``; returns the mean training loss of this rank.

    In a distributed run each rank takes every ``world``-th sample of the shared
    permutation (padded by wrapping so all ranks take the same number of steps).
    """
    model.train()
    rank, world = _world()
    order = torch.randperm(len(split), generator=generator)
    per_rank = math.ceil(len(order) / world)
    if per_rank * world > len(order):
        order = torch.cat([order, order[: per_rank * world - len(order)]])
    mine = order[rank::world]
    loss_fn = nn.CrossEntropyLoss()
    total, count = 0.0, 0
    for start in range(0, len(mine), batch_size):
        index = mine[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(split.x[index]), split.y[index])
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"Training diverged: the loss is {value} (lower the learning rate)"
            )
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += value * len(index)
        count += len(index)
        if on_batch is not None:
            on_batch()
    return total / max(1, count)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Predicted class of every row of ``x`` (eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        chunks = [model(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.int64)


def evaluate(model: nn.Module, split: DataSplit) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``split``."""
    if len(split) == 0:
        raise ConfigError("Cannot evaluate on an empty split")
    return float((predict(model, split.x) == split.y).double().mean())
