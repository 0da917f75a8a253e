"""Weight partition of INQ: which weights join the quantized (frozen) group at a step.

Pure functions on masks. Both strategies choose among the *free* weights only and keep
every frozen weight frozen, with exact counts: ``portion_count`` weights are frozen after
the step whatever ties or zeros the tensor holds (a quantile over all weights would be
dragged to 0 by the zeros quantization creates and freeze everything at once).
"""

import hashlib
from collections.abc import Callable
from typing import Protocol

import torch

from inq_hw.errors import ConfigError

__all__ = [
    "PARTITIONS",
    "partition_by_magnitude",
    "partition_random",
    "portion_count",
    "register_partition",
    "step_generator",
]


class PartitionFn(Protocol):
    """``(weights, frozen, count, generator=None) -> new frozen mask``."""

    def __call__(
        self,
        weights: torch.Tensor,
        frozen: torch.Tensor,
        count: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor: ...


PARTITIONS: dict[str, PartitionFn] = {}


def register_partition(name: str) -> Callable[[PartitionFn], PartitionFn]:
    """Register a partition strategy under ``name``."""

    def decorate(fn: PartitionFn) -> PartitionFn:
        PARTITIONS[name] = fn
        return fn

    return decorate


def portion_count(numel: int, portion: float) -> int:
    """Weights frozen after reaching ``portion`` (rounded half up; all of them at 1.0)."""
    if portion >= 1.0:
        return numel
    return min(numel, int(portion * numel + 0.5))


def _check(frozen: torch.Tensor, count: int) -> int:
    already = int(frozen.sum())
    if not already <= count <= frozen.numel():
        raise ConfigError(f"Frozen count must lie in [{already}, {frozen.numel()}], not {count}")
    return count - already


def _first_k(candidates: torch.Tensor, k: int) -> torch.Tensor:
    """The first ``k`` True entries of a flat bool mask (lowest indices)."""
    return candidates & (torch.cumsum(candidates, 0, dtype=torch.int64) <= k)


@register_partition("magnitude")
def partition_by_magnitude(
    weights: torch.Tensor,
    frozen: torch.Tensor,
    count: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pruning-inspired partition: freeze the largest-magnitude free weights.

    Returns a new mask with exactly ``count`` True entries that contains ``frozen``. Ties at
    the threshold go to the lower flat index, so the result is deterministic (identical on
    every rank of a distributed run). ``generator`` is unused (same signature as random).
    """
    k = _check(frozen, count)
    flat_frozen = frozen.reshape(-1)
    if k == 0:
        return frozen.clone()
    free_magnitude = weights.detach().reshape(-1).abs()[~flat_frozen]
    # k-th largest among the free = (n_free - k + 1)-th smallest; O(n), no full sort.
    threshold = torch.kthvalue(free_magnitude, free_magnitude.numel() - k + 1).values
    magnitude = weights.detach().reshape(-1).abs()
    above = (magnitude > threshold) & ~flat_frozen
    tied = (magnitude == threshold) & ~flat_frozen
    chosen = above | _first_k(tied, k - int(above.sum()))
    return (flat_frozen | chosen).reshape(frozen.shape)


@register_partition("random")
def partition_random(
    weights: torch.Tensor,
    frozen: torch.Tensor,
    count: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random partition (the paper's ablation): freeze ``count - frozen`` random free weights.

    Deterministic for a given ``generator`` state; see :func:`step_generator`.
    """
    k = _check(frozen, count)
    flat_frozen = frozen.reshape(-1)
    free_index = torch.nonzero(~flat_frozen).reshape(-1)
    pick = torch.randperm(free_index.numel(), generator=generator)[:k]
    result = flat_frozen.clone()
    result[free_index[pick]] = True
    return result.reshape(frozen.shape)


def step_generator(seed: int, layer: str, step: int) -> torch.Generator:
    """A generator seeded from (seed, layer name, step): reproducible, rank-independent."""
    digest = hashlib.sha256(f"{seed}/{layer}/{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
