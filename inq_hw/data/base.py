"""The data set model, the loader registry, and helpers the loaders share.

Every loader returns one :class:`Dataset`: a train and a test :class:`DataSplit` of float32
images in ``[0, 1]`` and int64 labels. Loaders register by name with
:func:`register_dataset`; :func:`load_dataset` looks them up.
"""

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inq_hw.errors import ConfigError, DataError

__all__ = [
    "TEST_FRACTION",
    "DataSplit",
    "Dataset",
    "dataset_names",
    "load_dataset",
    "register_dataset",
]

#: Share of each class held out for testing when a data set has no split of its own.
TEST_FRACTION = 0.2


@dataclass(frozen=True, eq=False)
class DataSplit:
    """Images and labels of one split (train or test).

    ``eq=False``: comparing tensors element-wise is not a boolean, so splits compare by
    identity; use :func:`torch.equal` on the members.

    Members
    -------
    x : torch.Tensor
        float32, shape ``(N, C, H, W)``, values in ``[0, 1]``.
    y : torch.Tensor
        int64, shape ``(N,)``, labels ``0 .. num_classes - 1``.

    Raises
    ------
    TypeError
        If a member is not a tensor of the right dtype.
    ValueError
        If the shapes do not fit together or a value is out of range.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        _check_tensor("x", self.x, torch.float32, ndim=4)
        _check_tensor("y", self.y, torch.int64, ndim=1)
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"DataSplit.x and .y must have the same length, not "
                f"{self.x.shape[0]} and {self.y.shape[0]}"
            )
        if self.x.numel():
            low, high = torch.aminmax(self.x)
            if not (low >= 0 and high <= 1):  # also catches NaN
                raise ValueError(
                    f"DataSplit.x values must lie in [0, 1], not [{low.item()}, {high.item()}]"
                )
        if self.y.numel() and self.y.min() < 0:
            raise ValueError(f"DataSplit.y labels must be non-negative, not {self.y.min().item()}")

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded data set: train and test splits and what describes them.

    Members
    -------
    name : str
        Registered name it was loaded as, e.g. ``"digits"``.
    train, test : DataSplit
        The two splits; every test label also occurs as a train class.
    num_classes : int
        Labels lie in ``0 .. num_classes - 1``.
    input_shape : tuple[int, int, int]
        ``(C, H, W)`` of one image.
    split_seed : int
        Seed of the train/test split (recorded even where the split is fixed).
    data_dir : str or None
        Directory the files came from; ``None`` for built-in data.

    Raises
    ------
    ValueError
        If the splits do not match ``input_shape`` or ``num_classes``, or train is empty.
    """

    name: str
    train: DataSplit
    test: DataSplit
    num_classes: int
    input_shape: tuple[int, int, int]
    split_seed: int
    data_dir: str | None

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"Dataset.num_classes must be at least 1, not {self.num_classes}")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"Dataset.input_shape must be (C, H, W), not {self.input_shape}")
        if not len(self.train):
            raise ValueError(f"Dataset.train must not be empty: {self.name}")
        for role, split in (("train", self.train), ("test", self.test)):
            self._check_split(role, split)

    def _check_split(self, role: str, split: DataSplit) -> None:
        shape = tuple(split.x.shape[1:])
        if shape != self.input_shape:
            raise ValueError(f"Dataset.{role} images must be {self.input_shape}, not {shape}")
        if len(split) and split.y.max() >= self.num_classes:
            raise ValueError(
                f"Dataset.{role} labels must be below num_classes={self.num_classes}, "
                f"not {split.y.max().item()}"
            )


def _check_tensor(member: str, value: object, dtype: torch.dtype, *, ndim: int) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != dtype:
        kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise TypeError(f"DataSplit.{member} must be a {dtype} tensor, not {kind}")
    if value.dim() != ndim:
        raise ValueError(f"DataSplit.{member} must have {ndim} dims, not {tuple(value.shape)}")


# --- registry ---------------------------------------------------------------------------

#: A loader takes ``data_dir`` (``None`` if not given) and ``split_seed``.
_Loader = Callable[[Path | None, int], Dataset]
_LOADERS: dict[str, _Loader] = {}


def register_dataset(name: str) -> Callable[[_Loader], _Loader]:
    """Register a loader under ``name`` for :func:`load_dataset`.

    Example usage::

        @register_dataset("tiny")
        def _load_tiny(data_dir: Path | None, split_seed: int) -> Dataset: ...

    Raises:
        ValueError: If ``name`` is already registered.
    """

    def decorate(loader: _Loader) -> _Loader:
        if name in _LOADERS:
            raise ValueError(f"A data set is already registered as {name!r}")
        _LOADERS[name] = loader
        return loader

    return decorate


def dataset_names() -> list[str]:
    """Names :func:`load_dataset` accepts, sorted."""
    return sorted(_LOADERS)


def load_dataset(
    name: str, *, data_dir: str | os.PathLike[str] | None = None, split_seed: int = 0
) -> Dataset:
    """Load a registered data set as float32 images in ``[0, 1]`` and int64 labels.

    Example usage::

        data = load_dataset("digits", split_seed=0)
        data.train.x.shape      # torch.Size([1437, 1, 8, 8])
        mnist = load_dataset("mnist", data_dir="~/data/mnist")

    Args:
        name: One of :func:`dataset_names`.
        data_dir: Directory holding the files; must be ``None`` for built-in data.
        split_seed: Seed of the stratified train/test split, where the data has none.

    Raises:
        ConfigError: Unknown ``name``, bad ``split_seed``, or a ``data_dir`` for built-in data.
        DataError: ``data_dir`` missing, or its files missing, incomplete or malformed.
    """
    loader = _LOADERS.get(name) if isinstance(name, str) else None
    if loader is None:
        raise ConfigError(f"Data set must be one of {', '.join(dataset_names())}; not {name!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise ConfigError(f"split_seed must be a non-negative integer, not {split_seed!r}")
    path = None if data_dir is None else Path(data_dir).expanduser()
    return loader(path, split_seed)


# --- shared helpers ---------------------------------------------------------------------


def _require_dir(name: str, data_dir: Path | None) -> Path:
    if data_dir is None:
        raise DataError(f"Data set {name!r} needs a data_dir holding its files, not None")
    if not data_dir.is_dir():
        raise DataError(f"Data directory for {name!r} not found: {data_dir}")
    return data_dir


def _stratified_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices, :data:`TEST_FRACTION` of each class held out.

    A class of one sample stays in train so that every test class is also a train class.
    """
    rng = np.random.default_rng(seed)
    held_out = [np.empty(0, dtype=np.int64)]
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if members.size > 1:
            n_test = max(1, math.floor(TEST_FRACTION * members.size + 0.5))
            held_out.append(rng.choice(members, size=n_test, replace=False))
    is_test = np.zeros(labels.shape[0], dtype=bool)
    is_test[np.concatenate(held_out)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _subset(x: torch.Tensor, y: torch.Tensor, indices: np.ndarray) -> DataSplit:
    index = torch.from_numpy(indices)
    return DataSplit(x[index], y[index])


def _unit_float(images: np.ndarray) -> torch.Tensor:
    """uint8 pixels to a float32 tensor in ``[0, 1]``."""
    return torch.from_numpy(np.divide(images, 255, dtype=np.float32))


def _labels_tensor(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(labels.astype(np.int64))
