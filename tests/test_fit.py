"""Fitting a dataflow top to a budget: the folding search against brute force, the
refusals, the resource model against synthesis (``hw``), and the timing model of an
unrolled convolution feeding a folded one (cycle for cycle against the RTL).

The search tests enumerate every folding of a small package (a convolution, a pooling, a
Linear layer: 30 foldings) and check the two claims of :func:`choose_folding`: no folding
that fits has a shorter interval, and no folding that reaches the frame rate has fewer
predicted LUTs.
"""

import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inq_hw import cli
from inq_hw.cost.errors import CostError
from inq_hw.cost.fpga import estimate_top, logic_cells
from inq_hw.cost.synth import jobs_from_manifest, synthesize
from inq_hw.implement.devices import DEVICES
from inq_hw.implement.fit import DEFAULT_MARGIN, FitError, choose_folding
from inq_hw.intmodel.arith import ActFormat
from inq_hw.intmodel.layers import (
    Conv2dLayer,
    FlattenLayer,
    InputLayer,
    IntModel,
    LinearLayer,
    MaxPoolLayer,
)
from inq_hw.intmodel.package import load_package, save_package
from rtl_gen.dataflow import build_dataflow, generate_dataflow
from tests.test_dataflow import _weight_layer, check_top, replay, small_cnn
from tests.test_implement import micro_cnn

U8 = ActFormat(8, False, 0)
#: The model and the search build tops they never elaborate (Amaranth warns of each).
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def fit_cnn() -> IntModel:
    """1x6x6 image → 3x3 conv to 8 channels (pad 1, ReLU) → max pool 2 → linear to 10:
    folding the Linear layer saves area, folding the convolution costs throughput."""
    x = InputLayer(name="x", inputs=(), shape=(1, 6, 6), out=U8)
    c1 = _weight_layer(
        Conv2dLayer, "c1", x, (8, 6, 6), (8, 1, 3, 3), 1, relu=True, stride=1, padding=1
    )
    p1 = MaxPoolLayer(name="p1", inputs=("c1",), shape=(8, 3, 3), out=c1.out, kernel=2, stride=2)
    flat = FlattenLayer(name="flat", inputs=("p1",), shape=(72,), out=c1.out)
    f = _weight_layer(LinearLayer, "f", flat, (10,), (10, 72), 3, relu=False, shift=4)
    return IntModel(layers=(x, c1, p1, flat, f), output="f")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fit")
    save_package(fit_cnn(), directory / "fitcnn")
    save_package(micro_cnn(), directory / "micro")
    save_package(small_cnn(), directory / "small")
    return directory


def _outputs(model: IntModel) -> dict[str, int]:
    return {layer.name: layer.codes.shape[0] for layer in model.weight_layers()}


@pytest.fixture(scope="module")
def every_folding(packages: Path) -> list[dict[str, Any]]:
    """Every folding of fit_cnn that gives distinct lanes: predicted resources on iCE40
    and the measured interval."""
    model = load_package(packages / "fitcnn")
    choices = {
        name: sorted({-(-n // lanes) for lanes in range(1, n + 1)})
        for name, n in _outputs(model).items()
    }
    rows = []
    for folds in itertools.product(*choices.values()):
        folding = dict(zip(choices, folds, strict=True))
        top = build_dataflow(model, folding=folding)
        estimate = estimate_top(top, model, "ice40")
        rows.append(
            {
                "folding": folding,
                "lut": estimate.lut,
                "ff": estimate.ff,
                "interval": top.timing().interval,
            }
        )
    return rows


def _fits(row: dict[str, Any], device: str, margin: float) -> bool:
    part = DEVICES[device]
    cells = logic_cells(row["lut"], row["ff"], part.family)
    return max(row["lut"], row["ff"], cells) <= margin * part.lut


def test_the_fit_has_the_shortest_interval_of_every_folding_that_fits(
    packages: Path, every_folding: list[dict[str, Any]]
) -> None:
    device = "ice40-hx8k"
    # iCE40's placed cells (LUT + FF) bind before the LUTs or the FFs alone
    cells = [logic_cells(row["lut"], row["ff"], "ice40") for row in every_folding]
    margins = sorted({n / DEVICES[device].lut for n in cells})
    assert len(margins) > 5
    for margin in margins[:: max(1, len(margins) // 6)]:
        if margin > 1:
            break
        fit = choose_folding(packages / "fitcnn", device, margin=margin)
        fitting = [row for row in every_folding if _fits(row, device, margin)]
        assert fit.interval_cycles == min(row["interval"] for row in fitting)
        assert fit.predicted["lut"] <= margin * DEVICES[device].lut
        chosen = next(row for row in every_folding if row["folding"] == fit.folding)
        assert (chosen["lut"], chosen["ff"]) == (fit.predicted["lut"], fit.predicted["ff"])
        assert chosen["interval"] == fit.interval_cycles


def _cells(row: dict[str, Any]) -> int:
    """The area the fit minimises on iCE40: placed logic cells."""
    return logic_cells(row["lut"], row["ff"], "ice40")


def test_fps_takes_the_least_area_that_reaches_it(
    packages: Path, every_folding: list[dict[str, Any]]
) -> None:
    clock, device, margin = 12.0, "ice40-hx8k", 1.0
    intervals = sorted({row["interval"] for row in every_folding})
    assert len(intervals) > 3
    for interval in intervals:
        fps = clock * 1e6 / interval
        fit = choose_folding(packages / "fitcnn", device, fps=fps, clock_mhz=clock, margin=margin)
        assert fit.images_per_second >= fps * (1 - 1e-9)
        reaching = [r for r in every_folding if r["interval"] <= interval and _fits(r, device, 1)]
        assert _cells(fit.predicted) == min(_cells(row) for row in reaching)
    slowest = choose_folding(packages / "fitcnn", device, fps=1, clock_mhz=clock, margin=margin)
    assert _cells(slowest.predicted) == min(_cells(row) for row in every_folding)


def test_nothing_fits_names_the_smallest_device_that_would(packages: Path) -> None:
    """The dataflow search's refusal (``arch="dataflow"``); by default the fit falls back
    to the shift-PE array (tests/test_implement_pe_array.py), here too."""
    with pytest.raises(FitError) as caught:
        choose_folding(packages / "fitcnn", "ice40-up5k", arch="dataflow")
    message = str(caught.value)
    assert message.startswith("No folding fits ice40-up5k at 85% of its LUTs, FFs and logic cells")
    assert re.search(r"needs [\d,]+ LUT, [\d,]+ FF, [\d,]+ logic cells \(predicted\)", message)
    named = re.search(r"the smallest device that holds it is (\S+)$", message)
    assert named, message
    assert choose_folding(packages / "fitcnn", named[1]).device == named[1]
    for smaller in (d for d in DEVICES.values() if d.lut < DEVICES[named[1]].lut):
        with pytest.raises(FitError):
            choose_folding(packages / "fitcnn", smaller.name, arch="dataflow")
    assert choose_folding(packages / "fitcnn", "ice40-up5k").arch == "pe-array"
    with pytest.raises(FitError, match=r"at 0% of its LUTs.*; none of the known devices holds it$"):
        choose_folding(packages / "micro", "ice40-up5k", margin=0.001, arch="dataflow")
    with pytest.raises(FitError, match=r"none of the known devices holds it; no shift-PE array"):
        choose_folding(packages / "micro", "ice40-up5k", margin=0.001)


def test_an_unreachable_frame_rate_names_the_highest_that_fits(packages: Path) -> None:
    fastest = choose_folding(packages / "fitcnn", "ecp5-85k", clock_mhz=12)
    with pytest.raises(FitError) as caught:
        choose_folding(packages / "fitcnn", "ecp5-85k", fps=1e9, clock_mhz=12)
    message = str(caught.value)
    assert message.startswith("1e+09 images/s at 12 MHz needs an interval of at most 0 cycles")
    assert f"gives {fastest.images_per_second:,.0f} images/s" in message
    assert f"(interval {fastest.interval_cycles:,} cycles)" in message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 0}, "frame rate must be a positive number"),
        ({"fps": True}, "frame rate must be a positive number"),
        ({"clock_mhz": -1}, "clock must be a positive frequency"),
        ({"margin": 1.5}, r"margin must be a fraction in \(0, 1\]"),
    ],
)
def test_bad_budgets_are_refused(packages: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(FitError, match=message):
        choose_folding(packages / "micro", "ice40-up5k", **kwargs)


def test_the_cli_refuses_in_one_line(packages: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--fit", "ice40-up5k", "--arch", "dataflow"], "the smallest device that holds it is"),
        (["--fit", "ecp5-25k", "--fps", "1e9"], "the fastest folding that fits ecp5-25k"),
        (["--fit", "ice40-up5k", "--fold", "all=2"], "--fit and --fps choose the folding"),
        (["--fit", "ice40-up5k", "--device", "ecp5-25k"], "name two devices"),
        (["--fps", "10"], "--device (or --fit DEVICE) is required"),
        (["--fit", "ice40-up9k"], "Unknown device 'ice40-up9k'"),
    ]
    for extra, message in cases:
        code = cli.main(["implement", str(packages / "fitcnn"), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and "Traceback" not in err
        assert message in err, err
    assert not list(packages.glob("fitcnn/implement-*"))  # nothing half-written


def test_help_states_the_margin(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["implement", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"at most --margin of it (default {DEFAULT_MARGIN:.0%}" in text


def conv_into_folded_conv() -> IntModel:
    """An unrolled convolution whose output goes straight to a folded one: the folded
    stage stalls the unrolled one, window by window."""
    x = InputLayer(name="x", inputs=(), shape=(1, 5, 5), out=U8)
    c1 = _weight_layer(
        Conv2dLayer, "c1", x, (3, 5, 5), (3, 1, 3, 3), 1, relu=True, stride=1, padding=1
    )
    c2 = _weight_layer(
        Conv2dLayer, "c2", c1, (2, 3, 3), (2, 3, 3, 3), 2, relu=True, shift=4, stride=1, padding=0
    )
    flat = FlattenLayer(name="flat", inputs=("c2",), shape=(18,), out=c2.out)
    f = _weight_layer(LinearLayer, "f", flat, (3,), (3, 18), 3, relu=False, shift=4)
    return IntModel(layers=(x, c1, c2, flat, f), output="f")


@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_an_unrolled_stage_stalled_by_a_folded_one_is_modelled_cycle_for_cycle(
    stall: float,
) -> None:
    """The control model once let a combinational dot stage take a window while its
    engine's output slot was full (losing it): the replay against the RTL catches that,
    and the interval is measured."""
    model = conv_into_folded_conv()
    top = build_dataflow(model, folding={"c2": 2})
    record = check_top(model, top, count=4, idle=0.0, stall=stall, seed=11)
    assert replay(top, record) == record["transfers"]
    if stall == 0.0:
        gave = [n for n, (_, out) in enumerate(record["transfers"]) if out]
        assert gave[-1] - gave[-2] == build_dataflow(model, folding={"c2": 2}).timing().interval


# --- the resource model against synthesis ---------------------------------------------------

TOLERANCE = 0.15


def _synthesised(
    package: Path, folding: dict[str, int], family: str, tmp: Path, line_buffer: str = "auto"
) -> Any:
    rtl = tmp / f"rtl-{'-'.join(f'{k}{v}' for k, v in folding.items()) or 'unrolled'}"
    generate_dataflow(package, rtl, folding=folding, line_buffer=line_buffer)
    (job,) = jobs_from_manifest(rtl)
    return synthesize(job, family, cache_dir=tmp / "synth", timeout_s=600)


@pytest.mark.hw
@pytest.mark.parametrize(
    ("name", "folding", "family"),
    [
        ("micro", {}, "ice40"),
        ("micro", {"c1": 2, "f": 3}, "ice40"),
        ("micro", {"f": 2}, "ecp5"),
        ("fitcnn", {"c1": 4, "f": 10}, "ice40"),
        ("fitcnn", {"c1": 2, "f": 5}, "ecp5"),
        ("small", {"c1": 2, "f2": 2}, "ice40"),
    ],
    ids=[
        "micro-unrolled-ice40",
        "micro-folded-ice40",
        "micro-folded-ecp5",
        "fitcnn-ice40",
        "fitcnn-ecp5-not-calibrated",
        "small-ice40-not-calibrated",
    ],
)
def test_predicted_luts_are_within_15_percent_of_synthesis(
    packages: Path, tmp_path: Path, name: str, folding: dict[str, int], family: str
) -> None:
    model = load_package(packages / name)
    predicted = estimate_top(build_dataflow(model, folding=folding), model, family)
    result = _synthesised(packages / name, folding, family, tmp_path)
    assert result.lut > 0
    assert abs(predicted.lut - result.lut) <= TOLERANCE * result.lut, (predicted.lut, result.lut)
    assert abs(predicted.ff - result.ff) <= TOLERANCE * result.ff, (predicted.ff, result.ff)


@pytest.mark.hw
@pytest.mark.parametrize(
    ("folding", "family"), [({}, "ice40"), ({"c2": 2}, "ecp5")], ids=["ice40", "ecp5"]
)
def test_line_buffers_in_memory_are_predicted_with_their_block_ram(
    packages: Path, tmp_path: Path, folding: dict[str, int], family: str
) -> None:
    """Every line buffer of the small CNN in a memory: c1's in 2 SB_RAM40_4K on iCE40
    (c2's 3 words Yosys keeps in flip-flops), both distributed RAM on ECP5; LUT and FF
    within 15%, block RAMs exact."""
    model = load_package(packages / "small")
    top = build_dataflow(model, folding=folding, line_buffer="bram")
    predicted = estimate_top(top, model, family)
    result = _synthesised(packages / "small", folding, family, tmp_path, line_buffer="bram")
    assert result.bram == predicted.bram == (2 if family == "ice40" else 0)
    assert abs(predicted.lut - result.lut) <= TOLERANCE * result.lut, (predicted.lut, result.lut)
    assert abs(predicted.ff - result.ff) <= TOLERANCE * result.ff, (predicted.ff, result.ff)


@pytest.mark.hw
def test_implement_fit_end_to_end_reports_prediction_beside_synthesis(
    packages: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "impl"
    code = cli.main(
        [
            "implement",
            str(packages / "micro"),
            "--fit",
            "ice40-up5k",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0
    result = json.loads((out / "implementation.json").read_text())
    fit, predicted, used = result["fit"], result["predicted"], result["resources"]
    assert fit["device"] == "ice40-up5k" and fit["margin"] == DEFAULT_MARGIN
    assert fit["interval_cycles"] == result["interval_cycles"]
    assert fit["predicted"]["lut"] == predicted["lut"]
    assert abs(predicted["lut"] - used["lut"]) <= TOLERANCE * used["lut"]
    assert predicted["error"]["lut"] == pytest.approx(
        (predicted["lut"] - used["lut"]) / used["lut"]
    )
    assert re.search(r"predicted [\d,]+ LUT / [\d,]+ FF against [\d,]+ / [\d,]+ synthesised", text)
    assert "fitted (most throughput, 85% of ice40-up5k)" in text
    assert np.isfinite(result["images_per_second"])


@pytest.mark.parametrize(
    ("family", "lut", "ff", "placed"),
    [
        ("ice40", 462, 242, 707),  # the test top with its pin wrapper, UP5K
        ("ice40", 723, 428, 1181),  # the same folded c1=2 f=3
        ("ice40", 6525, 5395, 12097),  # 2-bit digits-cnn, line buffers in block RAM, HX8K
        ("ecp5", 26081, 6378, 35475),  # 4-bit tiny_resnet, ECP5-45k
    ],
)
def test_logic_cells_are_near_what_nextpnr_placed(
    family: str, lut: int, ff: int, placed: int
) -> None:
    """The placed cells nextpnr reported for synthesised tops (README), within 5%."""
    assert abs(logic_cells(lut, ff, family) - placed) <= 0.05 * placed
    with pytest.raises(CostError):
        logic_cells(lut, ff, "gowin")
