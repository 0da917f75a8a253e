"""The one description of the arithmetic: weight codes, requantisation constants, bounds,
and the hardware decode of a code (issue 13), plus the folded twin's 8-bit weight range."""

import numpy as np
import pytest
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.sim import Simulator, SimulatorContext

from inq_hw.errors import ConfigError
from inq_hw.intmodel import codes
from inq_hw.intmodel.arith import (
    ActFormat,
    abs_row_sums,
    bias_int,
    output_bounds,
    round_shift,
    rounding_constant,
    worst_case,
)
from rtl_gen.arith import code_term
from rtl_gen.folded import FoldedDot
from rtl_gen.units import Requant


@pytest.mark.parametrize("bits", range(2, 9))
def test_every_code_decodes_and_encodes_back(bits: int) -> None:
    top = min(codes.max_shift(bits), 62)  # weights_int is int64: 2**63 does not fit
    weights = [0] + [s * (1 << k) for k in range(top + 1) for s in (1, -1)]
    packed = np.array([codes.code_of_weight(w, bits) for w in weights], dtype=np.uint8)
    assert codes.weights_int(packed, bits).tolist() == weights
    assert [codes.weight_of_code(int(c), bits) for c in packed] == weights
    fields = codes.unpack(packed, bits)
    assert codes.encode(fields.zero, fields.sign, fields.index, bits).tolist() == packed.tolist()
    assert packed[0] == codes.zero_code(bits) == 1 << (bits - 1)


def test_codes_match_the_documented_layout() -> None:
    # 4 bits: zero << 3 | sign << 2 | index; shift = 3 - index.
    assert codes.weight_of_code(0b0000, 4) == 8
    assert codes.weight_of_code(0b0011, 4) == 1
    assert codes.weight_of_code(0b0111, 4) == -1
    assert codes.weight_of_code(0b0101, 4) == -4
    assert codes.weight_of_code(0b1000, 4) == 0


@pytest.mark.parametrize("bad", [[0b1001], [0b1100], [16]])
def test_malformed_codes_are_refused(bad: list[int]) -> None:
    with pytest.raises(ConfigError):
        codes.unpack(np.array(bad), 4)


def test_weight_abs_sums_are_exact_for_wide_spans() -> None:
    packed = np.array([[codes.code_of_weight(1 << 63, 8)] * 3 + [codes.zero_code(8)]])
    assert codes.weight_abs_sums(packed, 8).tolist() == [3 << 63]


def test_rounding_constant_and_bounds() -> None:
    assert [rounding_constant(s) for s in (-2, 0, 1, 5)] == [0, 0, 1, 16]
    assert round_shift(np.array([5, -5, 6]), 1).tolist() == [3, -2, 3]  # half up
    fmt = ActFormat(bits=8, signed=True, frac=0)
    assert output_bounds(fmt, relu=False) == (-128, 127)
    assert output_bounds(fmt, relu=True) == (0, 127)


def test_worst_case_and_bias() -> None:
    assert abs_row_sums(np.array([[1, -4], [0, 2]])) == [5, 2]
    assert worst_case([5, 2], np.array([-3, 100]), 10) == 120
    assert worst_case([], np.array([]), 10) == 0
    assert bias_int([0.75, -0.75, 0.5], 1) == [2, -1, 1]


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_hardware_code_term_matches_the_codes(bits: int) -> None:
    x, code = Signal(signed(6)), Signal(unsigned(bits))
    m = Module()
    term = code_term(x, code, bits)
    y = Signal(signed(6 + (1 << (bits - 2)) + 1))
    m.d.comb += y.eq(Mux(term.zero, 0, Mux(term.negative, -term.shifted, term.shifted)))
    mismatches: list[tuple[int, int]] = []

    async def bench(ctx: SimulatorContext) -> None:
        for c in range(1 << bits):
            if c >> (bits - 1) and c != codes.zero_code(bits):
                continue  # not a valid code
            for v in (-32, -1, 0, 3, 31):
                ctx.set(x, v)
                ctx.set(code, c)
                await ctx.delay(1e-9)
                if ctx.get(y) != v * codes.weight_of_code(c, bits):
                    mismatches.append((c, v))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert mismatches == []


def _folded(weights: list[list[int]]) -> FoldedDot:
    return FoldedDot(
        weights=np.array(weights),
        bias=np.zeros(2, dtype=np.int64),
        in_format=ActFormat(bits=8, signed=True, frac=0),
        mode="multiply",
        requant=Requant(shift=0, relu=False, out=ActFormat(bits=16, signed=True, frac=0)),
        fold=2,
    )


def _run_folded(dut: FoldedDot, x: list[int]) -> list[int]:
    got: list[int] = []

    async def bench(ctx: SimulatorContext) -> None:
        ctx.set(dut.i.payload, x)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(dut.fold + 2):
            if ctx.get(dut.o.valid):
                got.extend(int(v) for v in ctx.get(dut.o.payload))
                return
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_folded_twin_refuses_plus_128() -> None:
    """+128 does not fit 8 signed bits: stored as 0x80 the lane read it as -128, so
    [[128, 3], [1, 5]] · [1, 0] gave [-128, 1]."""
    with pytest.raises(ValueError, match="8-bit uniform"):
        _folded([[128, 3], [1, 5]])


def test_folded_twin_computes_the_8_bit_extremes() -> None:
    """The 8-bit uniform extremes ±127 (``uniform_max(8)``); -128 is no uniform weight."""
    assert _run_folded(_folded([[-127, 3], [127, 5]]), [1, 0]) == [-127, 127]
    with pytest.raises(ValueError, match="8-bit uniform"):
        _folded([[-128, 3], [127, 5]])
