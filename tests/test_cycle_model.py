"""The cycle model: exact against the RTL on several shapes, its counts, its speed, and the
exploration of the small ResNet in seconds."""

import dataclasses
import time

import numpy as np
import pytest
import torch

from inq_hw.cost.pe_array import estimate_area, estimate_energy, pe_op_energy
from inq_hw.intmodel import IntModel
from rtl_gen.pe_array import PEArray, simulate
from rtl_gen.pe_program import FLUSH_CYCLES, SETTLE_CYCLES, compile_program, fit_config
from sim.cycle_model import predict
from tests.test_pe_array import check_array, zoo_model


@pytest.fixture(scope="module")
def lenet() -> tuple[IntModel, np.ndarray]:
    return zoo_model("lenet5", 1, 16, 4)


@pytest.mark.integration  # LeNet-5 through the PE array RTL in Amaranth's simulator, 3 shapes
@pytest.mark.parametrize(("rows", "cols"), [(3, 2), (5, 3), (2, 7)])
def test_rtl_cycles_equal_the_model_on_several_shapes(
    lenet: tuple[IntModel, np.ndarray], rows: int, cols: int
) -> None:
    """LeNet-5 (valid 5x5 convolutions, three Linear layers) at odd shapes."""
    model, x = lenet
    check_array(model, x[:1], rows, cols)


def test_a_wrong_prediction_is_caught() -> None:
    """The cycle comparison can fail: the model of another shape predicts other cycles."""
    model, x = zoo_model("digits-cnn", 1, 8, 4, channels=[2, 2, 2])
    program = compile_program(model, fit_config(model, rows=2, cols=2))
    measured = simulate(PEArray(program), x[:1]).cycles[0]
    other = compile_program(model, fit_config(model, rows=2, cols=3))
    assert measured == predict(program).cycles != predict(other).cycles


def test_counts_of_a_convolution(lenet: tuple[IntModel, np.ndarray]) -> None:
    model, _ = lenet
    rows, cols = 4, 4
    report = predict(compile_program(model, fit_config(model, rows=rows, cols=cols)))
    conv1 = report.layers[0]
    # conv1: 1 -> 6 channels, 5x5 kernel, 16x16 -> 12x12, no padding.
    k, pixels, cout = 25, 144, 6
    tiles = -(-cout // cols) * -(-pixels // rows)
    assert conv1.cycles == 3 + tiles * (k + FLUSH_CYCLES) + cout * pixels + SETTLE_CYCLES
    assert conv1.macs == cout * pixels * k
    assert conv1.act_reads == -(-cout // cols) * pixels * k  # no padding: every tap read
    assert conv1.weight_reads == tiles * k
    assert conv1.act_writes == conv1.bias_reads == cout * pixels
    assert 0 < conv1.utilisation(rows * cols) <= 1
    assert report.layers[-1].kind == "end" and report.layers[-1].cycles == 2
    assert report.total("act_writes") == sum(
        int(np.prod(layer.shape)) for layer in model.layers[1:] if layer.kind != "flatten"
    )


def test_padding_reads_nothing() -> None:
    model, _ = zoo_model("digits-cnn", 1, 8, 4, channels=[2, 2, 2])
    report = predict(compile_program(model, fit_config(model, rows=2, cols=2)))
    conv1 = report.layers[0]
    # 8x8, 3x3, padding 1: 6x6 inner pixels see 9 taps, 24 edge pixels 6, 4 corners 4.
    assert conv1.act_reads == 36 * 9 + 24 * 6 + 4 * 4


def test_energy_and_area_follow_the_datapath(lenet: tuple[IntModel, np.ndarray]) -> None:
    model, _ = lenet
    shift = fit_config(model, rows=4, cols=4)
    mult = fit_config(model, rows=4, cols=4, pe="mult")
    assert pe_op_energy(mult) > pe_op_energy(shift)
    assert estimate_area(mult)["pes"] > estimate_area(shift)["pes"]
    narrow = dataclasses.replace(shift, weight_bits=3, acc_bits=shift.acc_bits - 2)
    assert pe_op_energy(narrow) < pe_op_energy(shift)
    energy = estimate_energy(predict(compile_program(model, shift)))
    assert energy["total"] == pytest.approx(sum(v for k, v in energy.items() if k != "total"))
    assert min(energy.values()) >= 0


@pytest.mark.slow  # a wall-clock ratio: meaningless on a loaded machine (benches/bench_pe_array)
def test_model_is_over_1000_times_faster_than_rtl_simulation(
    lenet: tuple[IntModel, np.ndarray],
) -> None:
    model, x = lenet
    program = compile_program(model, fit_config(model, rows=4, cols=4))
    start = time.perf_counter()
    simulate(PEArray(program), x[:1])
    rtl_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(20):
        predict(program)
    model_s = (time.perf_counter() - start) / 20
    assert rtl_s / model_s > 1000, (rtl_s, model_s)


@pytest.mark.slow  # a wall-clock bound
def test_resnet8_explores_in_seconds() -> None:
    from inq_hw.commands.explore import explore_model

    torch.manual_seed(0)
    model, _ = zoo_model("resnet8", 3, 32, 5)
    start = time.perf_counter()
    rows, notes = explore_model(model, [(2, 2), (4, 4), (8, 8), (16, 16)], [2, 3, 4, 5], 200.0)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, elapsed
    assert len(rows) == 4 * 5 and not notes
    cycles = [row["cycles"] for row in rows if row["pe"] == "shift" and row["compiled"]]
    assert cycles == sorted(cycles, reverse=True)  # more PEs, fewer cycles
    assert any(row["pareto"] for row in rows)
