# amaranth: UnusedElaboratable=no
"""Convolution line buffers in memory (``line_buffer="bram"``): the row delays in one ring
memory with a synchronous read port, read one word ahead, so the top is bit-exact and
cycle-exact with the same control model as with registers, under random gaps and stalls;
the one rule that picks memory or registers; the resource model's block RAM."""

from pathlib import Path

import pytest

from inq_hw import cli
from inq_hw.cost.fpga import bram_blocks, estimate_top
from inq_hw.errors import ConfigError
from inq_hw.intmodel.package import load_package, save_package
from rtl_gen.dataflow import build_dataflow, generate_dataflow
from rtl_gen.engines import AUTO_MEMORY_DEPTH, ConvEngine, line_buffer_in_memory
from rtl_gen.export import verilator_lint
from sim.fast.engine import fast_available
from sim.simulate import simulate_package
from tests.test_dataflow import INTEGRATION, _images, check_top, replay, small_cnn


def _convs(top: object) -> list[ConvEngine]:
    return [s.engine for s in top.stages if isinstance(s.engine, ConvEngine)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("padding", "folding", "pipeline", "stall"),
    [
        (1, {}, {}, 0.3),
        (1, {"c1": 3, "c2": 2, "f1": 4}, {"c1": 1, "c2": 2, "f2": 1}, 0.5),
        pytest.param(0, {"c2": 2}, {}, 0.6, marks=INTEGRATION),
        pytest.param(2, {}, {"c1": 2, "c2": 1}, 0.4, marks=INTEGRATION),
    ],
    ids=["unrolled", "folded-pipelined", "padding0", "padding2"],
)
def test_memory_line_buffers_are_bit_exact_and_cycle_exact_under_stalls(
    padding: int, folding: dict[str, int], pipeline: dict[str, int], stall: float
) -> None:
    model = small_cnn(padding=padding)
    top = build_dataflow(model, folding=folding, pipeline=pipeline, line_buffer="bram")
    assert all(conv.line_memory for conv in _convs(top))  # delays of 2..10 words
    record = check_top(model, top, count=4, stall=stall, seed=padding + len(folding))
    assert replay(top, record) == record["transfers"]
    registers = build_dataflow(model, folding=folding, pipeline=pipeline, line_buffer="regs")
    assert top.timing() == registers.timing()


def test_the_rule_picks_memory_by_depth_in_one_place() -> None:
    assert not line_buffer_in_memory(1, "bram")  # the read ahead needs two words
    assert line_buffer_in_memory(2, "bram") and not line_buffer_in_memory(500, "regs")
    assert not line_buffer_in_memory(AUTO_MEMORY_DEPTH - 1, "auto")
    assert line_buffer_in_memory(AUTO_MEMORY_DEPTH, "auto")
    with pytest.raises(ConfigError, match=r"Line buffer must be one of .* not 'sram'"):
        line_buffer_in_memory(8, "sram")
    with pytest.raises(ConfigError, match="not 'sram'"):
        build_dataflow(small_cnn(), line_buffer="sram")
    assert AUTO_MEMORY_DEPTH == 5  # iCE40: 3 x 48 bits were flip-flops, 8 x 32 block RAM
    top = build_dataflow(small_cnn())  # "auto": delays of 8 and 3 words
    depths = [(conv.line_depth, conv.line_memory) for conv in _convs(top)]
    assert depths == [(8, True), (3, False)]


def test_the_manifest_states_each_convolutions_line_buffer(tmp_path: Path) -> None:
    save_package(small_cnn(), tmp_path / "pkg")
    manifest = generate_dataflow(tmp_path / "pkg", tmp_path / "rtl", line_buffer="bram")
    params = manifest["tops"][0]["params"]
    assert params["line_buffer"] == "bram"
    convs = [e for e in params["engines"] if e["kind"] == "conv2d"]
    assert [e["line_buffer"] for e in convs] == ["bram", "bram"]


def test_the_resource_model_counts_line_buffers_in_block_ram() -> None:
    """c1's delays (8 words, 2 rows of 2 channels of 8 bits) take 2 SB_RAM40_4K; c2's
    (3 words of 48 bits) are cheaper as logic for Yosys, so flip-flops; on ECP5 both are
    distributed RAM. Either way the registers of the delays are gone."""
    model = small_cnn()
    memory = build_dataflow(model, line_buffer="bram")
    registers = build_dataflow(model, line_buffer="regs")
    ice40, ecp5 = (estimate_top(memory, model, family) for family in ("ice40", "ecp5"))
    assert ice40.bram == bram_blocks(8, 32, "ice40") == 2 and ice40.stages[0].bram == 2
    assert ecp5.bram == 0
    for family, estimate in (("ice40", ice40), ("ecp5", ecp5)):
        assert estimate.ff < estimate_top(registers, model, family).ff
    assert estimate_top(registers, model, "ice40").bram == 0


def test_the_cli_takes_line_buffer_and_refuses_it_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_package(small_cnn(), tmp_path / "pkg")
    args = ["generate", str(tmp_path / "pkg"), "--unit", "dataflow", "--line-buffer", "bram"]
    assert cli.main([*args, "--out", str(tmp_path / "rtl"), "--no-progress"]) == 0
    assert '"line_buffer": "bram"' in (tmp_path / "rtl" / "manifest.json").read_text()
    capsys.readouterr()
    assert cli.main(["generate", str(tmp_path / "pkg"), "--line-buffer", "bram"]) == 2
    assert "--line-buffer applies to --unit dataflow only" in capsys.readouterr().err


@pytest.mark.hw
@pytest.mark.parametrize(
    ("engine", "simulator"),
    [
        ("cocotb", "icarus"),
        pytest.param(
            "fast", None, marks=pytest.mark.skipif(not fast_available(), reason="no Verilator")
        ),
    ],
)
def test_memory_line_buffers_through_verilog_are_bit_exact_with_stalls(
    engine: str, simulator: str | None, tmp_path: Path
) -> None:
    save_package(small_cnn(), tmp_path / "pkg")
    model = load_package(tmp_path / "pkg")
    rtl = tmp_path / "rtl"
    manifest = generate_dataflow(tmp_path / "pkg", rtl, folding={"c2": 2}, line_buffer="bram")
    (top,) = manifest["tops"]
    assert verilator_lint([rtl / top["file"]], top["name"]) == []
    summary = simulate_package(
        tmp_path / "pkg",
        rtl_dir=rtl,
        images=_images(model, 6, 2),
        engine=engine,
        simulator=simulator,
        seed=3,
        stall=0.4,
    )
    assert summary["mismatched_samples"] == 0 and summary["samples"] == 6
    assert summary["timing_matches_manifest"], summary


def test_a_residual_top_with_memory_line_buffers_and_a_1x1_shortcut() -> None:
    """Line-buffer memories beside the FIFO's; the 1x1 shortcut has no row delays."""
    from tests.test_dataflow_residual import _downsampling_block

    model = _downsampling_block(shortcut_first=True)
    top = build_dataflow(model, line_buffer="bram")
    kernels = {(conv.kernel, conv.line_memory) for conv in _convs(top)}
    assert kernels == {(1, False), (3, True)}
    record = check_top(model, top, count=3, stall=0.4, seed=9)
    assert replay(top, record) == record["transfers"]


def test_the_fit_prices_each_convolutions_block_ram() -> None:
    from inq_hw.implement.fit import _Search

    search = _Search(small_cnn(), "ice40", baseline=None, pipeline=0, dsp=None, line_buffer="bram")
    assert {option.resources["bram"] for option in search.options["c1"]} == {2}
    assert {option.resources["bram"] for option in search.options["c2"]} == {0}  # logic
