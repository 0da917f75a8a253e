"""``digits`` and ``digits28``: scikit-learn's 8x8 handwritten digits, no download.

A seeded stratified 80/20 split; ``digits28`` resizes the images to 28x28 for LeNet-sized
models.
"""

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inq_hw.data.base import Dataset, _stratified_split, _subset, register_dataset
from inq_hw.errors import ConfigError

__all__: list[str] = []


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``(1797, 1, 8, 8)`` float32 images in ``[0, 1]`` and int64 labels."""
    table = _digits_table()
    images = (table[:, :-1] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # pixels 0..16
    labels = table[:, -1].astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _digits_table() -> np.ndarray:
    """Rows of 64 pixels and a label, as ``sklearn.datasets.load_digits`` reads them."""
    # Importing sklearn.datasets takes about a second (it pulls in SciPy), while the CSV it
    # ships loads in milliseconds with the np.loadtxt call load_digits itself makes.
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            return np.loadtxt(csv, delimiter=",")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.column_stack([bunch.data, bunch.target])


def _load_digits(name: str, data_dir: Path | None, split_seed: int, *, side: int) -> Dataset:
    if data_dir is not None:
        raise ConfigError(f"Data set {name!r} is built in and takes no data_dir, not {data_dir}")
    images, labels = _digits_arrays()
    x, y = torch.tensor(images), torch.tensor(labels)
    if side != x.shape[-1]:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        x = x.clamp_(0.0, 1.0)
    train, test = _stratified_split(labels, split_seed)
    return Dataset(
        name=name,
        train=_subset(x, y, train),
        test=_subset(x, y, test),
        num_classes=10,
        input_shape=(1, side, side),
        split_seed=split_seed,
        data_dir=None,
    )


@register_dataset("digits")
def _load_digits8(data_dir: Path | None, split_seed: int) -> Dataset:
    return _load_digits("digits", data_dir, split_seed, side=8)


@register_dataset("digits28")
def _load_digits28(data_dir: Path | None, split_seed: int) -> Dataset:
    return _load_digits("digits28", data_dir, split_seed, side=28)
