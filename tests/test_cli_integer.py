"""export / eval / vectors on the command line, and lenet5 on MNIST-format files."""

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from inq_hw.data import load_dataset
from inq_hw.intmodel import run
from inq_hw.intmodel.package import load_package
from tests.conftest import Cli


def test_export_eval_vectors(cli: Cli, tiny_inq: Path, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    code, text, err = cli("export", str(tiny_inq), "--out", str(package))
    assert code == 0, err
    assert "features.conv1" in text and "acc bits" in text
    code, text, err = cli("eval", str(package), "--json")
    assert code == 0, err
    summary = json.loads(text)
    assert summary["samples"] == 359
    assert abs(summary["integer_accuracy"] - summary["float_accuracy"]) <= 0.02
    assert summary["agreement"] >= 0.95
    code, text, err = cli("vectors", str(package), "--samples", "10", "--json")
    assert code == 0, err
    vectors = np.load(package / "vectors.npz", allow_pickle=False)
    model = load_package(package)
    assert vectors["input"].shape == (10, 1, 8, 8)
    output = run(model, vectors["input"])
    assert isinstance(output, np.ndarray)
    assert np.array_equal(output, vectors["output"])
    for layer in model.layers:
        assert vectors[f"layer/{layer.name}"].shape[0] == 10
    # Round trip: export again -> identical package, identical evaluation.
    again = tmp_path / "again"
    assert cli("export", str(tiny_inq), "--out", str(again))[0] == 0
    assert (again / "tensors.npz").read_bytes() == (package / "tensors.npz").read_bytes()
    assert json.loads(cli("eval", str(again), "--json")[1]) == {
        **summary,
        "package": str(again),
    }


def test_export_bad_input(cli: Cli, tiny_fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    code, _, err = cli("export", str(tiny_fp32), "--out", str(out))
    assert code == 2 and "of kind 'fp32'" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("export", str(tmp_path / "missing.pt"), "--out", str(out))
    assert code == 2 and "Checkpoint not found" in err
    assert not out.exists()


def test_eval_detects_a_corrupted_package(cli: Cli, tiny_inq: Path, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    assert cli("export", str(tiny_inq), "--out", str(package))[0] == 0
    data = bytearray((package / "tensors.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (package / "tensors.npz").write_bytes(bytes(data))
    code, _, err = cli("eval", str(package))
    assert code == 2 and "checksum" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("vectors", str(tmp_path / "nowhere"))
    assert code == 2


def _write_idx(directory: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(struct.pack(">IIII", 0x803, *images.shape) + images.astype(np.uint8).tobytes())
    with open(directory / f"{prefix}-labels-idx1-ubyte", "wb") as handle:
        handle.write(struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.mark.integration  # a whole LeNet-5 trained from IDX files; test_data reads IDX fast
def test_lenet5_on_mnist_format_files(cli: Cli, tmp_path: Path) -> None:
    """A user's MNIST-format directory, end to end: train, INQ, export, eval."""
    digits = load_dataset("digits28")
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for prefix, split in (("train", digits.train), ("t10k", digits.test)):
        _write_idx(mnist, prefix, np.round(split.x.numpy()[:, 0] * 255), split.y.numpy())
    fp32, inq, package = tmp_path / "fp32.pt", tmp_path / "inq5.pt", tmp_path / "pkg"
    assert (
        cli(
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(mnist),
            "--model",
            "lenet5",
            "--epochs",
            "6",
            "--out",
            str(fp32),
        )[0]
        == 0
    )
    assert (
        cli(
            "quantize",
            str(fp32),
            "--bits",
            "5",
            "--epochs-per-step",
            "1",
            "--out",
            str(inq),
        )[0]
        == 0
    )
    assert cli("export", str(inq), "--out", str(package))[0] == 0
    code, text, err = cli("eval", str(package), "--json")
    assert code == 0, err
    summary = json.loads(text)
    assert summary["float_accuracy"] > 0.8
    assert summary["agreement"] >= 0.97
    assert abs(summary["integer_accuracy"] - summary["float_accuracy"]) <= 0.01


def test_logits_are_wider_than_activations(cli: Cli, tiny_inq: Path, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    assert cli("export", str(tiny_inq), "--out", str(package), "--logit-bits", "12")[0] == 0
    model = load_package(package)
    assert model.layer(model.output).out.bits == 12
    assert {layer.out.bits for layer in model.layers if layer.name != model.output} == {8}
    code, _, err = cli("export", str(tiny_inq), "--out", str(tmp_path / "x"), "--logit-bits", "40")
    assert code == 2 and "Logit width must be an integer from 4 to 32, not 40" in err
