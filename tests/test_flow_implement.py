"""The flow's implementation stage: each bit-width's simulated top (and its mult8 twins)
placed and routed on the flow's device, cached per design with the time it was computed
in, a twin too large for the device recorded as refused; its options on the command line.

The stage tests run Yosys, nextpnr and icepack on the small top of tests/test_implement.py
(a 1x4x4 image, one 3x3 convolution, one linear layer), folded, on an iCE40 UP5K.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inq_hw.errors import ConfigError
from inq_hw.flow import FlowConfig, _implementation, _rtl, _Runner
from inq_hw.implement.devices import DeviceError
from inq_hw.intmodel.package import save_package
from inq_hw.report import render_report
from tests.test_flow_cli import _parser
from tests.test_report import make_results, md_tables

CONFIG = FlowConfig(
    folding={"all": 2},
    implement_device="ice40-up5k",
    implement_clock_mhz=12.0,
    implement_designs=("shift_add", "mult8"),
)


def _stages(out: Path, lines: list[str]) -> tuple[dict[str, Any], _Runner, Path]:
    """The rtl and implementation stages of one bit-width, as the flow runs them."""
    runner = _Runner(out, total=3, echo=lines.append)
    package = out / "package"
    rtl = runner.run("generate RTL 4-bit", "rtl", {"package": "micro"}, _rtl(CONFIG, package))
    part = _implementation(CONFIG, runner, 4, (package, "micro"), rtl)
    return part, runner, rtl[1]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[str]]:
    from tests.test_implement import micro_cnn

    out = tmp_path_factory.mktemp("flow")
    save_package(micro_cnn(), out / "package" / "pkg")
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INQ_HW_CACHE", str(out / "cache"))  # the tools run, nothing cached
        part, _, _ = _stages(out, lines)
    return out, part, lines


@pytest.mark.hw
def test_stage_implements_the_simulated_top(staged: tuple[Path, dict[str, Any], list[str]]):
    out, part, lines = staged
    assert (part["device"], part["clock_mhz"]) == ("ice40-up5k", 12.0)
    assert part["device_resources"] == {"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8}
    (rtl_stage,) = (out / "stages").glob("rtl-*")
    rtl = json.loads((rtl_stage / "result.json").read_text())
    assert part["folding"] == rtl["folding"] == {"c1": 2, "f": 2}
    top = part["designs"]["shift_add"]
    stage = Path(top["bitstream"]).parent
    written = json.loads((stage / "implementation.json").read_text())
    # the simulated top itself: the rtl stage's Verilog, not a regenerated one
    assert written["top"] == "dataflow_shiftadd" and not (stage / "rtl").exists()
    assert Path(top["bitstream"]).stat().st_size > 10_000
    for key in ("resources", "device_share", "fmax_mhz", "timing_met", "images_per_second"):
        assert top[key] == written[key], key
    assert top["interval_cycles"] == rtl["interval_cycles"]
    assert top["us_per_image"] == pytest.approx(top["interval_cycles"] / top["fmax_mhz"])
    assert top["resources"]["lut"] > 50 and set(top["tool_seconds"]) == {"synth", "pnr", "pack"}
    assert any(line.startswith("    nextpnr-ice40 on dataflow_shiftadd") for line in lines)


@pytest.mark.hw
def test_a_twin_too_large_for_the_device_is_recorded_as_refused(
    staged: tuple[Path, dict[str, Any], list[str]],
) -> None:
    _, part, lines = staged
    refused = part["designs"]["mult8"]["refused"]
    assert refused.startswith("dataflow_mult8 does not fit ice40-up5k: it needs ")
    assert "DSP (has 8)" in refused
    assert sum("implement mult8 twin DSP 4-bit: done in" in line for line in lines) == 1


@pytest.mark.hw
def test_cached_rerun_keeps_the_stage_times(
    staged: tuple[Path, dict[str, Any], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, part, _ = staged

    def recomputed(*args: Any, **kwargs: Any) -> None:
        pytest.fail("a cached implementation ran again")

    monkeypatch.setattr("inq_hw.implement.flow.implement_package", recomputed)
    lines: list[str] = []
    again, runner, _ = _stages(out, lines)
    assert again == part
    labels = ("implement shift-add 4-bit", "implement mult8 twin DSP 4-bit")
    for label, design in zip(labels, ("shift_add", "mult8"), strict=True):
        assert runner.seconds[label] == part["designs"][design]["seconds"] > 0
    assert sum(": cached (computed in" in line for line in lines) == 3


@pytest.mark.hw
def test_report_shows_the_stage_results(
    staged: tuple[Path, dict[str, Any], list[str]], tmp_path: Path
) -> None:
    _, part, _ = staged
    results = make_results()
    for entry in results["bits"]:
        entry.pop("implementation", None)
    results["bits"][2]["implementation"] = part
    render_report(results, tmp_path)
    rows = md_tables((tmp_path / "report.md").read_text())["Whole network on an FPGA"]
    top = part["designs"]["shift_add"]
    assert [(row["bits"], row["design"]) for row in rows] == [
        ("4", "shift-add"),
        ("4", "mult8 twin, DSP"),
    ]
    assert rows[0]["LUT4"] == f"{top['resources']['lut']:,}"
    assert rows[0]["Fmax (MHz)"] == f"{top['fmax_mhz']:.1f}"
    assert rows[1]["LUT4"] == "does not fit"
    assert (tmp_path / "throughput.png").is_file()


def test_implementation_flags_reach_the_config() -> None:
    from inq_hw.commands.flow import config_from_args

    args = _parser("flow").parse_args(
        [
            "--implement-device",
            "ecp5-45k",
            "--implement-clock-mhz",
            "33",
            "--implement-designs",
            "shift_add,mult8_lut",
        ]
    )
    config = config_from_args(args)
    assert (config.implement_device, config.implement_clock_mhz) == ("ecp5-45k", 33.0)
    assert config.implement_designs == ("shift_add", "mult8_lut")
    assert not config.skip_implementation
    skipped = config_from_args(_parser("flow").parse_args(["--skip-implementation"]))
    assert skipped.skip_implementation


def test_bad_implementation_options_are_refused() -> None:
    with pytest.raises(DeviceError, match="Unknown device 'ecp5-12k'; known: ice40-up5k"):
        FlowConfig(implement_device="ecp5-12k")
    with pytest.raises(ConfigError, match="implement_clock_mhz must be a positive number"):
        FlowConfig(implement_clock_mhz=0)
    with pytest.raises(ConfigError, match=r"among .* not \('mult4',\)"):
        FlowConfig(implement_designs=("mult4",))
    with pytest.raises(ConfigError, match="distinct"):
        FlowConfig(implement_designs=("mult8", "mult8"))
    for stages in (-1, 17, True, 1.5):
        with pytest.raises(ConfigError, match="implement_pipeline must be an integer from 0"):
            FlowConfig(implement_pipeline=stages)  # type: ignore[arg-type]


def test_bad_device_on_the_command_line_is_one_line() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "inq_hw",
            "flow",
            "--implement-device",
            "nosuch",
            "--out",
            "/nonexistent/x",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Unknown device 'nosuch'" in done.stderr


def test_stage_count_includes_each_implemented_design() -> None:
    from inq_hw.flow import _stage_count

    designs = len(FlowConfig().implement_designs)
    base = _stage_count(FlowConfig(skip_implementation=True))
    assert FlowConfig().implemented_bits() == (2,)  # the smallest bit-width of the run
    assert _stage_count(FlowConfig()) == base + designs
    assert _stage_count(FlowConfig(implement_bits="all")) == base + 4 * designs
    assert FlowConfig(bits=(3, 5), implement_bits=(5,)).implemented_bits() == (5,)
    assert FlowConfig(implement_bits="all", skip_implementation=True).implemented_bits() == ()


def test_implement_bits_flag() -> None:
    from inq_hw.commands.flow import config_from_args

    for text, expected in (("all", "all"), ("smallest", "smallest"), ("2,4", (2, 4))):
        args = _parser("flow").parse_args(["--implement-bits", text])
        assert config_from_args(args).implement_bits == expected
    with pytest.raises(ConfigError, match=r"some of the bit-widths \[2, 3, 4, 5\], not \(7,\)"):
        FlowConfig(implement_bits=(7,))
    with pytest.raises(ConfigError, match="not 'most'"):
        FlowConfig(implement_bits="most")


@pytest.mark.hw
def test_fit_chooses_each_tops_folding(tmp_path: Path) -> None:
    """``implement_fit``: each top at the folding ``choose_folding`` gives it for the device
    (not the simulated ``--fold``), or recorded as refused with the fit's reason."""
    from inq_hw.implement.fit import FitError, choose_folding
    from tests.test_implement import micro_cnn

    save_package(micro_cnn(), tmp_path / "package" / "pkg")
    cfg = CONFIG.replace(implement_fit=True, implement_designs=("shift_add", "mult8"))
    lines: list[str] = []
    runner = _Runner(tmp_path, total=3, echo=lines.append)
    rtl = runner.run(
        "generate RTL 4-bit", "rtl", {"package": "micro"}, _rtl(cfg, tmp_path / "package")
    )
    part = _implementation(cfg, runner, 4, (tmp_path / "package", "micro"), rtl)
    assert part["fit"] is True and runner.done == 3
    chosen: dict[str, dict[str, int]] = {}
    for design, baseline, dsp in (("shift_add", None, None), ("mult8", "mult8", True)):
        figures = part["designs"][design]
        try:
            fit = choose_folding(
                tmp_path / "package" / "pkg",
                "ice40-up5k",
                clock_mhz=12.0,
                baseline=baseline,
                dsp=dsp,
            )
        except FitError as error:
            assert figures == {"refused": str(error)}
            assert any(f": not run: {error}" in line for line in lines)
            continue
        chosen[design] = dict(fit.folding)
        assert figures["interval_cycles"] == fit.interval_cycles
        assert Path(figures["bitstream"]).stat().st_size > 10_000
    assert "shift_add" in chosen  # the micro top fits the UP5K unrolled or folded
    assert chosen["shift_add"] != rtl[0]["folding"]  # not the simulated --fold
    recorded = part.get("foldings") or dict.fromkeys(chosen, part.get("folding"))
    assert recorded == chosen


@pytest.mark.hw
def test_a_pipelined_implementation_is_generated_afresh(tmp_path: Path) -> None:
    """``implement_pipeline``: the top placed and routed is the pipelined one (its
    manifest's latency, longer than the simulated top's), not the simulated RTL."""
    from tests.test_implement import micro_cnn

    save_package(micro_cnn(), tmp_path / "package" / "pkg")
    cfg = CONFIG.replace(implement_pipeline=1, implement_designs=("shift_add",))
    lines: list[str] = []
    runner = _Runner(tmp_path, total=2, echo=lines.append)
    rtl = runner.run(
        "generate RTL 4-bit", "rtl", {"package": "micro"}, _rtl(cfg, tmp_path / "package")
    )
    part = _implementation(cfg, runner, 4, (tmp_path / "package", "micro"), rtl)
    figures = part["designs"]["shift_add"]
    assert part["pipeline"] == 1 and figures["timing_met"]
    assert figures["latency_cycles"] > rtl[0]["latency_cycles"]
    assert Path(figures["bitstream"]).stat().st_size > 10_000
