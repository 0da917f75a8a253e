"""Switching activity (sim/activity.py): the file format, its checks, and toggle counts
from waveforms, on a free-running counter whose bit i toggles k / 2^i times by construction."""

import json
from pathlib import Path
from typing import Any

import pytest

from sim.activity import FORMAT, Activity, ActivityError, activity_from_waves

_VCD = """$timescale 1ns $end
$scope module top $end
$var wire 1 ! clk $end
$var wire 3 " cnt [2:0] $end
$scope module sub $end
$var wire 2 # x [1:0] $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
0!
b000 "
b00 #
#5
1!
b001 "
#10
0!
#15
1!
b010 "
bx1 #
#20
0!
#25
1!
b011 "
b11 #
"""

COUNTER = """module counter(input clk, input rst, output reg [7:0] cnt);
  always @(posedge clk) cnt <= rst ? 8'd0 : cnt + 8'd1;
endmodule
"""


def test_toggles_from_a_vcd(tmp_path: Path) -> None:
    path = tmp_path / "t.vcd"
    path.write_text(_VCD)
    activity = activity_from_waves(path)
    assert activity.cycles == 3
    assert activity.period_ns == 10.0
    assert activity.signals["top.cnt"] == (3, 1, 0)  # 0 -> 1 -> 2 -> 3
    # 00 -> x1 -> 11: bit 0 rises once; bit 1 only passes through x (not a toggle)
    assert activity.signals["top.sub.x"] == (1, 0)
    assert activity.rate("top.cnt", 1) == pytest.approx(1 / 3)


def test_round_trip(tmp_path: Path) -> None:
    # a list of values is accepted too (JSON gives lists)
    signals: dict[str, Any] = {"top.a": (4, 0), "top.b": [1]}
    activity = Activity(10, 2.5, signals)
    activity.write(tmp_path / "a.json")
    obj = json.loads((tmp_path / "a.json").read_text())
    assert obj["format"] == FORMAT and obj["version"] == 1
    assert obj["signals"] == {"top.a": [4, 0], "top.b": [1]}
    assert Activity.read(tmp_path / "a.json") == activity


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        ('{"format": "vcd"}', "is not an inq-hw-activity file"),
        ('{"format": "inq-hw-activity", "version": 2}', "version 2"),
        (
            '{"format": "inq-hw-activity", "version": 1, "cycles": 0, '
            '"period_ns": null, "signals": {}}',
            "cycles must be a positive integer",
        ),
        (
            '{"format": "inq-hw-activity", "version": 1, "cycles": 4, '
            '"period_ns": null, "signals": {"a": [1, -1]}}',
            "non-negative integers",
        ),
        (
            '{"format": "inq-hw-activity", "version": 1, "cycles": 4, '
            '"period_ns": -1, "signals": {}}',
            "period_ns must be positive",
        ),
        ('{"format": "inq-hw-activity", "version": 1, "cycles": 4}', "missing keys"),
    ],
)
def test_a_wrong_activity_file_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ActivityError, match=message) as info:
        Activity.read(path)
    assert "\n" not in str(info.value)


def test_a_wrong_waveform_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ActivityError, match="Cannot read waveform"):
        activity_from_waves(tmp_path / "absent.fst")
    (tmp_path / "bad.vcd").write_text("hello\n")
    with pytest.raises(ActivityError, match="neither VCD nor FST"):
        activity_from_waves(tmp_path / "bad.vcd")
    (tmp_path / "t.vcd").write_text(_VCD)
    with pytest.raises(ActivityError, match="no 1-bit clock signal named 'clock'"):
        activity_from_waves(tmp_path / "t.vcd", clock="clock")


def counter_activity(tmp_path: Path, cycles: int) -> Activity:
    """An Icarus run (FST waves) of an 8-bit counter over ``cycles`` cycles (Verilator under
    cocotb writes VCD, read the same way, but builds a minute longer)."""
    from sim.runner import run_testbench

    source = tmp_path / "counter.v"
    source.write_text(COUNTER)
    config = {
        "ports": {"clk": {"width": 1, "signed": False}, "cnt": {"width": 8, "signed": False}},
        "inputs": [{}] * cycles,
        "expect": [{}] * cycles,
    }
    result = run_testbench(
        sources=[source],
        top="counter",
        module="sim.tb_vectors",
        config=config,
        simulator="icarus",
        cache_dir=tmp_path / "build",
        waves=True,
        timeout_s=300,
    )
    assert result["waves"] and result["waves"].endswith((".fst", ".vcd"))
    return activity_from_waves(result["waves"])


@pytest.mark.hw
def test_counter_toggles_by_construction(tmp_path: Path) -> None:
    activity = counter_activity(tmp_path, 300)
    (name,) = [n for n in activity.signals if n.endswith("counter.cnt")]
    toggles = activity.signals[name]
    increments = toggles[0]  # bit 0 toggles on every increment
    assert 290 <= increments <= activity.cycles <= 310
    assert list(toggles) == [increments >> i for i in range(8)]
    assert activity.period_ns == pytest.approx(10.0)
