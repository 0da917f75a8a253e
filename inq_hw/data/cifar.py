"""``cifar10``: the CIFAR-10 "python version" batches, read by a restricted unpickler."""

import codecs
import importlib
import pickle
from pathlib import Path
from typing import IO, Any

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

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_SUBDIR = "cifar-10-batches-py"

# What the real batches (pickled by Python 2 and NumPy 1) and re-pickled copies reference:
# NumPy array reconstruction, under numpy.core before NumPy 2 and numpy._core since, and
# _codecs.encode, with which Python 3 writes bytes at pickle protocols below 3.
_NUMPY_CORE_GLOBALS = {"multiarray": {"_reconstruct", "scalar"}, "numeric": {"_frombuffer"}}
_PLAIN_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
# Everything the unpickler can meet in a malformed (not malicious) file.
_UNPICKLING_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
)


def _allowed_global(module: str, name: str) -> Any | None:
    """The object a CIFAR pickle may reference as ``module.name``; ``None`` if refused."""
    if (module, name) in _PLAIN_GLOBALS:
        return _PLAIN_GLOBALS[module, name]
    package, _, submodule = module.rpartition(".")
    if package not in ("numpy.core", "numpy._core"):
        return None
    if name not in _NUMPY_CORE_GLOBALS.get(submodule, ()):
        return None
    for core in ("numpy._core", "numpy.core"):  # whichever this NumPy has, newest first
        try:
            return getattr(importlib.import_module(f"{core}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only dicts, lists, bytes, numbers and NumPy arrays."""

    def __init__(self, file: IO[bytes], path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_global(module, name)
        if found is None:
            raise DataError(f"refusing to unpickle {module}.{name} in {self._path}")
        return found


def _unpickle(path: Path) -> object:
    try:
        with path.open("rb") as file:
            return _RestrictedUnpickler(file, path).load()
    except OSError as err:
        raise DataError(f"Cannot read data file ({err}): {path}") from None
    except _UNPICKLING_ERRORS as err:
        raise DataError(f"Malformed pickle ({type(err).__name__}: {err}): {path}") from None


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3072)`` uint8 pixels and ``(N,)`` labels of one CIFAR-10 batch file."""
    batch = _unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"CIFAR-10 batch must be a dict with b'data' and b'labels': {path}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"CIFAR-10 data must be uint8 of shape (N, 3072), not {data.dtype} {data.shape}: {path}"
        )
    if labels.dtype.kind not in "iu" or labels.shape != (data.shape[0],):
        raise DataError(
            f"CIFAR-10 labels must be {data.shape[0]} integers, not {labels.dtype} "
            f"{labels.shape}: {path}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(
            f"CIFAR-10 labels must lie in 0..9, not {labels.min()}..{labels.max()}: {path}"
        )
    return data, labels


def _cifar_split(root: Path, names: tuple[str, ...]) -> DataSplit:
    for name in names:
        if not (root / name).is_file():
            raise DataError(f"CIFAR-10 file missing in {root}: {name}")
    batches = [_cifar_batch(root / name) for name in names]
    data = np.concatenate([data for data, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    # Each row holds the red, then green, then blue plane, each 32x32 row-major.
    return DataSplit(_unit_float(data.reshape(-1, 3, 32, 32)), _labels_tensor(labels))


@register_dataset("cifar10")
def _load_cifar10(data_dir: Path | None, split_seed: int) -> Dataset:
    root = _require_dir("cifar10", data_dir)
    if not (root / _CIFAR_TRAIN[0]).exists() and (root / _CIFAR_SUBDIR).is_dir():
        root = root / _CIFAR_SUBDIR
    return Dataset(
        name="cifar10",
        train=_cifar_split(root, _CIFAR_TRAIN),
        test=_cifar_split(root, (_CIFAR_TEST,)),
        num_classes=10,
        input_shape=(3, 32, 32),
        split_seed=split_seed,
        data_dir=str(data_dir),
    )
