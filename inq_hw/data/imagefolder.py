"""``imagefolder``: ``data_dir/[train|test]/<class>/<image>`` trees of image files.

Without ``train/`` and ``test/`` sub-folders the classes sit directly in ``data_dir`` and
a seeded stratified split holds out the test images.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inq_hw.data.base import (
    Dataset,
    DataSplit,
    _require_dir,
    _stratified_split,
    _unit_float,
    register_dataset,
)
from inq_hw.errors import DataError

__all__: list[str] = []

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm"})
_GRAY_MODES = frozenset({"1", "L", "LA"})
_COLOUR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """Image files directly inside each class sub-folder of ``folder``, by sorted class."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"imagefolder has no class folders in {folder}")
    files = {}
    for class_dir in classes:
        images = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES and p.name[0] != "."
        )
        if not images:
            raise DataError(f"imagefolder class folder holds no images: {class_dir}")
        files[class_dir.name] = images
    return files


def _labelled(files: dict[str, list[Path]], classes: list[str]) -> tuple[list[Path], np.ndarray]:
    label_of = {name: label for label, name in enumerate(classes)}
    paths = [path for name in files for path in files[name]]
    labels = [label_of[name] for name in files for _ in files[name]]
    return paths, np.array(labels, dtype=np.int64)


def _image_header(path: Path) -> tuple[str, tuple[int, int]]:
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"Cannot read image ({err}): {path}") from None
    if mode not in _GRAY_MODES | _COLOUR_MODES:
        raise DataError(f"imagefolder images must be 8-bit grey or colour, not {mode}: {path}")
    return mode, size


def _image_pixels(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode))
    except (OSError, ValueError) as err:
        raise DataError(f"Cannot read image ({err}): {path}") from None


def _read_images(paths: list[Path]) -> np.ndarray:
    """``(N, C, H, W)`` uint8 pixels; C is 1 if every image is grey, else 3 (RGB)."""
    headers = [_image_header(path) for path in paths]
    width, height = headers[0][1]
    for path, (_, size) in zip(paths, headers, strict=True):
        if size != (width, height):
            raise DataError(
                f"imagefolder images must all be {width}x{height} like {paths[0]}, "
                f"not {size[0]}x{size[1]}: {path}"
            )
    mode = "L" if all(mode in _GRAY_MODES for mode, _ in headers) else "RGB"
    pixels = np.empty((len(paths), height, width, len(mode)), dtype=np.uint8)
    for i, path in enumerate(paths):
        pixels[i] = _image_pixels(path, mode).reshape(height, width, len(mode))
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


_Layout = tuple[list[str], list[Path], np.ndarray, int]


def _folder_layout(root: Path, split_seed: int) -> _Layout:
    """Classes, all image paths (train first), their labels, and how many are train."""
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        present, missing = ("train", "test") if has_train else ("test", "train")
        raise DataError(f"imagefolder has {present}/ but no {missing}/ sub-folder: {root}")
    return _split_layout(root) if has_train else _flat_layout(root, split_seed)


def _flat_layout(root: Path, split_seed: int) -> _Layout:
    files = _class_files(root)
    classes = list(files)
    paths, labels = _labelled(files, classes)
    train, test = _stratified_split(labels, split_seed)
    order = np.concatenate([train, test])
    return classes, [paths[i] for i in order], labels[order], len(train)


def _split_layout(root: Path) -> _Layout:
    train_files, test_files = _class_files(root / "train"), _class_files(root / "test")
    unknown = sorted(set(test_files) - set(train_files))
    if unknown:
        raise DataError(
            f"imagefolder test classes must also be train classes, not "
            f"{', '.join(unknown)}: {root / 'test'}"
        )
    classes = list(train_files)
    train_paths, train_labels = _labelled(train_files, classes)
    test_paths, test_labels = _labelled(test_files, classes)
    labels = np.concatenate([train_labels, test_labels])
    return classes, train_paths + test_paths, labels, len(train_paths)


@register_dataset("imagefolder")
def _load_imagefolder(data_dir: Path | None, split_seed: int) -> Dataset:
    root = _require_dir("imagefolder", data_dir)
    classes, paths, labels, n_train = _folder_layout(root, split_seed)
    if n_train == len(paths):
        raise DataError(
            f"imagefolder has too few images per class to hold out a test split: {root}"
        )
    x, y = _unit_float(_read_images(paths)), torch.from_numpy(labels)
    return Dataset(
        name="imagefolder",
        train=DataSplit(x[:n_train], y[:n_train]),
        test=DataSplit(x[n_train:], y[n_train:]),
        num_classes=len(classes),
        input_shape=(x.shape[1], x.shape[2], x.shape[3]),
        split_seed=split_seed,
        data_dir=str(root),
    )
