"""The uniform twin at equal bit-width: uniform k-bit weights trained by the same incremental
re-training as the power-of-two ones, carried in the package as its baseline and priced and
built as the multiplier twin.

Checked: the grid's arithmetic against Python fractions; the quantizer freezes uniform
weights on their grid through optimizer steps and resumes; lowering carries the trained
weights exactly; the golden executor, the multiplier unit and the dataflow twin agree bit
for bit; the cost model prices k-bit multipliers; the flow and the sweep report compare the
two formats; every bad combination is a one-line error.
"""

import dataclasses
import json
import math
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator
from torch import nn

from inq_hw.checkpoint import load_checkpoint, save_checkpoint
from inq_hw.cost.analytic import analyze
from inq_hw.driver import load_model, run_inq, verify_inq_checkpoint
from inq_hw.errors import ConfigError
from inq_hw.flow import FlowConfig
from inq_hw.inq import IncrementalQuantizer, INQConfig
from inq_hw.intmodel import IntModel, load_package, quantize_input, run, save_package
from inq_hw.intmodel.arith import uniform_max
from inq_hw.intmodel.baseline import baseline_fields, uniform_exponent, uniform_round
from inq_hw.lower import lower_checkpoint
from inq_hw.quant import is_uniform_grid, quantize_uniform
from inq_hw.report.sweep import compare_formats, summarize
from inq_hw.train import TrainConfig
from rtl_gen.generate import build_designs
from tests.conftest import Cli

# --- the grid ---------------------------------------------------------------------------------


def _ref_exponent(m: Fraction, bits: int) -> int:
    top = 2 ** (bits - 1) - 1
    e = -200
    while m / Fraction(2) ** e > top:
        e += 1
    return e


@pytest.mark.parametrize("bits", range(2, 9))
def test_exponent_is_the_smallest_step_that_fits(bits: int) -> None:
    rng = random.Random(bits)
    values = [rng.uniform(1e-4, 10.0) for _ in range(200)]
    top = uniform_max(bits)
    values += [float(top), top + 2.0**-30, float(2 * top), top / 2.0, 2.0**-20 * top]
    for value in values:
        assert uniform_exponent(value, bits) == _ref_exponent(Fraction(value), bits), value


def test_rounding_is_half_up_exact_and_clipped() -> None:
    v = np.array([0.5, -0.5, 1.5, -1.5, 2.5 - 2**-40, 3.4, -3.6, 9.0, -9.0])
    assert uniform_round(v, 0, 3).tolist() == [1, 0, 2, -1, 2, 3, -3, 3, -3]
    assert uniform_round(v * 4, 2, 3).tolist() == [1, 0, 2, -1, 2, 3, -3, 3, -3]
    assert uniform_round(np.array([0.49, 0.5, -0.51]), 0, 2).tolist() == [0, 1, -1]
    assert uniform_max(2) == 1 and uniform_max(8) == 127
    for bad in (1, 9, 2.0, True):
        with pytest.raises(ConfigError, match="2 to 8 bits"):
            uniform_max(bad)  # type: ignore[arg-type]


def test_tensor_quantizer_is_the_grid() -> None:
    w = torch.randn(64, dtype=torch.float32) * 0.3
    for bits in (2, 3, 5):
        e = uniform_exponent(float(w.abs().max()), bits)
        q = quantize_uniform(w, bits, e)
        assert q.dtype == w.dtype and q.shape == w.shape
        expected = uniform_round(w.double().numpy(), e, bits) * 2.0**e
        assert np.array_equal(q.double().numpy(), expected)
        assert is_uniform_grid(q, bits, e)
        assert not is_uniform_grid(q + 2.0 ** (e - 1), bits, e)
        # the largest weight is never clipped: the step fits it
        assert float(q.abs().max()) == pytest.approx(float(w.abs().max()), abs=2.0 ** (e - 1))


def test_the_8_bit_twin_is_the_same_grid() -> None:
    w = np.random.default_rng(0).normal(size=(4, 9)) * 0.2
    eight = baseline_fields(w, None, frac_in=4, frac_out=3, input_max_abs=255, zero_exp=-6)
    assert "baseline_bits" not in eight  # packages with the 8-bit twin read as before
    e = uniform_exponent(float(np.abs(w).max()), 8)
    assert eight["baseline_exp"] == e
    assert np.array_equal(eight["baseline_weights"], uniform_round(w, e, 8))
    three = baseline_fields(w, None, frac_in=4, frac_out=3, input_max_abs=255, zero_exp=-6, bits=3)
    assert three["baseline_bits"] == 3 and np.abs(three["baseline_weights"]).max() in (2, 3)
    with pytest.raises(ConfigError, match="not on a 3-bit uniform grid"):
        baseline_fields(
            w, None, frac_in=4, frac_out=3, input_max_abs=255, zero_exp=-6, bits=3, on_grid=True
        )


# --- the quantizer ----------------------------------------------------------------------------


def test_config_keeps_power_of_two_dicts_as_before() -> None:
    assert "weight_format" not in INQConfig(bits=4).to_dict()
    uniform = INQConfig(bits=4, weight_format="uniform")
    assert uniform.to_dict()["weight_format"] == "uniform"
    assert INQConfig.from_dict(uniform.to_dict()) == uniform
    with pytest.raises(ConfigError, match="Weight format must be one of"):
        INQConfig(weight_format="fixed")


def test_uniform_weights_freeze_on_their_grid_and_stay() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    inq = IncrementalQuantizer(
        model, INQConfig(bits=3, schedule=(0.5, 1.0), weight_format="uniform")
    )
    steps = {layer.name: layer.n1 for layer in inq}
    for name, module in model.named_children():
        if isinstance(module, nn.Linear):
            assert steps[name] == uniform_exponent(float(module.weight.detach().abs().max()), 3)
    x, y = torch.randn(32, 12), torch.randint(0, 3, (32,))
    while not inq.done:
        inq.advance()
        frozen = [layer.weight.detach()[layer.frozen].clone() for layer in inq]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
        with inq.attached(optimizer):
            for _ in range(3):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
        for layer, before in zip(inq, frozen, strict=True):
            assert torch.equal(layer.weight.detach()[layer.frozen], before)
        assert inq.check()
    for layer in inq:
        assert bool(layer.frozen.all()) and is_uniform_grid(layer.weight, 3, layer.n1)
    # resuming rebuilds the same state from the weights; a po2 config refuses it
    state = inq.state_dict()
    again = IncrementalQuantizer(
        model, INQConfig(bits=3, schedule=(0.5, 1.0), weight_format="uniform")
    )
    again.load_state_dict(state)
    assert again.step == inq.step and again.check()
    with pytest.raises(ConfigError, match="different config"):
        IncrementalQuantizer(model, INQConfig(bits=3, schedule=(0.5, 1.0))).load_state_dict(state)


# --- one uniform INQ run of the tiny digits-cnn and its package --------------------------------


@pytest.fixture(scope="module")
def uniform_inq(tiny_fp32: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uniform 4-bit twin of ``tiny_inq``: the same FP32 model, schedule and epochs."""
    out = tmp_path_factory.mktemp("uniform") / "uniform4.pt"
    summary = run_inq(
        tiny_fp32,
        INQConfig(bits=4, schedule=(0.5, 1.0), weight_format="uniform"),
        TrainConfig(epochs=1, lr=0.05, batch_size=128),
        out,
    )
    assert summary["weight_format"] == "uniform"
    assert summary["verified_weights"] == verify_inq_checkpoint(out) > 0
    return out


@pytest.fixture(scope="module")
def twin_model(tiny_inq: Path, uniform_inq: Path) -> IntModel:
    return lower_checkpoint(tiny_inq, twin=uniform_inq)


def test_the_package_carries_the_trained_weights_exactly(
    twin_model: IntModel, uniform_inq: Path
) -> None:
    float_twin, _ = load_model(load_checkpoint(uniform_inq, kinds=("inq",)))
    assert twin_model.meta["baseline"]["weight_bits"] == 4
    assert twin_model.meta["baseline"]["source"]["weight_format"] == "uniform"
    for layer in twin_model.weight_layers():
        assert layer.twin_bits == layer.baseline_bits == 4
        assert layer.baseline_weights is not None and layer.baseline_exp is not None
        assert int(np.abs(layer.baseline_weights).max()) <= 7
        module = float_twin.get_submodule(layer.name)
        assert isinstance(module, nn.Conv2d | nn.Linear)
        trained = module.weight.detach().double().numpy()
        assert np.array_equal(
            np.ldexp(layer.baseline_weights.astype(np.float64), layer.baseline_exp), trained
        )
        # the power-of-two side is the po2 run's, untouched by the twin
        assert layer.bits == 4


def test_the_integer_twin_follows_its_float_model(twin_model: IntModel, uniform_inq: Path) -> None:
    float_twin, data = load_model(load_checkpoint(uniform_inq, kinds=("inq",)))
    x = quantize_input(data.test.x.numpy(), twin_model.input.out)
    logits = run(twin_model, x, weights="baseline")
    assert isinstance(logits, np.ndarray)
    with torch.no_grad():
        floating = float_twin.eval()(data.test.x).argmax(dim=1).numpy()
    agreement = float((logits.argmax(axis=1) == floating).mean())
    accuracy = float((logits.argmax(axis=1) == data.test.y.numpy()).mean())
    print(f"\nuniform 4-bit twin: integer {accuracy:.4f}, agreement with float {agreement:.4f}")
    assert agreement >= 0.97


def test_package_round_trip_keeps_the_width(twin_model: IntModel, tmp_path: Path) -> None:
    save_package(twin_model, tmp_path / "pkg")
    back = load_package(tmp_path / "pkg")
    for ours, theirs in zip(twin_model.weight_layers(), back.weight_layers(), strict=True):
        assert theirs.baseline_bits == 4
        assert np.array_equal(ours.baseline_weights, theirs.baseline_weights)  # type: ignore[arg-type]
    entries = json.loads((tmp_path / "pkg" / "model.json").read_text())["layers"]
    assert all(e.get("baseline_bits") == 4 for e in entries if "baseline_exp" in e)


def test_layer_refuses_a_width_its_weights_do_not_have(
    twin_model: IntModel, tiny_package: Path
) -> None:
    layer = twin_model.weight_layers()[0]
    with pytest.raises(ConfigError, match="baseline_bits: A uniform weight has 2 to 8 bits"):
        dataclasses.replace(layer, baseline_bits=9)
    with pytest.raises(ConfigError, match="largest 2-bit baseline weight magnitude"):
        dataclasses.replace(layer, baseline_bits=2)
    eight = load_package(tiny_package).weight_layers()[0]
    assert eight.baseline_bits is None and eight.twin_bits == 8
    with pytest.raises(ConfigError, match="largest 4-bit baseline weight"):
        dataclasses.replace(eight, baseline_bits=4)
    bare = dataclasses.replace(
        eight,
        baseline_weights=None,
        baseline_bias=None,
        baseline_exp=None,
        baseline_shift=None,
        baseline_acc_bits=None,
    )
    with pytest.raises(ConfigError, match="baseline_bits without a baseline"):
        dataclasses.replace(bare, baseline_bits=4)


def test_the_multiplier_unit_is_bit_exact(twin_model: IntModel) -> None:
    (design,) = build_designs(twin_model, unit="layer:classifier.fc", stages=1, baseline="mult8")
    assert design.params["mode"] == "multiply" and design.params["weight_bits"] == 4
    x = np.random.default_rng(1).integers(
        twin_model.input.out.lo, twin_model.input.out.hi + 1, (6, *twin_model.input.shape)
    )
    trace = run(twin_model, x, trace=True, weights="baseline")
    assert isinstance(trace, dict)
    inputs, expected = trace["classifier.flatten"], trace["classifier.fc"]
    fmt = twin_model.layer("classifier.flatten").out
    extremes = np.array([[fmt.hi] * inputs.shape[1], [fmt.lo] * inputs.shape[1]])
    inputs = np.concatenate([inputs, extremes])
    layer = twin_model.layer("classifier.fc")
    expected = np.concatenate([expected, _golden_layer(twin_model, layer, extremes)])
    unit = design.component
    seen: list[list[int]] = []

    async def bench(ctx: Any) -> None:
        for row in inputs:
            ctx.set(unit.i_data, [int(v) for v in row])
            await ctx.tick()
            seen.append([int(v) for v in ctx.get(unit.o_data)])

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(np.array(seen), expected)


def _golden_layer(model: IntModel, layer: Any, x: np.ndarray) -> np.ndarray:
    from inq_hw.intmodel.arith import requantize

    twin = layer.arithmetic("baseline")
    acc = x @ twin.weights.reshape(len(twin.bias), -1).T + twin.bias
    return requantize(acc, shift=twin.shift, relu=layer.relu, out=layer.out)


@pytest.mark.integration
def test_the_dataflow_twin_is_bit_exact_under_stalls(twin_model: IntModel) -> None:
    from rtl_gen.dataflow import build_dataflow
    from tests.test_dataflow import check_top

    top = build_dataflow(twin_model, baseline="mult8", folding={"features.conv2": 2})
    check_top(twin_model, top, count=2, weights="baseline")


def test_cost_prices_the_twin_at_its_width(twin_model: IntModel, tiny_package: Path) -> None:
    eight, four = analyze(load_package(tiny_package)), analyze(twin_model)
    weights = sum(layer.codes.size for layer in twin_model.weight_layers())
    assert four.total("mult8").weight_bits == 4 * weights
    assert eight.total("mult8").weight_bits == 8 * weights
    # the same po2 design; the narrower twin's runtime multipliers are smaller
    assert four.total("shift-add").energy_pj == eight.total("shift-add").energy_pj
    assert four.total("mult8").pe_mac_area_um2 < eight.total("mult8").pe_mac_area_um2


# --- refusals ---------------------------------------------------------------------------------


def test_export_refuses_wrong_twins(
    cli: Cli, tiny_inq: Path, uniform_inq: Path, tmp_path: Path
) -> None:
    code, _, err = cli(
        "export", str(tiny_inq), "--twin", str(tiny_inq), "--out", str(tmp_path / "a")
    )
    assert code == 2 and "is a power-of-two INQ run" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("export", str(uniform_inq), "--out", str(tmp_path / "b"))
    assert code == 2 and "holds uniform weights" in err and len(err.strip().splitlines()) == 1
    other = load_checkpoint(uniform_inq, kinds=("inq",))
    other["source"] = {**other["source"], "sha256": "0" * 64}
    save_checkpoint(other, tmp_path / "other.pt")
    code, _, err = cli(
        "export", str(tiny_inq), "--twin", str(tmp_path / "other.pt"), "--out", str(tmp_path / "c")
    )
    assert code == 2 and "another FP32 checkpoint" in err
    assert not any((tmp_path / name).exists() for name in "abc")
    code, _, _ = cli(
        "export", str(tiny_inq), "--twin", str(uniform_inq), "--out", str(tmp_path / "d")
    )
    assert code == 0 and load_package(tmp_path / "d").weight_layers()[0].twin_bits == 4


def test_lowering_refuses_twin_bits_without_a_model() -> None:
    from inq_hw.lower import lower_model

    with pytest.raises(ConfigError, match="twin_bits needs the twin's model"):
        lower_model(nn.Linear(2, 2), torch.zeros(1, 2), bits=4, n1={}, twin_bits=4)


def test_flow_config_names_the_twin_kinds() -> None:
    assert FlowConfig().twin == "uniform8"
    assert FlowConfig(twin="uniform").twin == "uniform"
    with pytest.raises(ConfigError, match="twin must be one of"):
        FlowConfig(twin="uniform4")


# --- the sweep report's comparison ------------------------------------------------------------


def _entry(bits: int, po2: float, uniform: float, lut: tuple[int, int]) -> dict[str, Any]:
    return {
        "bits": bits,
        "accuracy": {"inq": po2, "integer": po2},
        "twin": {"kind": "uniform", "weight_bits": bits, "inq": uniform, "integer": uniform},
        "cost": {"ice40": {"lut": {"shift_add": lut[0], "mult8": lut[1]}}},
    }


def test_sweep_pairs_each_seed_with_its_twin() -> None:
    points = [
        {
            "name": f"p{seed}",
            "group": "g",
            "axes": {"bits": 3, "seed": seed},
            "results": {"fp32": {"accuracy": 0.98}, "bits": [_entry(3, po2, uni, lut)]},
        }
        for seed, po2, uni, lut in ((0, 0.95, 0.93, (100, 300)), (1, 0.97, 0.96, (110, 330)))
    ]
    designs = {d["design"]: d for d in summarize(points)}
    assert set(designs) == {"g po2", "g uniform"}
    assert designs["g uniform"]["accuracy"]["mean"] == pytest.approx(0.945)
    assert designs["g uniform"]["figures"]["lut_ice40"]["mean"] == 315
    (row,) = compare_formats(points)
    assert row["gap"]["mean"] == pytest.approx(0.015) and row["gap"]["n"] == 2
    assert row["advantage"]["lut_ice40"]["mean"] == pytest.approx(3.0)
    assert math.isclose(row["po2"]["mean"], 0.96)


@pytest.mark.hw
def test_flow_trains_prices_and_reports_the_twin(tmp_path: Path) -> None:
    from inq_hw.flow import run_flow

    cfg = FlowConfig(
        model_args={"channels": [4, 8, 8]},
        bits=(3,),
        fp32_epochs=4,
        inq_epochs=1,
        samples=2,
        skip_synthesis=True,
        skip_implementation=True,
        targets=("analytic",),
        twin="uniform",
        name="twin",
    )
    lines: list[str] = []
    results = run_flow(cfg, out=tmp_path / "runs", report=tmp_path / "report", echo=lines.append)
    assert any("INQ uniform 3-bit twin: done" in line for line in lines)
    (entry,) = results["bits"]
    assert "uniform8" not in results
    twin = entry["twin"]
    assert twin["kind"] == "uniform" and twin["weight_bits"] == 3
    package = load_package(entry["paths"]["package"])
    assert all(layer.twin_bits == 3 for layer in package.weight_layers())
    weights = entry["weights"]
    assert weights["baseline_memory_bits"] == 3 * weights["count"]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "3-bit uniform, INQ-trained (multiplier twin)" in markdown
    assert f"{100 * twin['integer']:.2f}%" in markdown
    # the same flow again reads every stage back, the twin's INQ run included
    lines.clear()
    run_flow(cfg, out=tmp_path / "runs", report=tmp_path / "again", echo=lines.append)
    assert all(": cached" in line for line in lines if line.startswith("["))
