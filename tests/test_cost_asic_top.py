"""The whole dataflow top on Nangate45 (inq_hw/cost/asic_top.py, sim/top_activity.py): area,
critical path and power from real Yosys and OpenSTA output with activity from a bit-exact
Verilator run of both tops, the twin's multiplier cells, and one-line errors."""

import subprocess
from pathlib import Path
from typing import Any

import pytest

from inq_hw.cost.asic_top import asic_top, full_folding
from inq_hw.errors import ToolNotFound
from inq_hw.intmodel.package import load_package
from rtl_gen.dataflow import cap_folding
from sim.fast.engine import fast_available
from tests.conftest import CLI, cli_env


def _xors(cells: dict[str, int]) -> int:
    return sum(n for cell, n in cells.items() if cell.startswith(("XOR", "XNOR")))


def test_the_default_folding_is_one_lane_per_layer(tiny_package: Path) -> None:
    model = load_package(tiny_package)
    folding = full_folding(model)
    assert folding == {layer.name: layer.codes.shape[0] for layer in model.weight_layers()}
    fc = model.weight_layers()[-1].name
    assert cap_folding(model, {fc: 99, "features.conv1": 2}) == {fc: 10, "features.conv1": 2}


@pytest.fixture(scope="module")
def tops(tiny_package: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both tiny tops synthesised, timed and powered with measured activity (one run:
    about 10 minutes on the loaded 2-core machine, two trace builds and two syntheses)."""
    from sim.top_activity import top_activity

    cache = tmp_path_factory.mktemp("asic_top")
    result = asic_top(
        tiny_package,
        activity=lambda rtl: top_activity(
            tiny_package, rtl, images=2, cache_dir=cache / "activity"
        ),
        period_ns=10.0,
        cache_dir=cache,
        timeout_s=1800,
    )
    return {"result": result, "cache": cache}


@pytest.mark.hw
@pytest.mark.skipif(not fast_available(), reason="Verilator, make or g++ missing")
def test_top_area_delay_and_power_from_the_tools(tops: dict[str, Any]) -> None:
    top = tops["result"]
    ours, twin = top["asic"]["shift-add"], top["asic"]["mult8"]
    for figures in (ours, twin):
        assert figures["sequential_area_um2"] > 0  # line buffers and stage registers
        # a buffered netlist: nanoseconds, not the 200+ ns of X1 gates driving 1000s of pins
        assert 0.5 < figures["critical_ns"] < 10.0
        assert figures["fmax_mhz"] == pytest.approx(1000 / figures["critical_ns"])
        assert any(cell.startswith("BUF_") for cell in figures["cells_by_type"])
        power = figures["power_breakdown_mw"]
        assert figures["activity"] == "measured"
        assert power["total"] == pytest.approx(
            power["internal"] + power["switching"] + power["leakage"], rel=1e-3
        )
        assert power["total"] == pytest.approx(power["sequential"] + power["combinational"], 1e-3)
        assert figures["energy_pj"] == pytest.approx(
            power["total"] * 10.0 * figures["interval_cycles"]
        )
        coverage = figures["coverage"]
        assert coverage["input_bits"] == coverage["input_bits_measured"] > 0
        assert coverage["cycles"] > 2 * figures["interval_cycles"]  # two images streamed
    assert ours["interval_cycles"] == twin["interval_cycles"]  # the same folding
    assert twin["area_um2"] > 1.5 * ours["area_um2"]
    # the twin's lanes multiply: their partial-product adders are XOR/XNOR cells
    assert _xors(twin["cells_by_type"]) > 3 * _xors(ours["cells_by_type"])
    assert top["analytic"]["mult8"]["area_um2"] > top["analytic"]["shift-add"]["area_um2"]


@pytest.mark.hw
@pytest.mark.skipif(not fast_available(), reason="Verilator, make or g++ missing")
def test_a_corrupt_activity_file_is_one_line(tops: dict[str, Any], tiny_package: Path) -> None:
    cache = tops["cache"]
    saved = sorted((cache / "activity").glob("activity-top-*.json"))
    assert len(saved) == 2  # one per top
    saved[0].write_text('{"format": "inq-hw-activity", "version": 1, "cycles": 0}')
    done = subprocess.run(
        [*CLI, "cost", str(tiny_package), "--target", "nangate45", "--design", "top",
         "--activity-images", "2", "--cache", str(cache), "--out", str(cache / "c.json"),
         "--no-progress"],
        capture_output=True, text=True, env=cli_env(), check=False,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "Activity file" in line and "missing keys ['period_ns', 'signals']" in line
    assert not (cache / "c.json").exists()


def test_a_missing_sta_is_one_line_before_any_work(
    tiny_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # yosys still runs from its PyPI package
    called: list[Path] = []

    def activity(rtl: Path) -> Any:
        called.append(rtl)

    with pytest.raises(ToolNotFound, match="sta not found: apt-get install opensta") as info:
        asic_top(tiny_package, activity=activity)
    assert "\n" not in str(info.value) and not called


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "ice40", "--design", "top"], "apply to --target nangate45, not 'ice40'"),
        (["--target", "nangate45", "--fold", "all=2"], "--fold applies to --design top"),
        (["--target", "nangate45", "--design", "top", "--abc", "full"], "not --abc full"),
    ],
)
def test_cli_top_options_are_checked(
    tiny_package: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    done = subprocess.run(
        [*CLI, "cost", str(tiny_package), *argv, "--activity-images", "0",
         "--cache", str(tmp_path), "--out", str(tmp_path / "c.json"), "--no-progress"],
        capture_output=True, text=True, env=cli_env(), check=False,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert message in line
