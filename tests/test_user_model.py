"""Bringing your own model: ``--model package.module:factory`` or a ``torch.export``
program (``.pt2``) through train → quantize → export, and a clear one-line error for
other model files."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from inq_hw.errors import ConfigError, ModelError
from inq_hw.exported import load_exported
from inq_hw.intmodel import quantize_input
from inq_hw.intmodel import run as execute
from inq_hw.models import build_model
from tests.test_cli import assert_one_line_error, run
from tests.test_lower_ops import lowered

USER_MODULE = '''
import torch
from torch import nn
from torch.nn import functional as F


class Net(nn.Module):
    """Written the ordinary way: functional relu, +=, cat, flatten, global mean."""

    def __init__(self, in_channels, num_classes, width=6):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        y = F.relu(self.bn(self.stem(x)))
        z = self.dw(y)
        z += y
        x = torch.cat([F.relu(z), y], 1).mean((2, 3))
        return self.fc(torch.flatten(x, 1))


def make(in_channels, num_classes, width=6):
    return Net(in_channels, num_classes, width)
'''


@pytest.mark.slow  # about a minute on the loaded 2-core machine (train, INQ, export)
def test_user_factory_trains_quantizes_and_exports(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "usernets").mkdir()
    (tmp_path / "usernets" / "__init__.py").write_text("")
    (tmp_path / "usernets" / "small.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    fp32, inq, pkg = tmp_path / "fp32.pt", tmp_path / "inq.pt", tmp_path / "pkg"
    model = ["--model", "usernets.small:make", "--model-arg", "width=4"]
    code, _, err = run(
        capsys, "train", *model, "--epochs", "1", "--out", str(fp32), "--no-progress"
    )
    assert code == 0, err
    code, _, err = run(
        capsys, "quantize", str(fp32), "--schedule", "0.5,1", "--epochs-per-step", "1",
        "--out", str(inq), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "export", str(inq), "--out", str(pkg))
    assert code == 0, err
    kinds = {layer["kind"] for layer in json.loads((pkg / "model.json").read_text())["layers"]}
    assert {"conv2d", "add", "concat", "flatten", "linear"} <= kinds
    assert kinds & {"avgpool", "meanpool"}


MEAN_HEAD = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3)  # 8x8 digits -> a 6x6 map: N = 36
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
"""


@pytest.mark.integration  # train, INQ and export through the CLI
def test_global_mean_is_folded_into_the_classifier_through_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 1/36 of the mean goes into fc before INQ; the package keeps a sum and a shift."""
    (tmp_path / "meanhead.py").write_text(MEAN_HEAD)
    monkeypatch.chdir(tmp_path)
    fp32, inq, pkg = tmp_path / "fp32.pt", tmp_path / "inq.pt", tmp_path / "pkg"
    code, _, err = run(
        capsys, "train", "--model", "meanhead:Net", "--epochs", "1", "--out", str(fp32),
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(
        capsys, "quantize", str(fp32), "--schedule", "1", "--epochs-per-step", "1",
        "--out", str(inq), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "export", str(inq), "--out", str(pkg))
    assert code == 0, err
    layers = json.loads((pkg / "model.json").read_text())["layers"]
    (mean,) = [layer for layer in layers if layer["kind"] == "meanpool"]
    assert (mean["multiplier"], mean["shift"], mean["mode"]) == (1, 6, "folded")


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("net.pt2", "does not exist"),
        ("scripted.ts", "TorchScript"),
        ("nosuchpackage.mod:make", "Cannot import 'nosuchpackage.mod'"),
        ("json:nothing_here", "has no callable 'nothing_here'"),
    ],
)
def test_model_files_and_bad_factories_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str, fragment: str
) -> None:
    out = tmp_path / "fp32.pt"
    code, _, err = run(capsys, "train", "--model", model, "--out", str(out), "--no-progress")
    assert_one_line_error(code, err, fragment)
    assert not out.exists()


# --- torch.export programs -----------------------------------------------------------------


def _export(model: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    torch.export.save(torch.export.export(model.eval(), (torch.rand(*shape),)), str(path))
    return path


def test_exported_resnet_rebuilds_into_its_modules_and_lowers(tmp_path: Path) -> None:
    """Every conv, BatchNorm and linear comes back as a module of its original name; the
    rebuilt model computes what the program does, folds, quantizes, lowers and runs."""
    torch.manual_seed(0)
    net = build_model("resnet18", in_channels=3, num_classes=10, input_size=32, width=4)
    for module in net.modules():  # BatchNorm statistics that matter
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = _export(net, (1, 3, 32, 32), tmp_path / "resnet18.pt2")
    model = load_exported(path, in_channels=3, num_classes=10, input_size=32)
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
    names = {n for n, m in net.named_modules() if isinstance(m, kinds)}
    assert {n for n, m in model.named_modules() if isinstance(m, kinds)} == names
    x = torch.rand(16, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), net.eval()(x), rtol=0, atol=0)
    # Exported at 32x32, it still takes 40x40 images: nothing in it depends on the size.
    load_exported(path, in_channels=3, num_classes=10, input_size=40)
    int_model = lowered(model, x)
    assert {"add", "maxpool", "avgpool", "linear"} <= {layer.kind for layer in int_model.layers}
    with torch.no_grad():
        classes = model(x).argmax(1).numpy()
    logits = np.asarray(execute(int_model, quantize_input(x.numpy(), int_model.input.out)))
    assert (logits.argmax(1) == classes).mean() >= 0.75  # random weights: close logits


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)
        self.drop = nn.Dropout()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.conv(x))
        y = torch.sigmoid(y) * y
        return self.fc(self.drop(y.view(y.size(0), -1)))


def test_exported_program_keeps_unsupported_calls_for_lowering_to_list(tmp_path: Path) -> None:
    path = _export(_Gated(), (2, 1, 8, 8), tmp_path / "gated.pt2")
    model = load_exported(path, in_channels=1, num_classes=3, input_size=8)
    with pytest.raises(ModelError, match=r"Cannot lower 2 node\(s\).*sigmoid.*mul"):
        lowered(model, torch.rand(8, 1, 8, 8))


@pytest.mark.parametrize(
    ("channels", "size", "classes", "fragment"),
    [
        (3, 8, 3, "cannot run the data set's 3x8x8 images"),
        (1, 10, 3, "cannot run the data set's 1x10x10 images"),
        (1, 8, 4, "gives outputs of shape (3,) for a 1x8x8 image, but the data set has 4"),
    ],
)
def test_exported_program_must_fit_the_data_set(
    tmp_path: Path, channels: int, size: int, classes: int, fragment: str
) -> None:
    path = _export(_Gated(), (2, 1, 8, 8), tmp_path / "gated.pt2")
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_exported(path, in_channels=channels, num_classes=classes, input_size=size)


def test_cli_trains_an_exported_program_and_refuses_a_bad_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``train --model X.pt2`` on digits (1x8x8, 10 classes); a file that is no program
    and a program for other images are one-line errors."""

    class Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))

    program = _export(Small(), (1, 1, 8, 8), tmp_path / "small.pt2")
    out = tmp_path / "fp32.pt"
    code, _, err = run(
        capsys, "train", "--model", str(program), "--input-shape", "1x8x8", "--epochs", "1",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert out.is_file()
    (tmp_path / "junk.pt2").write_bytes(b"not a program")
    code, _, err = run(capsys, "train", "--model", str(tmp_path / "junk.pt2"), "--out", str(out))
    assert_one_line_error(code, err, "Cannot load")
    wide = _export(_Gated(), (2, 1, 8, 8), tmp_path / "gated.pt2")
    code, _, err = run(capsys, "train", "--model", str(wide), "--out", str(tmp_path / "x.pt"))
    assert_one_line_error(code, err, "but the data set has 10 classes")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.integration  # train, INQ and export of an exported program through the CLI
def test_exported_program_quantizes_and_exports(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    net = build_model("resnet18", in_channels=1, num_classes=10, input_size=8, width=2)
    program = _export(net, (1, 1, 8, 8), tmp_path / "r18.pt2")
    fp32, inq, pkg = tmp_path / "fp32.pt", tmp_path / "inq.pt", tmp_path / "pkg"
    code, _, err = run(
        capsys, "train", "--model", str(program), "--epochs", "1", "--out", str(fp32),
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(
        capsys, "quantize", str(fp32), "--schedule", "0.5,1", "--epochs-per-step", "1",
        "--out", str(inq), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "export", str(inq), "--out", str(pkg))
    assert code == 0, err
    kinds = {layer["kind"] for layer in json.loads((pkg / "model.json").read_text())["layers"]}
    assert {"conv2d", "add", "maxpool", "linear"} <= kinds


def test_input_shape_is_checked_against_the_data_set(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--input-shape`` states the images a program takes; the data set fixes them, so
    another shape is a one-line error before any training, and a malformed one too."""
    program = _export(_Gated(), (2, 1, 8, 8), tmp_path / "gated.pt2")
    out = tmp_path / "fp32.pt"
    for shape, fragment in (
        ("3,32,32", "takes 3x32x32 images (--input-shape), but data set 'digits' has 1x8x8"),
        ("1,8", "must be C,H,W"),
        ("1x8x0", "must be C,H,W"),
    ):
        code, _, err = run(
            capsys, "train", "--model", str(program), "--input-shape", shape, "--out", str(out)
        )
        assert_one_line_error(code, err, fragment)
        assert not out.exists()
