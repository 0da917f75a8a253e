"""The command line: summaries, JSON, and one-line errors with exit code 2 for bad input."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from inq_hw.checkpoint import load_checkpoint, save_checkpoint
from inq_hw.cli import main
from tests.conftest import CLI, cli_env


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err


def test_quantize_prints_table_and_json(
    capsys: pytest.CaptureFixture[str], tiny_fp32: Path, tmp_path: Path
) -> None:
    out = tmp_path / "inq4.pt"
    args = [
        "quantize",
        str(tiny_fp32),
        "--bits",
        "4",
        "--schedule",
        "0.5,1",
        "--epochs-per-step",
        "1",
        "--out",
    ]
    code, text, _ = run(capsys, *args, str(out), "--no-progress")
    assert code == 0
    assert "acc. after re-training" in text and "one-shot 4-bit" in text and "FP32" in text
    code, text, _ = run(capsys, *args, str(tmp_path / "again.pt"), "--no-progress", "--json")
    summary = json.loads(text)
    assert summary["bits"] == 4 and len(summary["history"]) == 2
    assert 0.0 <= summary["one_shot_accuracy"] <= 1.0 and 0.0 <= summary["accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--bits", "9"], "Bit-width must be an integer from 2 to 7, not 9"),
        (["--bits", "1"], "Bit-width must be an integer from 2 to 7, not 1"),
        (["--bits", "8"], "Bit-width 8 cannot be lowered to an integer model"),
        (["--schedule", "0.5,0.4,1"], "strictly increasing"),
        (["--schedule", "0.5,0.75"], "must end at 1.0"),
        (["--schedule", "fast"], "Schedule must be a name"),
        (["--skip", "*"], "no Conv2d or Linear layer"),
        (["--epochs-per-step", "0"], "Epochs must be a positive integer"),
        (["--lr", "-1"], "Learning rate must be a positive number"),
        (["--resume"], "Nothing to resume"),
    ],
)
def test_quantize_bad_options(
    capsys: pytest.CaptureFixture[str],
    tiny_fp32: Path,
    tmp_path: Path,
    extra: list[str],
    fragment: str,
) -> None:
    out = tmp_path / "out.pt"
    code, _, err = run(
        capsys, "quantize", str(tiny_fp32), "--out", str(out), "--no-progress", *extra
    )
    assert_one_line_error(code, err, fragment)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_diverged_training_is_one_line_error(
    capsys: pytest.CaptureFixture[str], tiny_fp32: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.pt"
    code, _, err = run(
        capsys, "quantize", str(tiny_fp32), "--lr", "1e12", "--out", str(out), "--no-progress"
    )
    assert_one_line_error(code, err, "Training diverged")
    assert not out.exists()  # only the resumable state of the last good epoch is kept
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt.part"]


def _corrupt(tiny_fp32: Path, tmp_path: Path, edit: str) -> Path:
    payload = load_checkpoint(tiny_fp32)
    weight = payload["state_dict"]["features.conv2.weight"]
    if edit == "nan":
        weight[0, 0, 0, 0] = float("nan")
    elif edit == "inf":
        weight[0, 0, 0, 0] = float("inf")
    elif edit == "zero":
        weight.zero_()
    path = tmp_path / f"{edit}.pt"
    save_checkpoint({k: v for k, v in payload.items() if k not in ("format", "version")}, path)
    return path


@pytest.mark.parametrize("edit", ["nan", "inf"])
def test_non_finite_weights(
    capsys: pytest.CaptureFixture[str], tiny_fp32: Path, tmp_path: Path, edit: str
) -> None:
    (tmp_path / "src").mkdir()
    source = _corrupt(tiny_fp32, tmp_path / "src", edit)
    out = tmp_path / "out.pt"
    code, _, err = run(capsys, "quantize", str(source), "--out", str(out), "--no-progress")
    assert_one_line_error(code, err, "Layer 'features.conv2' has NaN or Inf weights")
    assert not out.exists()


def test_all_zero_layer_works(
    capsys: pytest.CaptureFixture[str], tiny_fp32: Path, tmp_path: Path
) -> None:
    source = _corrupt(tiny_fp32, tmp_path, "zero")
    out = tmp_path / "out.pt"
    code, _, _ = run(
        capsys,
        "quantize",
        str(source),
        "--bits",
        "3",
        "--schedule",
        "0.5,1",
        "--epochs-per-step",
        "1",
        "--out",
        str(out),
        "--no-progress",
    )
    assert code == 0
    weight = load_checkpoint(out)["state_dict"]["features.conv2.weight"]
    assert torch.equal(weight, torch.zeros_like(weight))


def test_missing_and_truncated_checkpoints(
    capsys: pytest.CaptureFixture[str], tiny_fp32: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.pt"
    code, _, err = run(
        capsys, "quantize", str(tmp_path / "nope.pt"), "--out", str(out), "--no-progress"
    )
    assert_one_line_error(code, err, "Checkpoint not found")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_fp32.read_bytes()[:1000])
    code, _, err = run(capsys, "quantize", str(truncated), "--out", str(out), "--no-progress")
    assert_one_line_error(code, err, "truncated or corrupted")
    assert not out.exists()


def test_quantize_refuses_an_inq_checkpoint_as_source(
    capsys: pytest.CaptureFixture[str], tiny_fp32: Path, tmp_path: Path
) -> None:
    inq = tmp_path / "inq.pt"
    assert (
        run(
            capsys,
            "quantize",
            str(tiny_fp32),
            "--schedule",
            "1",
            "--epochs-per-step",
            "1",
            "--out",
            str(inq),
            "--no-progress",
        )[0]
        == 0
    )
    code, _, err = run(
        capsys, "quantize", str(inq), "--out", str(tmp_path / "x.pt"), "--no-progress"
    )
    assert_one_line_error(code, err, "of kind 'inq', expected one of ('fp32',)")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dataset", "mnist", "--data-dir", "{tmp}/empty"], "MNIST"),
        (["--dataset", "mnist", "--data-dir", "{tmp}/absent"], "absent"),
        (["--dataset", "imagenet"], "imagenet"),
        (["--model", "vgg99"], "vgg99"),
        (["--model-arg", "channels"], "KEY=VALUE"),
        (["--model-arg", "channels=[4,"], "must be JSON"),
        (["--epochs", "0"], "Epochs must be a positive integer"),
    ],
)
def test_train_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], fragment: str
) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "runs" / "fp32.pt"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run(capsys, "train", *argv, "--out", str(out), "--no-progress")
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "quantize")
    assert code == 2 and "inq-hw: error:" in err
    code, _, err = run(capsys, "frobnicate")
    assert code == 2


def test_console_script_runs() -> None:
    done = subprocess.run(
        [*CLI, "--help"], env=cli_env(), capture_output=True, text=True, check=True
    )
    assert "quantize" in done.stdout and "train" in done.stdout
