"""Bringing your own model: ``--model package.module:factory`` through train → quantize →
export, and a clear one-line error for model files."""

import json
from pathlib import Path

import pytest

from tests.test_cli import assert_one_line_error, run

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


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("net.pt2", "give the Python factory"),
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
