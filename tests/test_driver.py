"""Drivers and checkpoints: INQ end to end, atomic files, resume after a real kill."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from inq_hw.checkpoint import load_checkpoint, save_checkpoint
from inq_hw.driver import load_model, part_path, run_inq, train_fp32, verify_inq_checkpoint
from inq_hw.errors import CheckpointError
from inq_hw.inq import INQConfig
from inq_hw.quant import is_po2_grid
from inq_hw.train import TrainConfig
from tests.conftest import CLI, TINY_MODEL, cli_env

INQ_TRAIN = TrainConfig(epochs=1, lr=0.05, batch_size=128)


def test_inq_run_end_to_end(tiny_fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "inq3.pt"
    summary = run_inq(tiny_fp32, INQConfig(bits=3, schedule=(0.5, 0.75, 1.0)), INQ_TRAIN, out)
    assert [row["portion"] for row in summary["history"]] == [0.5, 0.75, 1.0]
    assert not part_path(out).exists()
    # Read the checkpoint back: every quantized weight is 0 or ±2^e with n2 <= e <= n1.
    payload = load_checkpoint(out, kinds=("inq",))
    model, _ = load_model(payload)
    layers = payload["inq"]["layers"]
    assert set(layers) == {"features.conv1", "features.conv2", "features.conv3", "classifier.fc"}
    for name, module in model.named_modules():
        if name in layers:
            assert is_po2_grid(module.weight.detach(), 3, layers[name]["n1"]), name
            assert bool(layers[name]["mask"].all())
    # The checkpoint carries the context later stages need, without extra flags.
    assert payload["model"]["name"] == "digits-cnn" and payload["model"]["kwargs"] == {
        "channels": [4, 8, 8]
    }
    assert payload["dataset"] == {"name": "digits", "data_dir": None, "split_seed": 0}
    assert payload["inq"]["config"]["bits"] == 3 and payload["inq"]["config"]["schedule"] == [
        0.5,
        0.75,
        1.0,
    ]
    assert payload["source"]["sha256"]


def test_runs_are_reproducible(tiny_fp32: Path, tmp_path: Path) -> None:
    config = INQConfig(bits=4, schedule=(0.5, 1.0), partition="random", seed=7)
    a = run_inq(tiny_fp32, config, INQ_TRAIN, tmp_path / "a.pt")
    b = run_inq(tiny_fp32, config, INQ_TRAIN, tmp_path / "b.pt")
    c = run_inq(
        tiny_fp32,
        INQConfig(bits=4, schedule=(0.5, 1.0), partition="random", seed=8),
        INQ_TRAIN,
        tmp_path / "c.pt",
    )
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="Checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    good = tmp_path / "good.pt"
    save_checkpoint(
        {"kind": "fp32", "model": {}, "dataset": {}, "state_dict": {"w": torch.ones(1000)}}, good
    )
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(truncated)
    junk = tmp_path / "junk.pt"
    torch.save({"hello": 1}, junk)
    with pytest.raises(CheckpointError, match="Not an inq-hw checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="of kind 'fp32'"):
        load_checkpoint(good, kinds=("inq",))
    assert list(tmp_path.glob(".*.tmp")) == []


def test_checkpoint_refuses_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "inq-hw-checkpoint", "version": 1, "kind": "fp32", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_resume_without_part_file(tiny_fp32: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="Nothing to resume"):
        run_inq(tiny_fp32, INQConfig(bits=4), INQ_TRAIN, tmp_path / "x.pt", resume=True)


def _quantize_cmd(fp32: Path, out: Path, *extra: str) -> list[str]:
    return [
        *CLI,
        "quantize",
        str(fp32),
        "--bits",
        "3",
        "--schedule",
        "0.3,0.6,0.8,1",
        "--epochs-per-step",
        "3",
        "--batch-size",
        "16",
        "--lr",
        "0.02",
        "--out",
        str(out),
        "--no-progress",
        "--json",
        *extra,
    ]


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [
        *CLI,
        "train",
        "--model-arg",
        "channels=[4,8,8]",
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--out",
        str(out),
        "--no-progress",
        "--json",
        *extra,
    ]


def _kill_repeatedly(command: list[str], out: Path, delays: tuple[float, ...]) -> int:
    """Start ``command`` (adding --resume after the first kill), wait until its resumable
    state advances, then SIGKILL it after ``delay``; returns how many kills landed."""
    part, kills, seen = part_path(out), 0, 0.0
    for delay in delays:
        proc = subprocess.Popen(
            command + (["--resume"] if kills else []),
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if part.exists() and part.stat().st_mtime > seen:
                break
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.returncode
        if part.exists():
            seen = part.stat().st_mtime
            load_checkpoint(part)  # whatever the moment of the kill, never corrupted
    return kills


@pytest.mark.slow  # kills and restarts CLI subprocesses: tens of seconds
@pytest.mark.parametrize("stage", ["train", "quantize"])
def test_kill_and_resume_gives_the_uninterrupted_result(
    stage: str, tiny_fp32: Path, tmp_path: Path
) -> None:
    def command(out: Path) -> list[str]:
        return _train_cmd(out) if stage == "train" else _quantize_cmd(tiny_fp32, out)

    reference = json.loads(
        subprocess.run(
            command(tmp_path / "ref.pt"), env=cli_env(), check=True, capture_output=True, text=True
        ).stdout
    )
    out = tmp_path / "killed.pt"
    kills = _kill_repeatedly(command(out), out, (0.0, 0.05, 0.2))
    assert kills >= 2, "the run finished before it could be killed twice: make it longer"
    done = subprocess.run(
        [*command(out), "--resume"], env=cli_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    resumed = json.loads(done.stdout)
    assert resumed["fingerprint"] == reference["fingerprint"]
    assert resumed.get("history") == reference.get("history")
    assert not part_path(out).exists()
    assert list(tmp_path.glob(".*.tmp")) == []


def test_read_back_verification_can_fail(tiny_fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "inq.pt"
    summary = run_inq(tiny_fp32, INQConfig(bits=4, schedule=(1.0,)), INQ_TRAIN, out)
    assert summary["verified_weights"] == sum(layer["weights"] for layer in summary["layers"])
    payload = load_checkpoint(out)
    payload["state_dict"]["features.conv2.weight"][0, 0, 0, 0] = 0.3
    tampered = tmp_path / "tampered.pt"
    save_checkpoint({k: v for k, v in payload.items() if k not in ("format", "version")}, tampered)
    with pytest.raises(CheckpointError, match=r"'features\.conv2' .* off its power-of-two grid"):
        verify_inq_checkpoint(tampered)


def test_resume_names_the_option_that_differs(tmp_path: Path) -> None:
    """A resumed run with another learning rate is refused naming ``--lr`` and both
    values, not only the group of options it belongs to."""
    out = tmp_path / "fp32.pt"
    saved = TrainConfig(epochs=3, lr=0.05, batch_size=32)
    data = TINY_MODEL.load_data()
    save_checkpoint(
        {
            "kind": "fp32-partial",
            "train": saved.to_dict(),
            **TINY_MODEL.to_payload(data, False),
            "state_dict": TINY_MODEL.build(data).state_dict(),
            "progress": {"epoch": 1},
        },
        part_path(out),
    )
    changed = TrainConfig(epochs=3, lr=0.1, batch_size=32)
    with pytest.raises(CheckpointError, match=r"--lr differs .*saved 0\.05, now 0\.1"):
        train_fp32(TINY_MODEL, changed, out, resume=True)
