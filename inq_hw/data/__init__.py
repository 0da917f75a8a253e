"""Data sets for training and evaluating INQ networks.

Every data set loads into one :class:`Dataset`: a train and a test :class:`DataSplit` of
float32 images in ``[0, 1]`` (no mean/std normalisation, because later stages quantize the
input to unsigned 8-bit) and int64 labels. Loaders are registered by name with
:func:`register_dataset`; :func:`load_dataset` looks them up.

Built in:

- ``digits``: scikit-learn's 8x8 handwritten digits (no download), a seeded stratified
  80/20 split.
- ``digits28``: the same images and split, resized to 28x28 for LeNet-sized models.
- ``mnist``: MNIST-format IDX files (MNIST, Fashion-MNIST, ...) in ``data_dir``.
- ``cifar10``: the CIFAR-10 "python version" batches in ``data_dir``.
- ``imagefolder``: ``data_dir/[train|test]/<class>/<image>`` trees of image files.
"""

# The loader modules register their data sets when imported.
from inq_hw.data import cifar, digits, idx, imagefolder  # noqa: F401
from inq_hw.data.base import (
    TEST_FRACTION,
    Dataset,
    DataSplit,
    dataset_names,
    load_dataset,
    register_dataset,
)

__all__ = [
    "TEST_FRACTION",
    "DataSplit",
    "Dataset",
    "dataset_names",
    "load_dataset",
    "register_dataset",
]
