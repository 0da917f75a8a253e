"""``inq-hw flow`` end to end on a reduced setting: a narrow digits-cnn, one bit-width, a
few epochs, three simulated images on Icarus, the analytic cost; the report's files and
figures agree with results.json; a second run comes from the cache; SIGINT keeps every
finished stage and leaves no half-written file."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from inq_hw.errors import ConfigError
from inq_hw.flow import FlowConfig
from tests.conftest import CLI

pytestmark = pytest.mark.hw

REDUCED = [
    "--bits",
    "4",
    "--fp32-epochs",
    "4",
    "--inq-epochs",
    "1",
    "--samples",
    "3",
    "--skip-synthesis",
    "--skip-implementation",
    "--simulator",
    "icarus",
    "--targets",
    "analytic",
    "--name",
    "tiny",
]


def _config(tmp_path: Path) -> Path:
    config = FlowConfig(model_args={"channels": [4, 8, 8]})
    path = tmp_path / "start.toml"
    path.write_text(config.to_toml())
    return path


def _command(tmp_path: Path, *extra: str) -> list[str]:
    paths = ["--out", str(tmp_path / "runs"), "--report", str(tmp_path / "report")]
    return [*CLI, "flow", "--config", str(_config(tmp_path)), *REDUCED, *paths, *extra]


@pytest.fixture(scope="module")
def interrupted_then_finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flow interrupted by SIGINT while it simulates 500 images, then run again (3
    images) to the end: the directory holding its stage cache and its report."""
    tmp_path = tmp_path_factory.mktemp("flow")
    # many images, so the simulation stage is surely running when the signal comes
    child = subprocess.Popen(
        _command(tmp_path, "--samples", "500"),
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job starts with SIGINT ignored, and a child would inherit it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert child.stderr is not None
    for line in child.stderr:  # wait until the simulation stage has started
        if "simulate 4-bit ..." in line:
            break
    time.sleep(2)
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=300)
    assert child.returncode != 0
    assert not (tmp_path / "report").exists()
    (tmp_path / "first_returncode").write_text(str(child.returncode))
    done = subprocess.run(
        _command(tmp_path), capture_output=True, text=True, check=False, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (tmp_path / "second_stderr").write_text(done.stderr)
    return tmp_path


def test_interrupted_flow_continues_from_the_cache(interrupted_then_finished: Path) -> None:
    tmp_path = interrupted_then_finished
    assert "train FP32: cached" in (tmp_path / "second_stderr").read_text()
    stages = tmp_path / "runs" / "stages"
    assert not list(stages.glob("*.tmp-*"))
    assert len([p for p in stages.iterdir() if p.name.startswith("fp32-")]) == 1


def test_reduced_flow_writes_a_consistent_report(interrupted_then_finished: Path) -> None:
    tmp_path = interrupted_then_finished
    report = tmp_path / "report"
    results = json.loads((report / "results.json").read_text())
    names = {p.name for p in report.iterdir()}
    assert {"report.md", "report.html", "results.json", "flow.toml", "accuracy.png"} <= names
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]
    (entry,) = results["bits"]
    assert entry["bits"] == 4
    assert entry["rtl"]["samples"] == 3 and entry["rtl"]["mismatched_samples"] == 0
    assert entry["rtl"]["timing_matches_manifest"] is True
    assert results["dataset"]["test_samples"] == 359  # the digits test split
    markdown = (report / "report.md").read_text()
    assert "3 of 359 test images" in markdown
    assert f"{100 * entry['accuracy']['integer']:.2f}%" in markdown
    assert f"{100 * results['fp32']['accuracy']:.2f}%" in markdown
    assert str(entry["rtl"]["cycles_per_image"]) in markdown
    assert "data:image/png;base64," in (report / "report.html").read_text()
    # the written config repeats the run: everything comes from the cache
    rerun = subprocess.run(
        [
            *CLI,
            "flow",
            "--config",
            str(report / "flow.toml"),
            "--out",
            str(tmp_path / "runs"),
            "--report",
            str(tmp_path / "again"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rerun.stderr.count(": cached") == 6 and "done in" not in rerun.stderr
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["bits"] == results["bits"]


def test_bad_flow_options_are_one_line_errors(tmp_path: Path) -> None:
    bad = subprocess.run(
        [*CLI, "flow", "--bits", "2,9"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Bit-width must be" in bad.stderr
    config = tmp_path / "bad.toml"
    config.write_text('bits = [5]\ncolour = "red"\n')
    bad = subprocess.run(
        [*CLI, "flow", "--config", str(config)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "colour" in bad.stderr
    with pytest.raises(ConfigError, match="Targets"):
        FlowConfig(targets=("vivado",))


def test_config_round_trips_through_toml(tmp_path: Path) -> None:
    config = FlowConfig(bits=(3, 5), folding={"all": 4, "classifier.fc": 2}, data_dir="/d")
    path = tmp_path / "flow.toml"
    path.write_text(config.to_toml())
    assert FlowConfig.from_toml(path) == config
