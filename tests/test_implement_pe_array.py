"""The shift-PE array as an ``implement`` target: its resource model, the fit's fallback to
it when no folding of the dataflow top fits, the CLI's refusals, and (``hw``) a small
array synthesised, placed, routed and packed on iCE40 with its netlist simulated
bit-exact."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inq_hw import cli
from inq_hw.cost.errors import CostError
from inq_hw.cost.fpga import logic_cells
from inq_hw.cost.fpga_pe import estimate_pe_array, pe_array_bram
from inq_hw.errors import ConfigError
from inq_hw.implement import fit as fit_module
from inq_hw.implement.devices import DEVICES
from inq_hw.implement.fit import FitError, choose_folding
from inq_hw.implement.pe_array import (
    SHAPES,
    compile_for,
    generate_pe_array,
    host_cycles,
    parse_pe,
)
from inq_hw.intmodel.package import load_package, save_package
from rtl_gen.export import load_manifest
from rtl_gen.pe_program import ArrayConfig
from sim.cycle_model import predict
from tests.test_implement import micro_cnn

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(scope="module")
def digits2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-bit digits-cnn (the zoo's default channels, random weights on the grid): no
    folding of its dataflow top fits an UP5K."""
    from benches.bench_pe_array import on_grid_package

    path = tmp_path_factory.mktemp("digits2") / "pkg"
    save_package(on_grid_package("digits-cnn", 1, 8, 2)[0], path)
    return path


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("micro_pe") / "pkg"
    save_package(micro_cnn(), path)
    return path


def test_shapes_parse_and_bad_ones_are_refused() -> None:
    assert parse_pe("1x16") == (1, 16) and parse_pe(" 4X2 ") == (4, 2)
    for bad in ("16", "0x4", "1x", "axb", "2x-1"):
        with pytest.raises(ConfigError, match="--pe must be ROWSxCOLS"):
            parse_pe(bad)


def test_block_rams_are_counted_from_the_memories() -> None:
    """A 2×4 array of 16-bit activations (4,096 words, once per row), 2-bit codes (4,096
    words of 4 × 2 bits) and 18-bit biases (128): the counts synth_ice40 and synth_ecp5
    used for the 2-bit digits-cnn at 2×4 (benches/bench_fit_pe.py)."""
    config = ArrayConfig(rows=2, cols=4, act_bits=16, weight_bits=2, acc_bits=18,
                         act_depth=4096, weight_depth=4096, bias_depth=128, program_depth=8,
                         term_depth=8)  # fmt: skip
    # iCE40: 2 × 16 (256 × 16 each) + 8 (512 × 8) + 2 (256 × 16, two wide)
    assert pe_array_bram(config, "ice40") == 42
    # ECP5: 2 × 4 (1,024 × 18) + 2 (2,048 × 9) + 1
    assert pe_array_bram(config, "ecp5") == 11
    assert estimate_pe_array(config, "ice40").bram == 42


def test_the_model_refuses_what_it_does_not_cover() -> None:
    config = ArrayConfig(rows=1, cols=1, pe="mult", weight_bits=8)
    with pytest.raises(CostError, match="shift-PE array only"):
        estimate_pe_array(config, "ice40")
    with pytest.raises(CostError, match="Device family must be one of"):
        estimate_pe_array(dataclasses.replace(config, pe="shift", weight_bits=5), "gowin")


def test_generated_array_carries_its_host_cycles(micro: Path, tmp_path: Path) -> None:
    program = generate_pe_array(micro, tmp_path / "rtl", rows=1, cols=2)
    (top,) = load_manifest(tmp_path / "rtl").tops
    cycles = program.input.size + 1 + predict(program).cycles + program.output.size + 1
    assert top.params["kind"] == "pe_array" and host_cycles(program) == cycles
    assert top.params["interval_cycles"] == top.params["latency_cycles"] == cycles
    assert top.params["config"]["rows"] == 1 and top.params["config"]["cols"] == 2


def test_the_fit_falls_back_to_the_fastest_pe_array_that_fits(digits2: Path) -> None:
    """No folding of the 2-bit digits-cnn fits an UP5K; the fit returns the PE array with
    the fewest host cycles of the shapes whose predicted LUTs, FFs, logic cells (85%) and
    block RAMs (all) fit, checked here against every shape."""
    with pytest.raises(FitError, match="No folding fits ice40-up5k"):
        choose_folding(digits2, "ice40-up5k", arch="dataflow")
    fit = choose_folding(digits2, "ice40-up5k")
    assert fit.arch == "pe-array" and fit.folding == {}
    part, model = DEVICES["ice40-up5k"], load_package(digits2)
    fitting = {}
    for rows, cols in SHAPES:
        program = compile_for(model, rows, cols)
        used = estimate_pe_array(program.config, "ice40").resources()
        cells = logic_cells(used["lut"], used["ff"], "ice40")
        if max(used["lut"], used["ff"], cells) <= 0.85 * part.lut and used["bram"] <= part.bram:
            fitting[(rows, cols)] = (host_cycles(program), used)
    assert fitting and fit.pe in fitting
    assert fit.interval_cycles == min(cycles for cycles, _ in fitting.values())
    assert fit.predicted == fitting[fit.pe][1]
    assert fit.to_dict()["pe"] == list(fit.pe)
    # the least area reaching a frame rate, and a frame rate nothing reaches
    slow = choose_folding(digits2, "ice40-up5k", fps=1, clock_mhz=12)
    assert slow.arch == "pe-array" and slow.predicted["lut"] <= fit.predicted["lut"]
    with pytest.raises(FitError, match="no shift-PE array does either"):
        choose_folding(digits2, "ice40-up5k", fps=1e6, clock_mhz=12)


def test_a_pe_array_fit_names_its_limits(digits2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = dataclasses.replace(DEVICES["ice40-up5k"], bram=4)
    monkeypatch.setitem(fit_module.DEVICES, "ice40-up5k", tiny)
    message = r"No shift-PE array fits ice40-up5k at 85%.*: the smallest, 1x1, needs .* 26 block"
    with pytest.raises(FitError, match=message + r" RAMs \(predicted; ice40-up5k has 4\)$"):
        choose_folding(digits2, "ice40-up5k", arch="pe-array")
    with pytest.raises(FitError, match="not the multiplier twin"):
        choose_folding(digits2, "ice40-up5k", arch="pe-array", baseline="mult8")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "ice40-up5k", "--pe", "0x2"], "--pe must be ROWSxCOLS"),
        (["--device", "ice40-up5k", "--arch", "pe-array"], "--arch pe-array needs --pe"),
        (["--device", "ice40-up5k", "--pe", "1x2", "--fold", "all=2"], "drop --fold"),
        (["--device", "ice40-up5k", "--pe", "1x2", "--arch", "dataflow"], "excludes --arch"),
        (["--device", "ice40-up5k", "--pe", "1x2", "--pipeline", "2"], "drop --pipeline"),
    ],
)
def test_the_cli_refuses_in_one_line(
    micro: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["implement", str(micro), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.hw
def test_a_pe_array_on_ice40_end_to_end(
    micro: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The micro CNN on a 1×2 shift-PE array: synthesised, placed, routed, packed on an
    UP5K; its netlist simulated bit-exact with the vendor cell models (block RAMs
    included); the model's prediction beside the synthesised figures."""
    monkeypatch.setenv("INQ_HW_CACHE", str(tmp_path / "cache"))  # the tools run
    out = tmp_path / "impl"
    code = cli.main(["implement", str(micro), "--device", "ice40-up5k", "--pe", "1x2",
                     "--out", str(out), "--json", "--no-progress"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "implementation.json").read_text())
    assert result["kind"] == "pe_array" and result["pe"] == [1, 2] and not result["cached"]
    assert Path(result["bitstream"]).stat().st_size > 10_000
    assert result["resources"]["bram"] > 0 and result["fmax_mhz"] > 0
    program = compile_for(load_package(micro), 1, 2)
    assert result["interval_cycles"] == host_cycles(program)
    assert result["images_per_second"] == pytest.approx(
        result["fmax_mhz"] * 1e6 / host_cycles(program)
    )
    predicted: dict[str, Any] = result["predicted"]
    assert predicted["bram"] == result["resources"]["bram"]
    from inq_hw.implement.netlist import check_netlist

    images = np.random.default_rng(0).integers(0, 256, (2, 1, 4, 4))
    summary = check_netlist(micro, result["rtl"], result, images=images)
    assert summary["samples"] == 2 and summary["mismatched_samples"] == 0
