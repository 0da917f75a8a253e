# amaranth: UnusedElaboratable=no
"""The compiled Verilator engine (sim/fast): the dataflow top bit-exact with random gaps and
stalls, cycle and wall-clock limits, stale builds refused, and
the PE array bit-exact with cycles equal to the cycle model's. (The corrupted design runs
on both engines in tests/test_sim.py.)

Every test of the small top shares one build (a module-scoped cache directory); the
corrupted design, the trace variant and the PE array are builds of their own.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from inq_hw.intmodel import run
from inq_hw.intmodel.package import load_package, save_package
from rtl_gen.dataflow import generate_dataflow
from rtl_gen.export import find_verilator
from rtl_gen.pe_program import compile_program, fit_config
from sim.fast.engine import BuildFlags, build_harness, build_units, fast_available, run_stream
from sim.fast.split import POISON, find_units, split_units
from sim.pe_array_sim import check_summary, simulate_pe_array
from sim.runner import SimulationError, simulator_environment
from sim.simulate import choose_engine, simulate_package
from sim.streams import decode_fields, encode_fields, pack_words, unpack_fields
from tests.test_dataflow import _images, small_cnn
from tests.test_pe_array import zoo_model
from tests.test_sim import corrupted_design

pytestmark = [
    pytest.mark.hw,
    pytest.mark.skipif(not fast_available(), reason="Verilator, make or g++ missing"),
]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small CNN's package, its top (c2 folded by 2) and one build cache for all."""
    root = tmp_path_factory.mktemp("fast")
    save_package(small_cnn(), root / "pkg")
    generate_dataflow(root / "pkg", root / "rtl", folding={"c2": 2})
    return {"package": root / "pkg", "rtl": root / "rtl", "cache": root / "cache"}


def _simulate(small: dict[str, Path], images: np.ndarray, **options: object) -> dict:
    return simulate_package(
        small["package"],
        rtl_dir=small["rtl"],
        images=images,
        engine="fast",
        cache_dir=small["cache"],
        **options,  # type: ignore[arg-type]
    )


def test_packing_matches_the_scalar_helpers() -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(-(2**12), 2**12, (50, 7))
    words = pack_words(rows, 13)
    assert words.shape == (50, 3)
    for row, packed in zip(rows.tolist(), words.tolist(), strict=True):
        word = sum(w << (32 * k) for k, w in enumerate(packed))
        assert word == encode_fields(row, 13)
        assert decode_fields(word, 7, 13, True) == row
    assert unpack_fields(words, 7, 13, True).tolist() == rows.tolist()


def test_fast_engine_is_bit_exact_with_random_stalls(
    small: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    x = _images(small_cnn(), 40, 1)
    summary = _simulate(small, x, seed=7, idle=0.4, stall=0.4)
    assert summary["engine"] == "fast" and summary["simulator"] == "verilator"
    assert summary["mismatched_samples"] == 0 and summary["samples"] == 40
    assert summary["timing_matches_manifest"], summary
    # gaps and stalls really happened: more cycles than back-to-back images would take
    assert summary["cycles"] > 40 * summary["interval_cycles"] * 1.2
    assert summary["build_seconds"] >= 0 and summary["run_seconds"] > 0
    # the harness process's CPU time (getrusage of the child) covers its loop's
    assert summary["harness_process_cpu_seconds"] >= 0.9 * summary["harness_cpu_seconds"] > 0
    again = _simulate(small, x, seed=7, idle=0.4, stall=0.4)
    assert again["cycles"] == summary["cycles"]  # the seed decides the run
    assert _simulate(small, x, seed=8, idle=0.4, stall=0.4)["cycles"] != summary["cycles"]
    err = capfd.readouterr().err
    assert "fast: samples done 40/40" in err and "cached build" in err


def test_cycle_limit_and_wall_clock_limit(small: dict[str, Path]) -> None:
    x = _images(small_cnn(), 2, 0)
    with pytest.raises(SimulationError, match="cycle limit"):
        _simulate(small, x, max_cycles=40)
    many = np.concatenate([_images(small_cnn(), 400, 0)] * 10)
    with pytest.raises(SimulationError, match="did not finish within"):
        _simulate(small, many, timeout_s=0.001)


def test_stale_builds_are_refused(small: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    save_package(small_cnn(padding=2), other)
    generate_dataflow(other, tmp_path / "rtl")
    with pytest.raises(SimulationError, match="generated from another package"):
        simulate_package(
            small["package"], rtl_dir=tmp_path / "rtl", images=np.zeros((1, 2, 7, 9)), engine="fast"
        )
    # a cached build whose stamp names another design (copied or edited by hand)
    top = json.loads((small["rtl"] / "manifest.json").read_text())["tops"][0]
    widths = {port["name"]: port["width"] for port in top["ports"]}
    build = build_harness(
        [small["rtl"] / top["file"]], top["name"], "stream", small["cache"], port_widths=widths
    )
    stamp = build.executable.parent / "design.json"
    saved = stamp.read_text()
    stamp.write_text(json.dumps({"key": "0" * 24, "top": top["name"]}))
    try:
        with pytest.raises(SimulationError, match="made from another design"):
            _simulate(small, _images(small_cnn(), 2, 0))
    finally:
        stamp.write_text(saved)


def test_a_relative_cache_directory_builds(
    small: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``inq-hw flow --out runs/flow`` hands the engine relative paths (make demo did)."""
    monkeypatch.chdir(tmp_path)
    x = _images(small_cnn(), 3, 0)
    summary = simulate_package(
        small["package"], rtl_dir=small["rtl"], images=x, engine="fast", cache_dir=Path("cache")
    )
    assert summary["mismatched_samples"] == 0 and summary["samples"] == 3
    assert any(Path("cache").glob("fast-stream-*/harness"))


_UNITS = """module top(clk, a, y);
  input clk; input [7:0] a; output [8:0] y;
  \\top.dot.unit  unit (.i_data(a), .o_data(y));
endmodule
(* generator = "Amaranth" *)
module \\top.dot.unit (o_data, i_data);
  input [7:0] i_data;
  output [8:0] o_data;
  wire [8:0] \\$1 ;
  assign \\$1  = i_data + 9'h001;
  assign o_data = \\$1 ;
endmodule
module \\top.reg.unit (o_data, clk);
  input clk;
  output [8:0] o_data;
  reg [8:0] r;
  assign o_data = r;
  always @(posedge clk) r <= r + 1;
endmodule
"""


def test_units_are_split_into_dpi_stubs() -> None:
    """Only combinational ``*.unit`` modules with enough statements are taken out; the
    design keeps their ports and calls the unit's DPI function in their place."""
    assert find_units(_UNITS, min_statements=3) == []  # two assignments
    odd = _UNITS.replace("input [7:0] i_data;", "input [0:7] i_data;")
    assert find_units(odd, min_statements=2) == []  # a port range it does not read
    text, units = split_units(_UNITS, min_statements=2)
    assert [u.module for u in units] == ["\\top.dot.unit"]  # not the clocked one
    unit = units[0]
    assert unit.inputs == (("i_data", 8),) and unit.outputs == (("o_data", 9),)
    assert unit.text.startswith("module inq_hw_unit_0(o_data, i_data);")
    assert "i_data + 9'h001" in unit.text and "i_data + 9'h001" not in text
    assert 'import "DPI-C" function void inq_hw_unit_0(input bit [7:0] i_data,' in text
    assert "always @(posedge clk) r <= r + 1;" in text and "\\top.dot.unit  unit (" in text


_GATED = """module \\top.dot.unit (o_valid, o_data, i_data);
  input o_valid;
  input [7:0] i_data;
  output [8:0] o_data;
  wire [8:0] \\$1 ;
  assign \\$1  = i_data + 9'h001;
  assign o_data = \\$1 ;
endmodule
"""

_GATED_TB = """module tb(v, a, y);
  input v;
  input [7:0] a;
  output [8:0] y;
  \\top.dot.unit  unit (.o_valid(v), .i_data(a), .o_data(y));
endmodule
"""

_GATED_MAIN = """#include <cstdio>
#include "Vtb.h"
int main() {
    Vtb tb;
    const int steps[4][2] = {{1, 3}, {0, 3}, {1, 3}, {1, 9}};  // (valid, data)
    for (const auto& step : steps) {
        tb.v = step[0];
        tb.a = step[1];
        tb.eval();
        std::printf("y %d\\n", static_cast<int>(tb.y));
    }
    tb.final();
}
"""


@pytest.mark.parametrize("gate", [True, False])
def test_a_gated_unit_drives_poison_while_its_valid_is_low(gate: bool, tmp_path: Path) -> None:
    """Through Verilator and the DPI stub: valid high gives the unit's result (from the
    memo when the data returns unchanged), valid low the poison pattern, not a stale
    result; ungated, the result whatever valid is."""
    import subprocess

    text, units = split_units(_GATED, min_statements=1)
    assert units[0].valid == "o_valid" and units[0].inputs == (("o_valid", 1), ("i_data", 8))
    (tmp_path / "design.sv").write_text(text + _GATED_TB)
    (tmp_path / "main.cpp").write_text(_GATED_MAIN)
    verilator, _ = find_verilator()
    extra = build_units(units, tmp_path, BuildFlags(gate_units=gate), [], str(verilator))
    with simulator_environment("verilator"):
        subprocess.run(
            [str(verilator), "--cc", "--exe", "--build", "-Wno-fatal", "-Wno-lint", "--top-module",
             "tb", "-Mdir", str(tmp_path / "obj"), str(tmp_path / "design.sv"),
             str(tmp_path / "main.cpp"), *extra],
            check=True, capture_output=True,
        )  # fmt: skip
    run_tb = subprocess.run([str(tmp_path / "obj" / "Vtb")], capture_output=True, text=True)
    seen = [int(line.split()[1]) for line in run_tb.stdout.splitlines() if line.startswith("y ")]
    low = POISON & 0x1FF if gate else 4
    assert seen == [4, low, 4, 10]


def _run_flags(
    small: dict[str, Path], flags: BuildFlags, count: int, rtl: Path | None = None
) -> tuple[dict, Path]:
    rtl = rtl or small["rtl"]
    top = json.loads((rtl / "manifest.json").read_text())["tops"][0]
    widths = {port["name"]: port["width"] for port in top["ports"]}
    build = build_harness(
        [rtl / top["file"]],
        top["name"],
        "stream",
        small["cache"],
        flags=flags,
        port_widths=widths,
    )
    images = _images(small_cnn(), count, 2)
    expected = run(load_package(small["package"]), images)
    assert isinstance(expected, np.ndarray)
    result = run_stream(
        build,
        images,
        top["params"]["input"],
        top["params"]["output"],
        expected,
        expected.argmax(axis=1),
        port_widths=widths,
        seed=3,
        max_cycles=10**6,
    )
    return result, build.executable.parent


def test_split_units_build_is_bit_exact(small: dict[str, Path]) -> None:
    """Every unit split out (split_units=1), gated (the default) or not: the same outputs
    and cycles as the whole model, from builds of their own keys."""
    split, split_dir = _run_flags(small, BuildFlags(split_units=1), 30)
    ungated, ungated_dir = _run_flags(small, BuildFlags(split_units=1, gate_units=False), 30)
    whole, whole_dir = _run_flags(small, BuildFlags(split_units=0), 30)
    assert (split_dir / "design_0.sv").is_file() and not (whole_dir / "design_0.sv").exists()
    assert "if (!o_valid)" in (split_dir / "units.cpp").read_text()
    assert "if (!o_valid)" not in (ungated_dir / "units.cpp").read_text()
    assert split["mismatched_samples"] == 0 == whole["mismatched_samples"]
    assert ungated["mismatched_samples"] == 0
    assert split["cycles"] == whole["cycles"] == ungated["cycles"] and split["received"] == 30


def test_split_units_build_catches_a_corrupted_unit(small: dict[str, Path], tmp_path: Path) -> None:
    """One fc weight's sign flipped after generation: the split build sees it too."""
    corrupted_design(small["package"], tmp_path / "rtl")
    result, build_dir = _run_flags(small, BuildFlags(split_units=1), 8, rtl=tmp_path / "rtl")
    assert (build_dir / "design_0.sv").is_file() and result["mismatched_samples"] > 0


def test_engine_choice_and_bad_flags() -> None:
    assert choose_engine(None) == "fast"
    assert choose_engine(None, "icarus") == "cocotb"
    with pytest.raises(SimulationError, match="must be one of"):
        choose_engine("spice")
    with pytest.raises(SimulationError, match="runs on Verilator"):
        choose_engine("fast", "icarus")
    with pytest.raises(ValueError, match="threads must be"):
        BuildFlags(threads=0)
    with pytest.raises(ValueError, match="split_units must be"):
        BuildFlags(split_units=-1)


@pytest.mark.slow
def test_waves_and_activity_of_the_trace_build(small: dict[str, Path], tmp_path: Path) -> None:
    """--activity and --waves use a separate trace-enabled build; it writes an FST, and
    the activity JSON when sim.activity (its reader) is installed.
    (slow: the trace build compiles Verilator's FST writer too; 5 min on the loaded
    shared machine.)"""
    import importlib.util

    summary = _simulate(small, _images(small_cnn(), 2, 0), waves=True)
    waves = Path(summary["waves"])
    assert waves.suffix == ".fst" and waves.stat().st_size > 1000
    assert summary["mismatched_samples"] == 0
    default = _simulate(small, _images(small_cnn(), 2, 0))
    assert default["build_dir"] != summary["build_dir"] and default["waves"] is None
    activity = tmp_path / "activity.json"
    traced = _simulate(small, _images(small_cnn(), 2, 0), activity=activity)
    assert traced["build_dir"] == summary["build_dir"]  # the cached trace build
    if importlib.util.find_spec("sim.activity") is None:
        assert traced["activity"] is None and Path(traced["waves"]).is_file()
    else:
        saved = json.loads(activity.read_text())
        assert saved["format"] == "inq-hw-activity" and saved["cycles"] > 0


def test_pe_array_through_the_harness(tmp_path: Path) -> None:
    model, x = zoo_model("digits-cnn", 1, 8, 4, channels=[4, 8, 8])
    program = compile_program(model, fit_config(model, rows=2, cols=2))
    summary = simulate_pe_array(model, program, x[:3], out_dir=tmp_path / "rtl", engine="fast")
    check_summary(summary)  # bit-exact, o_cycles and counted cycles == the cycle model
    assert summary["engine"] == "fast" and summary["completed"] == 3
    assert summary["o_cycles"] == [summary["predicted_cycles"]] * 3
