"""The PE array's multiplier twin at the twin's width ``k``: :func:`fit_config` sizes the
weight lanes at the package's twin width, :func:`compile_program` refuses a twin weight
beyond the lanes' uniform range, the array runs a ``k``-bit twin bit-exact in Amaranth's
simulator with the cycle model's cycles, and the cost model prices ``k``-bit lanes; an
8-bit twin builds the array and the figures it always did.

The packages are :func:`tests.test_pe_array.odd_model` (strided padded conv, pool, ReLU,
Linear) with the uniform twin of one INQ step at ``k`` bits, lowered with ``twin_bits``
as ``export --twin`` lowers a trained uniform run.
"""

import dataclasses
import functools
import hashlib

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, Module

from inq_hw.commands.explore import explore_model
from inq_hw.cost.pe_array import estimate_area, estimate_energy, pe_op_energy
from inq_hw.cost.tables import HOROWITZ_45NM
from inq_hw.intmodel import IntModel, run
from inq_hw.intmodel.arith import uniform_max
from rtl_gen import pe_program
from rtl_gen.pe import MultMAC, mult_mac_min_acc_bits
from rtl_gen.pe_array import PEArray, simulate
from rtl_gen.pe_program import ArrayConfig, ProgramError, compile_program, fit_config, twin_bits
from sim.cycle_model import predict
from tests.test_pe_array import check_array, odd_model

#: The 8-bit twin of ``odd_model()`` on a 2×2 mult array, computed on main before the
#: lanes followed the twin (d0a6f10): Verilog ``sha256`` (``verilog.convert(PEArray(p),
#: name="top", emit_src=False)``; regenerate if Amaranth or Yosys changes; regenerated
#: when the array's write path, reads and controller gained their pipeline registers),
#: area µm² and energy pJ of :mod:`inq_hw.cost.pe_array`.
GOLDEN_8 = {
    "verilog_sha256": "c96d50b04f7b025e9fc24e0ec9543f7dfa2f2e53ef08196f44077f48aa5a3773",
    "weight_bits": 8,
    "acc_bits": 25,
    "pe_op": 0.61875,
    "area": {"pes": 3322.525, "drain_mux": 139.65, "memories": 3529.2, "total": 6991.375},
    "energy": {
        "pe": 767.25,
        "act_mem": 1305.0,
        "weight_mem": 775.0,
        "bias_mem": 187.5,
        "program_mem": 576.5625,
        "vector": 22.4002,
        "total": 3633.7127,
    },
}


@functools.cache
def odd_twin(bits: int | None) -> tuple[IntModel, np.ndarray]:
    """``odd_model`` with its ``bits``-bit uniform twin (``None``: the 8-bit one)."""
    return odd_model(twin_bits=bits)


def _mult(model: IntModel, rows: int = 2, cols: int = 2) -> ArrayConfig:
    return fit_config(model, rows=rows, cols=cols, pe="mult")


def _elaborated(array: PEArray) -> Module:
    """The array's top module, every part of it elaborated (so none is left unused)."""
    Fragment.get(array, None)
    top = array.elaborate(None)
    Fragment.get(top, None)
    return top


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_lanes_are_as_wide_as_the_twin(bits: int) -> None:
    model, _ = odd_twin(bits)
    assert {layer.twin_bits for layer in model.weight_layers()} == {bits} == {twin_bits(model)}
    program = compile_program(model, _mult(model))
    cfg = program.config
    assert cfg.weight_bits == bits
    assert all(0 <= word < 1 << (cfg.cols * bits) for word in program.weight_words)
    top = _elaborated(PEArray(program))
    mem, pe = top.submodules["weight_mem"], top.submodules["pe_0_0"]
    assert mem.shape.width == cfg.cols * bits
    assert isinstance(pe, MultMAC) and pe.weight_bits == len(pe.i_weight) == bits


@pytest.mark.parametrize("bits", [2, 4])
def test_k_bit_twin_bit_exact_with_the_predicted_cycles(bits: int) -> None:
    model, images = odd_twin(bits)
    check_array(model, images, 2, 3, pe="mult")


def test_an_8_bit_twin_builds_what_it_always_did() -> None:
    model, _ = odd_twin(None)
    assert all(layer.baseline_bits is None for layer in model.weight_layers())
    assert twin_bits(model) == 8
    program = compile_program(model, _mult(model))
    cfg = program.config
    text = verilog.convert(PEArray(program), name="top", emit_src=False)
    assert hashlib.sha256(text.encode()).hexdigest() == GOLDEN_8["verilog_sha256"]
    assert (cfg.weight_bits, cfg.acc_bits) == (GOLDEN_8["weight_bits"], GOLDEN_8["acc_bits"])
    assert pe_op_energy(cfg) == pytest.approx(GOLDEN_8["pe_op"], rel=1e-12)
    assert estimate_area(cfg) == pytest.approx(GOLDEN_8["area"], rel=1e-12)
    assert estimate_energy(predict(program)) == pytest.approx(GOLDEN_8["energy"], rel=1e-12)


def test_cost_model_prices_the_lanes_at_the_twin_width() -> None:
    fitted = {bits: _mult(odd_twin(bits)[0]) for bits in (2, 3, 4, 8)}
    areas = [estimate_area(cfg) for cfg in fitted.values()]
    assert [cfg.weight_bits for cfg in fitted.values()] == [2, 3, 4, 8]
    for key in ("pes", "memories", "total"):
        assert [a[key] for a in areas] == sorted(a[key] for a in areas), key
        assert areas[0][key] < areas[-1][key], key
    ops = [pe_op_energy(cfg) for cfg in fitted.values()]
    assert ops == sorted(ops) and ops[0] < ops[-1]
    # With all else equal, a PE differs by its multiplier (∝ act_bits · k) alone.
    wide = fitted[8]
    for bits in (2, 3, 4):
        narrow = dataclasses.replace(wide, weight_bits=bits)
        mult = [HOROWITZ_45NM.area("int_mult", wide.act_bits, k) for k in (8, bits)]
        pes = wide.rows * wide.cols
        saved = estimate_area(wide)["pes"] - estimate_area(narrow)["pes"]
        assert saved == pytest.approx(pes * (mult[0] - mult[1]))


def test_a_twin_weight_beyond_the_lanes_is_refused() -> None:
    model, _ = odd_twin(4)
    fitted = _mult(model)
    wide = mult_mac_min_acc_bits(act_bits=fitted.act_bits, weight_bits=8)
    compile_program(model, dataclasses.replace(fitted, weight_bits=8, acc_bits=wide))  # holds it
    narrow = dataclasses.replace(fitted, weight_bits=3)
    conv = model.weight_layers()[0].baseline_weights_int()
    worst = int(conv.ravel()[np.argmax(np.abs(conv.ravel()))])
    assert abs(worst) > uniform_max(3)
    with pytest.raises(
        ProgramError,
        match=rf"^Layer 'conv': twin weight {worst} does not fit the array's 3-bit "
        r"multiplier lanes \(uniform, \|w\| <= 3\)$",
    ):
        compile_program(model, narrow)
    eight, _ = odd_twin(None)
    with pytest.raises(ProgramError, match="does not fit the array's 4-bit multiplier lanes"):
        compile_program(eight, dataclasses.replace(_mult(eight), weight_bits=4))
    with pytest.raises(ValueError, match="Multiplier weight width must be an integer from 2 to 8"):
        dataclasses.replace(fitted, weight_bits=9)


def test_without_the_refusal_narrow_lanes_compute_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the refusal prevents: the 4-bit twin's weights masked to 3-bit lanes wrap
    (4 is read as -4), and the array's outputs differ from the golden executor's."""
    model, images = odd_twin(4)
    monkeypatch.setattr(pe_program, "_check_lanes", lambda layer, config: None)
    narrow = dataclasses.replace(_mult(model), weight_bits=3)
    result = simulate(PEArray(compile_program(model, narrow)), images[:1])
    golden = run(model, images[:1], weights="baseline")
    assert isinstance(golden, np.ndarray)
    assert not np.array_equal(result.outputs, golden.reshape(1, -1))


def test_explore_rows_the_twin_at_its_width() -> None:
    """``inq-hw explore``'s multiplier row of a 4-bit twin package: 4-bit lanes, cheaper
    than the 8-bit twin's at the same schedule."""
    rows = {
        bits: explore_model(odd_twin(bits)[0], [(2, 2)], None, 200.0)[0][-1] for bits in (4, None)
    }
    assert [(row["pe"], row["weight_bits"]) for row in rows.values()] == [("mult", 4), ("mult", 8)]
    assert rows[4]["cycles"] == rows[None]["cycles"]
    assert rows[4]["area_mm2"] < rows[None]["area_mm2"]
    assert rows[4]["energy_nj"] < rows[None]["energy_nj"]
