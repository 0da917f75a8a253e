"""inq-hw explore: table, JSON, files written, Pareto marks, errors."""

import json
from pathlib import Path

import pytest

from inq_hw.commands.explore import pareto_front
from inq_hw.intmodel.package import save_package
from tests.conftest import Cli
from tests.test_pe_array import zoo_model


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, _ = zoo_model("digits-cnn", 1, 8, 4, channels=[4, 8, 8])
    return save_package(model, tmp_path_factory.mktemp("explore") / "pkg")


def test_explore_writes_table_json_and_plot(cli: Cli, package: Path, tmp_path: Path) -> None:
    args = ["explore", str(package), "--pe", "2x2,4x4", "--bits", "3,4", "--out", str(tmp_path)]
    code, text, err = cli(*args, "--json")
    assert code == 0, err
    summary = json.loads(text)
    rows = summary["rows"]
    assert [(r["pe"], r["array"], r["weight_bits"]) for r in rows] == [
        ("shift", "2x2", 3),
        ("shift", "2x2", 4),
        ("mult", "2x2", 8),
        ("shift", "4x4", 3),
        ("shift", "4x4", 4),
        ("mult", "4x4", 8),
    ]
    assert [r["compiled"] for r in rows] == [False, True, True, False, True, True]
    # Same schedule at every width: the cycles of a shape do not depend on the code.
    assert rows[0]["cycles"] == rows[1]["cycles"] == rows[2]["cycles"] > rows[3]["cycles"]
    assert rows[0]["energy_nj"] < rows[1]["energy_nj"] < rows[2]["energy_nj"]
    assert rows[1]["latency_us"] == pytest.approx(rows[1]["cycles"] / 200)
    assert any(r["pareto"] for r in rows) and not rows[2]["pareto"]  # mult 2x2 is dominated
    assert json.loads((tmp_path / "explore.json").read_text())["rows"] == rows
    assert (tmp_path / "explore.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "explore.txt").read_text()
    assert "3 (what-if)" in table and "latency µs @200 MHz" in table
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    code, text, _ = cli(*args)
    assert code == 0 and "pareto" in text and "*" in text


def test_pareto_front() -> None:
    rows = [
        {"latency_us": 1, "energy_nj": 5, "area_mm2": 1},
        {"latency_us": 2, "energy_nj": 5, "area_mm2": 1},  # dominated by the first
        {"latency_us": 3, "energy_nj": 1, "area_mm2": 1},
        {"latency_us": 1, "energy_nj": 5, "area_mm2": 1},  # a tie dominates nothing
    ]
    assert pareto_front(rows) == [True, False, True, True]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--pe", "4y4"], "--pe must be shapes like 4x4,8x8"),
        (["--pe", "0x4"], "1 to 64 rows and columns"),
        (["--bits", "9"], "Bit-width must be an integer from 2 to 7, not 9"),
        (["--bits", "8"], "Bit-width 8 cannot be lowered"),
        (["--clock-mhz", "0"], "--clock-mhz must be positive"),
    ],
)
def test_explore_errors_are_one_line(
    cli: Cli, package: Path, option: list[str], message: str
) -> None:
    code, _, err = cli("explore", str(package), *option)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_one_by_one_array_is_priced(cli: Cli, package: Path, tmp_path: Path) -> None:
    code, out, err = cli("explore", str(package), "--pe", "1x1", "--out", str(tmp_path / "x"))
    assert code == 0, err
    assert "1x1" in out and "Traceback" not in err
