"""``mnist``: MNIST-format IDX files (MNIST, Fashion-MNIST, ...), optionally gzipped."""

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from inq_hw.data.base import (
    Dataset,
    DataSplit,
    _labels_tensor,
    _require_dir,
    _unit_float,
    register_dataset,
)
from inq_hw.errors import DataError

__all__: list[str] = []

# IDX magic numbers: two zero bytes, type 0x08 (unsigned byte), number of dimensions.
_IDX_IMAGES = 0x00000803
_IDX_LABELS = 0x00000801


def _read_bytes(path: Path) -> bytes:
    """Contents of ``path``, gunzipped if its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                return file.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"Cannot read data file ({err}): {path}") from None


def _find_idx(root: Path, stem: str) -> Path:
    for path in (root / stem, root / f"{stem}.gz"):
        if path.is_file():
            return path
    raise DataError(f"MNIST file missing in {root}: {stem}[.gz]")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of an IDX file, after checking its magic number and length."""
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) >= 4 and int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big")
        raise DataError(f"IDX magic number must be 0x{magic:08x}, not 0x{found:08x}: {path}")
    if len(raw) < header:
        raise DataError(f"IDX file truncated in its header ({len(raw)} bytes): {path}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "too long"
        raise DataError(f"IDX file {problem} ({len(raw)} bytes, header says {expected}): {path}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_idx_pair(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 1, H, W)`` uint8 images and ``(N,)`` uint8 labels of ``prefix`` (train/t10k)."""
    images_path = _find_idx(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(root, f"{prefix}-labels-idx1-ubyte")
    images = _read_idx(images_path, _IDX_IMAGES)
    labels = _read_idx(labels_path, _IDX_LABELS)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"MNIST {prefix} has {images.shape[0]} images but {labels.shape[0]} labels: "
            f"{labels_path}"
        )
    if images.shape[0] == 0 or 0 in images.shape[1:]:
        raise DataError(f"MNIST file holds no images, shape {images.shape}: {images_path}")
    return images[:, None], labels


@register_dataset("mnist")
def _load_mnist(data_dir: Path | None, split_seed: int) -> Dataset:
    root = _require_dir("mnist", data_dir)
    train_x, train_y = _read_idx_pair(root, "train")
    test_x, test_y = _read_idx_pair(root, "t10k")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"MNIST test images must be {train_x.shape[2:]} like train, "
            f"not {test_x.shape[2:]}: {root}"
        )
    num_classes = max(10, int(train_y.max()) + 1)
    if test_y.size and test_y.max() >= num_classes:
        raise DataError(
            f"MNIST test labels must be below {num_classes} (the train classes), "
            f"not {test_y.max()}: {root}"
        )
    return Dataset(
        name="mnist",
        train=DataSplit(_unit_float(train_x), _labels_tensor(train_y)),
        test=DataSplit(_unit_float(test_x), _labels_tensor(test_y)),
        num_classes=num_classes,
        input_shape=(1, train_x.shape[2], train_x.shape[3]),
        split_seed=split_seed,
        data_dir=str(root),
    )
