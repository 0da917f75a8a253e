"""``inq-hw implement``: a small dataflow top through Yosys, nextpnr and icepack on an
iCE40, its synthesised netlist simulated bit-exact, and the one-line errors.

The top (a 1x4x4 image, one 3x3 convolution, one linear layer) takes about 15 s of
synthesis, place and route and 5 s of netlist simulation on an idle core.
"""

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inq_hw import cli, tools
from inq_hw.errors import ToolNotFound, ToolTimeout
from inq_hw.implement import DeviceError, ImplementError, implement_rtl
from inq_hw.implement.flow import RESULTS_NAME, implement_package
from inq_hw.implement.netlist import check_netlist
from inq_hw.intmodel.arith import ActFormat
from inq_hw.intmodel.layers import Conv2dLayer, FlattenLayer, InputLayer, IntModel, LinearLayer
from inq_hw.intmodel.package import save_package
from rtl_gen.dataflow import generate_dataflow
from sim.simulate import SimulationMismatch
from tests.test_dataflow import _weight_layer

pytestmark = pytest.mark.hw


def micro_cnn() -> IntModel:
    """1x4x4 unsigned image → 3x3 conv to 2 channels (ReLU) → flatten → linear to 3."""
    x = InputLayer(name="x", inputs=(), shape=(1, 4, 4), out=ActFormat(8, False, 0))
    c1 = _weight_layer(
        Conv2dLayer, "c1", x, (2, 2, 2), (2, 1, 3, 3), 1, relu=True, stride=1, padding=0
    )
    flat = FlattenLayer(name="flat", inputs=("c1",), shape=(8,), out=c1.out)
    f = _weight_layer(LinearLayer, "f", flat, (3,), (3, 8), 3, relu=False, shift=4)
    return IntModel(layers=(x, c1, flat, f), output="f")


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("micro")
    save_package(micro_cnn(), directory / "pkg")
    generate_dataflow(directory / "pkg", directory / "rtl")
    return directory


@pytest.fixture(scope="module")
def implemented(micro: Path) -> dict[str, Any]:
    return implement_package(
        micro / "pkg",
        "ice40-up5k",
        rtl_dir=micro / "rtl",
        out_dir=micro / "impl",
        clock_mhz=12,
        cache_dir=micro / "cache",
    )


def _images(count: int) -> np.ndarray:
    x = np.random.default_rng(3).integers(0, 256, (count, 1, 4, 4))
    x[0] = 255
    return x


def test_small_top_on_ice40_end_to_end(micro: Path, implemented: dict[str, Any]) -> None:
    result = implemented
    bitstream = Path(result["bitstream"])
    assert bitstream.is_file() and bitstream.stat().st_size > 10_000  # an UP5K image
    assert Path(result["report"]).is_file() and (micro / "impl" / RESULTS_NAME).is_file()
    resources = result["resources"]
    assert resources["lut"] > 50 and resources["ff"] > 20 and resources["dsp"] == 0
    assert result["device_share"]["lut"] == resources["lut"] / 5280
    # nextpnr's logic cells hold the top's LUTs and the pin wrapper's
    cells = result["utilization"]["ICESTORM_LC"]["used"]
    assert cells >= max(resources["lut"], resources["ff"])
    assert result["logic_cells"] == {"cell": "ICESTORM_LC", "used": cells, "available": 5280,
                                     "share": cells / 5280}  # fmt: skip
    assert result["fmax_mhz"] > 0 and result["timing_met"] == (result["fmax_mhz"] >= 12)
    assert result["images_per_second"] == pytest.approx(result["fmax_mhz"] * 1e6 / 16)
    assert result["latency_us"] == pytest.approx(result["latency_cycles"] / result["fmax_mhz"])
    assert not result["cached"]
    again = implement_rtl(
        micro / "rtl",
        "ice40-up5k",
        clock_mhz=12,
        out_dir=micro / "again",
        cache_dir=micro / "cache",
    )
    assert again["cached"] and again["resources"] == resources
    assert again["logic_cells"] == result["logic_cells"]
    assert Path(again["bitstream"]).read_bytes() == bitstream.read_bytes()


def test_post_synthesis_netlist_is_bit_exact(micro: Path, implemented: dict[str, Any]) -> None:
    summary = check_netlist(micro / "pkg", micro / "rtl", implemented, images=_images(4))
    assert summary["samples"] == 4 and summary["mismatched_samples"] == 0
    assert summary["timing_matches_manifest"]


def test_a_faulty_netlist_is_caught(
    micro: Path, implemented: dict[str, Any], tmp_path: Path
) -> None:
    """Bit 0 of the first logit inverted in the netlist: every image mismatches."""
    text = Path(implemented["netlist"]).read_text()
    faulty, count = re.subn(
        r"assign o__payload\[(\d+):0\] = (.+?) ;",
        lambda m: f"assign o__payload[{m[1]}:0] = {m[2]} ^ {int(m[1]) + 1}'h1;",
        text,
        count=1,
    )
    assert count == 1
    (tmp_path / "netlist.v").write_text(faulty)
    broken = {**implemented, "netlist": str(tmp_path / "netlist.v")}
    with pytest.raises(SimulationMismatch, match="4 of 4 samples differ"):
        check_netlist(micro / "pkg", micro / "rtl", broken, images=_images(4))


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_device_and_foreign_rtl(
    micro: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(["implement", str(micro / "pkg"), "--device", "ice40-up9k"], capsys)
    assert code == 2 and err.count("\n") == 0 and "Unknown device 'ice40-up9k'" in err
    with pytest.raises(DeviceError):
        implement_rtl(micro / "rtl", "xc7a35t")
    with pytest.raises(ImplementError, match="positive frequency"):
        implement_rtl(micro / "rtl", "ice40-up5k", clock_mhz=0)
    with pytest.raises(ImplementError, match="placement seed"):
        implement_rtl(micro / "rtl", "ice40-up5k", seed=0)
    code, err = _cli(
        ["implement", str(micro / "pkg"), "--device", "ice40-up5k", "--seed", "0"], capsys
    )
    assert code == 2 and err.count("\n") == 0 and "placement seed (--seed) must be from 1" in err
    with pytest.raises(ImplementError, match="Cannot read the RTL in"):
        implement_rtl(tmp_path, "ice40-up5k")
    other = micro_cnn()
    save_package(IntModel(layers=other.layers[:2], output="c1"), tmp_path / "other")
    with pytest.raises(ImplementError, match="generated from another package"):
        implement_package(tmp_path / "other", "ice40-up5k", rtl_dir=micro / "rtl")


def test_missing_tool_and_timeout_are_one_line(
    micro: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ToolTimeout,
        match=r"^yosys on dataflow_shiftadd \(ice40-up5k\) did not finish within 0.01 s",
    ):
        implement_rtl(micro / "rtl", "ice40-up5k", cache_dir=tmp_path, timeout_s=0.01)
    monkeypatch.setitem(tools.TOOLS, "yosys", tools.Tool("inq-hw-no-such-yosys", install="x"))
    with pytest.raises(ToolNotFound, match="inq-hw-no-such-yosys not found") as caught:
        implement_rtl(micro / "rtl", "ice40-up5k", cache_dir=tmp_path)
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.iterdir())  # nothing half-written in the cache


def test_scripts_map_dsps_as_asked() -> None:
    from inq_hw.cost.synth import synth_script
    from inq_hw.implement.devices import DEVICES

    assert all("-dsp" not in line for line in synth_script("ice40", "t"))
    assert synth_script("ice40", "t", dsp=True)[0] == "synth_ice40 -top t -dsp -run :map_luts"
    assert synth_script("ecp5", "t", dsp=False)[0] == "synth_ecp5 -top t -nodsp -run :map_luts"
    assert synth_script("ecp5", "t", abc="full") == ["synth_ecp5 -top t"]
    assert any(line.startswith("abc -dress -lut 4") for line in synth_script("ecp5", "t"))
    assert {d.family for d in DEVICES.values()} == {"ice40", "ecp5"}
    assert DEVICES["ice40-up5k"].lut == 5280 and DEVICES["ecp5-85k"].lut == 83640


def test_a_top_too_large_is_refused_naming_a_device(
    micro: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UP5K shrunk to 300 LUTs: refused after synthesis, before place and route."""
    import dataclasses

    from inq_hw.implement import devices

    small = dataclasses.replace(devices.DEVICES["ice40-up5k"], lut=300)
    monkeypatch.setitem(devices.DEVICES, "ice40-up5k", small)
    message = r"does not fit ice40-up5k: it needs [\d,]+ LUT \(has 300\).*is ice40-hx8k; fold it"
    with pytest.raises(ImplementError, match=message):
        implement_rtl(micro / "rtl", "ice40-up5k", cache_dir=tmp_path, out_dir=tmp_path / "o")
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing cached, nothing written


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_vendor_cell_models_compile_in_icarus(family: str, tmp_path: Path) -> None:
    """The netlist check's cell models: every include inlined once (ECP5's models include
    cells_ff.vh from two files), no SystemVerilog left for Icarus's Verilog-2005."""
    import subprocess

    from inq_hw.implement.netlist import cell_models

    models = cell_models(family, tmp_path)
    assert "`include" not in models.read_text()
    done = subprocess.run(
        ["iverilog", "-g2005", "-o", str(tmp_path / "models.vvp"), str(models)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_pipeline_auto_gives_each_layer_the_stages_the_clock_needs(
    capsys: pytest.CaptureFixture[str],
    micro: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``implement --pipeline auto`` passes the delay model's stages per layer for the
    clock (more at a faster one); a bad N and auto with --fit are one-line errors."""
    from inq_hw.implement import flow
    from inq_hw.intmodel.package import load_package
    from rtl_gen.pipelining import pipeline_for_clock
    from tests.test_cli import assert_one_line_error, run

    seen: list[Any] = []

    def fake(package: Any, device: str, **options: Any) -> dict[str, Any]:
        seen.append(options["pipeline"])
        raise ImplementError("stopped before synthesis")

    monkeypatch.setattr(flow, "implement_package", fake)
    pkg = micro / "pkg"
    model = load_package(pkg)
    for clock in ("50", "180"):
        code, _, err = run(capsys, "implement", str(pkg), "--device", "ecp5-25k", "--pipeline",
                           "auto", "--clock-mhz", clock, "--out", str(tmp_path))  # fmt: skip
        assert_one_line_error(code, err, "stopped before synthesis")
        expected = pipeline_for_clock(model, clock_mhz=float(clock), family="ecp5", folding={})
        assert seen[-1] == expected
    assert sum(seen[1].values()) > sum(seen[0].values())
    code, _, err = run(capsys, "implement", str(pkg), "--device", "ecp5-25k",
                       "--pipeline", "two")  # fmt: skip
    assert_one_line_error(code, err, "Pipeline stages must be a non-negative integer")
    code, _, err = run(capsys, "implement", str(pkg), "--fit", "ecp5-25k",
                       "--pipeline", "auto")  # fmt: skip
    assert_one_line_error(code, err, "--pipeline auto chooses stages for a folding")


def test_the_placement_seed_reaches_nextpnr() -> None:
    from inq_hw.implement import flow
    from inq_hw.implement.devices import get_device

    args = flow._nextpnr_args(get_device("ecp5-85k"), 100.0, 7)
    assert args[args.index("--seed") + 1] == "7"
