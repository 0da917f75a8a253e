"""Tests of inq_hw.data: built-in digits, IDX, CIFAR pickles, image folders, every error."""

import gzip
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from inq_hw.data import Dataset, DataSplit, dataset_names, load_dataset, register_dataset
from inq_hw.errors import ConfigError, DataError

IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801


# --- writers of small real-format files ---------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: int, *, cut: int = 0) -> Path:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in .gz), minus ``cut`` bytes."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    raw = raw[: len(raw) - cut]
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def write_mnist(root: Path, *, suffix: str = "", n_train: int = 20, n_test: int = 10) -> dict:
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 5, 7), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 5, 7), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8)[::-1] % 10,
    }
    for stem, array in arrays.items():
        magic = IDX_IMAGES if "images" in stem else IDX_LABELS
        write_idx(root / f"{stem}{suffix}", array, magic)
    return arrays


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], protocol: int = 2) -> None:
    batch = {b"batch_label": b"test", b"labels": labels, b"data": data, b"filenames": []}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def write_cifar(root: Path, *, per_batch: int = 3, protocol: int = 2) -> list[np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = []
    for i, name in enumerate(names):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        write_cifar_batch(root / name, data, [(i + j) % 10 for j in range(per_batch)], protocol)
        batches.append(data)
    return batches


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_folder(root: Path, counts: dict[str, int], *, size=(4, 6), rgb=()) -> None:
    """``counts[class]`` grey PNGs of ``size`` (H, W) per class; classes in ``rgb`` in colour."""
    rng = np.random.default_rng(3)
    for name, count in counts.items():
        shape = (*size, 3) if name in rgb else size
        for i in range(count):
            write_png(root / name / f"{i:03d}.png", rng.integers(0, 256, shape, dtype=np.uint8))


def class_counts(split: DataSplit, num_classes: int) -> np.ndarray:
    return np.bincount(split.y.numpy(), minlength=num_classes)


# --- registry and arguments ---------------------------------------------------------------


def test_dataset_names_lists_every_loader():
    assert dataset_names() == ["cifar10", "digits", "digits28", "imagefolder", "mnist"]


def test_unknown_name_lists_known_names():
    with pytest.raises(ConfigError, match=r"digits, digits28.*not 'mnits'"):
        load_dataset("mnits")


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_split_seed(seed):
    with pytest.raises(ConfigError, match="split_seed must be a non-negative integer"):
        load_dataset("digits", split_seed=seed)


def test_register_twice_refused():
    with pytest.raises(ValueError, match="already registered as 'digits'"):
        register_dataset("digits")(lambda data_dir, seed: load_dataset("digits"))


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imagefolder"])
def test_missing_data_dir(name, tmp_path):
    with pytest.raises(DataError, match="needs a data_dir"):
        load_dataset(name)
    with pytest.raises(DataError, match=r"not found: .*nowhere"):
        load_dataset(name, data_dir=tmp_path / "nowhere")


# --- digits -------------------------------------------------------------------------------


def test_digits_shapes_dtypes_ranges():
    data = load_dataset("digits")
    assert (data.name, data.num_classes, data.input_shape) == ("digits", 10, (1, 8, 8))
    assert (data.split_seed, data.data_dir) == (0, None)
    assert len(data.train) + len(data.test) == 1797
    for split in (data.train, data.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape == (len(split), 1, 8, 8)
        assert split.x.min() >= 0 and split.x.max() == 1.0


@pytest.mark.integration  # sklearn.datasets pulls in SciPy (1-2 s); the fast tier reads the CSV
def test_digits_are_sklearns_images_over_16():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    x = torch.cat([data.train.x, data.test.x]).reshape(-1, 64).numpy() * 16
    y = torch.cat([data.train.y, data.test.y]).numpy()
    ours = np.unique(np.column_stack([x, y]), axis=0, return_counts=True)
    bunch = load_digits()
    theirs = np.unique(np.column_stack([bunch.data, bunch.target]), axis=0, return_counts=True)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])


def test_digits_split_is_stratified():
    data = load_dataset("digits", split_seed=5)
    train, test = class_counts(data.train, 10), class_counts(data.test, 10)
    assert (train > 0).all() and (test > 0).all()
    np.testing.assert_allclose(test / (train + test), 0.2, atol=0.01)


def test_digits_split_is_deterministic_per_seed():
    first, again, other = (load_dataset("digits", split_seed=s) for s in (7, 7, 8))
    assert torch.equal(first.test.x, again.test.x) and torch.equal(first.test.y, again.test.y)
    assert torch.equal(first.train.x, again.train.x)
    assert not torch.equal(first.test.x, other.test.x)


def test_digits_returns_fresh_tensors():
    load_dataset("digits").train.x.zero_()
    assert load_dataset("digits").train.x.max() == 1.0


def test_digits28_same_images_and_split_resized():
    small, large = load_dataset("digits", split_seed=2), load_dataset("digits28", split_seed=2)
    assert (large.name, large.input_shape) == ("digits28", (1, 28, 28))
    assert large.train.x.shape == (len(small.train), 1, 28, 28)
    assert large.train.x.min() >= 0 and large.train.x.max() <= 1
    assert torch.equal(large.train.y, small.train.y) and torch.equal(large.test.y, small.test.y)
    # Bilinear up-sampling keeps each image's mean brightness roughly.
    torch.testing.assert_close(
        large.test.x.mean(dim=(1, 2, 3)), small.test.x.mean(dim=(1, 2, 3)), atol=0.05, rtol=0
    )


def test_digits_refuses_data_dir(tmp_path):
    with pytest.raises(ConfigError, match=f"takes no data_dir, not {tmp_path}"):
        load_dataset("digits", data_dir=tmp_path)


# --- MNIST IDX ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_reads_idx(tmp_path, suffix):
    arrays = write_mnist(tmp_path, suffix=suffix)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert (data.num_classes, data.input_shape, data.data_dir) == (10, (1, 5, 7), str(tmp_path))
    assert data.train.x.shape == (20, 1, 5, 7) and data.test.x.shape == (10, 1, 5, 7)
    expected = torch.from_numpy(arrays["t10k-images-idx3-ubyte"][:, None] / 255).float()
    torch.testing.assert_close(data.test.x, expected, atol=0, rtol=0)
    assert data.train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.test.y.dtype == torch.int64


def test_mnist_more_than_ten_classes(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(20) % 13, IDX_LABELS)
    assert load_dataset("mnist", data_dir=tmp_path).num_classes == 13


def test_mnist_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        DataError, match=r"MNIST file missing in .*: t10k-labels-idx1-ubyte\[\.gz\]"
    ):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("cut", [1, 3 * 5 * 7, 3000])
def test_mnist_truncated(tmp_path, suffix, cut):
    arrays = write_mnist(tmp_path, suffix=suffix)
    stem = "train-images-idx3-ubyte"
    write_idx(tmp_path / f"{stem}{suffix}", arrays[stem], IDX_IMAGES, cut=cut)
    with pytest.raises(DataError, match=f"truncated.*{stem}"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_trailing_bytes(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match=r"too long.*t10k-images-idx3-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_bad_magic(tmp_path):
    arrays = write_mnist(tmp_path)
    stem = "train-labels-idx1-ubyte"
    write_idx(tmp_path / stem, arrays[stem], IDX_IMAGES)  # images' magic on a labels file
    with pytest.raises(DataError, match=f"magic number must be 0x00000801, not 0x00000803.*{stem}"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(9), IDX_LABELS)
    with pytest.raises(DataError, match="t10k has 10 images but 9 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_test_label_outside_train_classes(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(10, 11), IDX_LABELS)
    with pytest.raises(DataError, match=r"test labels must be below 10.*not 11"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_corrupt_gzip(tmp_path):
    write_mnist(tmp_path, suffix=".gz")
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match=r"Cannot read data file.*train-labels-idx1-ubyte\.gz"):
        load_dataset("mnist", data_dir=tmp_path)


# --- CIFAR-10 -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("subdir", ["", "cifar-10-batches-py"])
def test_cifar10_reads_batches(tmp_path, protocol, subdir):
    batches = write_cifar(tmp_path / subdir, protocol=protocol)
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert (data.num_classes, data.input_shape) == (10, (3, 32, 32))
    assert data.train.x.shape == (15, 3, 32, 32) and data.test.x.shape == (3, 3, 32, 32)
    assert data.train.y.tolist()[:4] == [0, 1, 2, 1]
    # Pixel (channel 2, row 5, column 9) of the first test image.
    pixel = batches[5][0, 2 * 1024 + 5 * 32 + 9]
    assert data.test.x[0, 2, 5, 9].item() == np.float32(pixel) / np.float32(255)


def test_cifar10_accepts_numpy1_global_names(tmp_path):
    """The real batches reference numpy.core.multiarray, which NumPy 2 renamed."""
    write_cifar(tmp_path)
    for path in tmp_path.iterdir():
        raw = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"cnumpy.core.multiarray\n_reconstruct" in raw
        path.write_bytes(raw)
    assert len(load_dataset("cifar10", data_dir=tmp_path).train) == 15


class _RunsCommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Evaluates:
    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return eval, (self.code,)


@pytest.mark.parametrize(
    ("make", "refused"),
    [(_RunsCommand, r"\.system"), (_Evaluates, r"(__builtin__|builtins)\.eval")],
)
def test_cifar10_refuses_malicious_pickle(tmp_path, make, refused):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    command = f"touch {marker}" if make is _RunsCommand else f"open({str(marker)!r}, 'w')"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [make(command)]}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match=f"refusing to unpickle .*{refused} in .*data_batch_3"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


def test_cifar10_missing_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataError, match=r"CIFAR-10 file missing in .*: test_batch"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_truncated_pickle(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"Malformed pickle.*data_batch_2"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([1, 2], "must be a dict with b'data' and b'labels'"),
        ({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}, "must be a dict with b'data'"),
        ({b"data": np.zeros((1, 3071), np.uint8), b"labels": [0]}, r"shape \(N, 3072\)"),
        ({b"data": np.zeros((1, 3072), np.float32), b"labels": [0]}, "not float32"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "labels must be 2 integers"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [b"cat"]}, "must be 1 integers"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "lie in 0..9, not 10..10"),
    ],
)
def test_cifar10_malformed_batch(tmp_path, batch, message):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=f"{message}.*test_batch"):
        load_dataset("cifar10", data_dir=tmp_path)


# --- image folders ------------------------------------------------------------------------


def test_imagefolder_flat_is_split_stratified(tmp_path):
    write_folder(tmp_path, {"b_dog": 10, "a_cat": 5, "c_emu": 2})
    (tmp_path / "a_cat" / "notes.txt").write_text("not an image")
    data = load_dataset("imagefolder", data_dir=tmp_path, split_seed=4)
    assert (data.num_classes, data.input_shape) == (3, (1, 4, 6))
    # Sorted class names give the labels: a_cat 0, b_dog 1, c_emu 2.
    assert class_counts(data.train, 3).tolist() == [4, 8, 1]
    assert class_counts(data.test, 3).tolist() == [1, 2, 1]
    again = load_dataset("imagefolder", data_dir=tmp_path, split_seed=4)
    assert torch.equal(data.test.x, again.test.x)


def test_imagefolder_pixels_exact(tmp_path):
    pixels = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    for split in ("train", "test"):
        write_png(tmp_path / split / "only" / "image.PNG", pixels)
    data = load_dataset("imagefolder", data_dir=tmp_path)
    expected = torch.from_numpy(pixels / 255).float()[None, None]
    torch.testing.assert_close(data.test.x, expected, atol=0, rtol=0)


def test_imagefolder_train_test_layout_in_colour(tmp_path):
    write_folder(tmp_path / "train", {"cat": 3, "dog": 2}, rgb=("dog",))
    write_folder(tmp_path / "test", {"dog": 2})
    data = load_dataset("imagefolder", data_dir=tmp_path)
    assert (data.num_classes, data.input_shape) == (2, (3, 4, 6))
    assert data.train.y.tolist() == [0, 0, 0, 1, 1] and data.test.y.tolist() == [1, 1]
    grey = data.test.x[0]  # a grey image converted to RGB has three equal planes
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], grey[2])


def test_imagefolder_mixed_sizes(tmp_path):
    write_folder(tmp_path, {"cat": 3, "dog": 3})
    write_png(tmp_path / "dog" / "odd.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(DataError, match=r"must all be 6x4 like .*000.png, not 5x4: .*odd\.png"):
        load_dataset("imagefolder", data_dir=tmp_path)


def test_imagefolder_empty_class_folder(tmp_path):
    write_folder(tmp_path, {"cat": 3})
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder holds no images: .*dog"):
        load_dataset("imagefolder", data_dir=tmp_path)


def test_imagefolder_no_class_folders(tmp_path):
    write_png(tmp_path / "loose.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="no class folders in"):
        load_dataset("imagefolder", data_dir=tmp_path)


def test_imagefolder_too_few_to_split(tmp_path):
    write_folder(tmp_path, {"cat": 1, "dog": 1})
    with pytest.raises(DataError, match="too few images per class"):
        load_dataset("imagefolder", data_dir=tmp_path)


def test_imagefolder_test_class_not_in_train(tmp_path):
    write_folder(tmp_path / "train", {"cat": 2})
    write_folder(tmp_path / "test", {"cat": 1, "eel": 1})
    with pytest.raises(DataError, match="must also be train classes, not eel"):
        load_dataset("imagefolder", data_dir=tmp_path)


def test_imagefolder_train_without_test(tmp_path):
    write_folder(tmp_path / "train", {"cat": 2})
    with pytest.raises(DataError, match="has train/ but no test/ sub-folder"):
        load_dataset("imagefolder", data_dir=tmp_path)


def test_imagefolder_corrupt_image(tmp_path):
    write_folder(tmp_path, {"cat": 3})
    (tmp_path / "cat" / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"Cannot read image.*bad\.png"):
        load_dataset("imagefolder", data_dir=tmp_path)


# --- the dataclasses' own checks ----------------------------------------------------------


def test_datasplit_validates():
    x, y = torch.zeros(2, 1, 3, 3), torch.zeros(2, dtype=torch.int64)
    assert len(DataSplit(x, y)) == 2
    with pytest.raises(TypeError, match=r"x must be a torch\.float32 tensor, not torch\.float64"):
        DataSplit(x.double(), y)
    with pytest.raises(TypeError, match=r"y must be a torch\.int64 tensor, not ndarray"):
        DataSplit(x, y.numpy())  # type: ignore[arg-type]  # the wrong type is the point
    with pytest.raises(ValueError, match=r"x must have 4 dims, not \(2, 3, 3\)"):
        DataSplit(x[:, 0], y)
    with pytest.raises(ValueError, match="same length, not 2 and 1"):
        DataSplit(x, y[:1])
    with pytest.raises(ValueError, match=r"lie in \[0, 1\], not \[0.0, 2.0\]"):
        DataSplit(x + torch.tensor([0.0, 2.0]).view(2, 1, 1, 1), y)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        DataSplit(torch.full_like(x, float("nan")), y)
    with pytest.raises(ValueError, match="non-negative, not -1"):
        DataSplit(x, y - 1)


def test_dataset_validates():
    split = DataSplit(torch.zeros(2, 1, 3, 3), torch.tensor([0, 2]))
    fields: dict[str, Any] = {
        "name": "t",
        "train": split,
        "test": split,
        "split_seed": 0,
        "data_dir": None,
    }
    Dataset(num_classes=3, input_shape=(1, 3, 3), **fields)
    with pytest.raises(ValueError, match=r"images must be \(1, 3, 4\), not \(1, 3, 3\)"):
        Dataset(num_classes=3, input_shape=(1, 3, 4), **fields)
    with pytest.raises(ValueError, match="below num_classes=2, not 2"):
        Dataset(num_classes=2, input_shape=(1, 3, 3), **fields)
