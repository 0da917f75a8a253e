"""Shared fixtures (a tiny FP32 checkpoint trained once per session, the CLI) and the test
tiers: ``slow`` tests are opt-in here, in one place; they run only when the ``-m``
expression names them (``pytest -m slow``, ``pytest -m "slow or not slow"``).

The tests run torch on one thread, as the CLI subprocesses do (:func:`cli_env`): the models
here are tiny, and on the shared 2-core machine a second intra-op thread made training ~20x
slower in wall time and ~20x costlier in CPU (10 FP32 epochs of the tiny digits-cnn: 2.5 s
of CPU on one thread, 55 s on two, at load ~11)."""

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from inq_hw.cli import main
from inq_hw.driver import ModelContext, train_fp32
from inq_hw.train import TrainConfig

#: A digits-cnn narrow enough that a whole INQ run takes a second or two.
TINY_MODEL = ModelContext("digits-cnn", {"channels": [4, 8, 8]}, "digits", None, 0)
TINY_TRAIN = TrainConfig(epochs=10, lr=0.05, batch_size=32)

torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless the marker expression asks for them."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: opt-in with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fp32") / "fp32.pt"
    train_fp32(TINY_MODEL, TINY_TRAIN, out)
    return out


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: one thread each, so runs are reproducible."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"})
    return env


CLI = [sys.executable, "-m", "inq_hw"]


@pytest.fixture(scope="session")
def tiny_inq(tiny_fp32: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-bit INQ checkpoint of the tiny digits-cnn."""
    from inq_hw.driver import run_inq
    from inq_hw.inq import INQConfig

    out = tmp_path_factory.mktemp("inq") / "inq4.pt"
    run_inq(
        tiny_fp32,
        INQConfig(bits=4, schedule=(0.5, 1.0)),
        TrainConfig(epochs=1, lr=0.05, batch_size=128),
        out,
    )
    return out


@pytest.fixture(scope="session")
def tiny_package(tiny_inq: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The integer model package exported from :func:`tiny_inq` (read only)."""
    out = tmp_path_factory.mktemp("pkg") / "pkg"
    assert main(["export", str(tiny_inq), "--out", str(out), "--no-progress"]) == 0
    return out


#: ``cli(*argv)``: run the CLI in-process, returns (exit code, stdout, stderr).
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``main([*argv, "--no-progress"])`` in-process and capture what it printed;
    argparse usage errors (SystemExit) give their exit code."""

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main([*argv, "--no-progress"])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run
