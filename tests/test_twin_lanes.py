"""The multiplier twin's runtime-weight lanes at the twin's width ``k``: the folded dataflow
stages store ``k``-bit weights in their ROMs and multiply ``signed(k)`` operands, and the FPGA
model prices them at ``k`` bits; an 8-bit twin builds the design it always did.

The package is :func:`tests.test_dataflow.small_cnn` with its baseline re-rounded to ``k``
bits by :func:`inq_hw.intmodel.baseline.baseline_fields` (what ``export --twin`` carries).
"""

import dataclasses

import numpy as np
import pytest

from inq_hw.cost.fpga import liveness, top_features
from inq_hw.intmodel.arith import uniform_max
from inq_hw.intmodel.baseline import baseline_fields
from inq_hw.intmodel.layers import IntModel, WeightLayer
from rtl_gen.dataflow import build_dataflow
from rtl_gen.folded import FoldedDot
from tests.test_dataflow import check_top, small_cnn


def twin_cnn(bits: int) -> IntModel:
    """``small_cnn`` whose uniform twin has ``bits``-bit weights, rounded from its 8-bit
    twin's values (zero bias, as ``small_cnn``'s)."""
    model = small_cnn()
    layers = []
    for layer in model.layers:
        if isinstance(layer, WeightLayer):
            assert layer.baseline_weights is not None and layer.baseline_exp is not None
            src = model.layer(layer.inputs[0]).out
            fields = baseline_fields(
                np.ldexp(layer.baseline_weights.astype(np.float64), layer.baseline_exp),
                None,
                frac_in=src.frac,
                frac_out=layer.out.frac,
                input_max_abs=src.max_abs,
                zero_exp=layer.n2,
                bits=bits,
            )
            layer = dataclasses.replace(layer, **fields)
        layers.append(layer)
    return IntModel(layers=tuple(layers), output=model.output)


def _folded(top: object) -> list[FoldedDot]:
    dots = [getattr(stage.engine, "dot", None) for stage in top.stages]  # type: ignore[attr-defined]
    return [dot for dot in dots if isinstance(dot, FoldedDot)]


def test_the_twin_package_has_k_bit_weights() -> None:
    model = twin_cnn(4)
    for layer in model.weight_layers():
        assert layer.twin_bits == 4
        assert int(np.abs(layer.baseline_weights).max()) <= uniform_max(4)  # type: ignore[arg-type]


def test_folded_twin_is_k_bits_wide_and_bit_exact_under_stalls() -> None:
    model = twin_cnn(4)
    top = build_dataflow(model, baseline="mult8", folding={"c2": 2, "f1": 3})
    (c2, f1) = _folded(top)
    for dot in (c2, f1):
        assert dot.weight_bits == dot.code_bits == 4
        assert dot.weight_range == (-8, 7)
        assert dot.rom_width == dot.lanes * (dot.n_in * 4 + dot.bias_bits)
        rom = dot.elaborate(None).submodules.rom
        assert rom.shape.width == dot.rom_width
        assert all(word < 1 << dot.rom_width for word in dot.words)
    check_top(model, top, count=3, weights="baseline")


def test_an_8_bit_twin_keeps_8_bit_lanes() -> None:
    top = build_dataflow(small_cnn(), baseline="mult8", folding={"c2": 2})
    (c2,) = _folded(top)
    assert c2.weight_bits == c2.code_bits == 8 and c2.weight_range == (-128, 127)


def _lane_products(dot: FoldedDot, live_out: np.ndarray) -> int:
    """ROM positions (lane, input) holding a nonzero weight in some group: one product each."""
    weights = np.zeros((dot.fold * dot.lanes, dot.n_in), dtype=np.int64)
    weights[: dot.n_out] = np.where(live_out[:, None], dot.weights, 0)
    return int(np.any(weights.reshape(dot.fold, dot.lanes, dot.n_in) != 0, axis=0).sum())


@pytest.mark.parametrize("bits", [4, 8])
def test_fpga_model_prices_the_lanes_at_the_twin_width(bits: int) -> None:
    model = twin_cnn(bits)
    top = build_dataflow(model, baseline="mult8", folding={"c2": 2, "f1": 3})
    rows = top_features(top, model)
    mul = {layer: count.bits["mul"] for layer, _, fold, count in rows if fold > 1}
    lives = [live for stage, live in zip(top.stages, liveness(top), strict=True)
             if isinstance(getattr(stage.engine, "dot", None), FoldedDot)]  # fmt: skip
    assert set(mul) == {"c2", "f1"}
    for (name, got), dot, live in zip(mul.items(), _folded(top), lives, strict=True):
        # a lane product's partial products: input bits x the twin's k
        assert got == _lane_products(dot, live.out) * dot.in_format.bits * bits, name


@pytest.mark.parametrize("bits", [2, 5])
def test_folded_lane_refuses_weights_beyond_its_width(bits: int) -> None:
    top = uniform_max(bits)
    from inq_hw.intmodel.arith import ActFormat
    from rtl_gen.units import Requant

    kwargs = dict(
        bias=np.zeros(2, dtype=np.int64),
        in_format=ActFormat(bits=8, signed=True, frac=0),
        mode="multiply",
        requant=Requant(shift=0, relu=False, out=ActFormat(bits=16, signed=True, frac=0)),
        fold=2,
        weight_bits=bits,
    )
    FoldedDot(weights=np.array([[top, -top], [0, 1]]), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"{bits}-bit uniform"):
        FoldedDot(weights=np.array([[top + 1, 0], [0, 1]]), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 to 8"):
        FoldedDot(weights=np.array([[0, 0], [0, 1]]), **{**kwargs, "weight_bits": 9})  # type: ignore[arg-type]
