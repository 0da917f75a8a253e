"""The flow refuses a bad configuration before its first stage and leaves no half-made stage."""

from pathlib import Path
from typing import Any

import pytest

from inq_hw.errors import ConfigError, DataError
from inq_hw.flow import FlowConfig, FlowError, _Runner, run_flow


def test_unknown_fold_layer_is_refused_before_any_stage(tmp_path: Path) -> None:
    cfg = FlowConfig(folding={"all": 8, "nosuch": 4})
    with pytest.raises(ConfigError, match=r"--fold names no weight layer of digits-cnn: nosuch"):
        run_flow(cfg, out=tmp_path / "flow", report=tmp_path / "report", echo=lambda _: None)
    assert not (tmp_path / "flow").exists() and not (tmp_path / "report").exists()


def test_failed_stage_leaves_no_temporary_directory(tmp_path: Path) -> None:
    runner = _Runner(tmp_path, total=1, echo=lambda _: None)

    def fails(tmp: Path) -> dict[str, Any]:
        (tmp / "partial.bin").write_bytes(b"half")
        raise DataError("no such data directory: /nowhere")

    with pytest.raises(FlowError, match="Stage train failed: no such data directory"):
        runner.run("train", "fp32", {"x": 1}, fails)
    assert list((tmp_path / "stages").iterdir()) == []


def test_cached_stage_keeps_the_time_it_was_computed_in(tmp_path: Path) -> None:
    lines: list[str] = []
    first = _Runner(tmp_path, total=1, echo=lines.append)
    first.run("cost", "cost", {"x": 1}, lambda tmp: {"value": 3})
    again = _Runner(tmp_path, total=1, echo=lines.append)
    result, _, _ = again.run("cost", "cost", {"x": 1}, lambda tmp: pytest.fail("recomputed"))
    assert result["value"] == 3 and again.seconds["cost"] == first.seconds["cost"] is not None
    assert "cached (computed in" in lines[-1]
