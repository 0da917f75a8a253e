# amaranth: UnusedElaboratable=no
"""ShiftMAC and MultMAC in Amaranth's simulator against their Python models, every cycle."""

import random
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from inq_hw.quant import compute_n2, decode_codes, unpack_codes
from rtl_gen.pe import (
    MultMAC,
    ShiftMAC,
    decode_weight_code,
    mult_mac_min_acc_bits,
    mult_mac_reference,
    shift_mac_min_acc_bits,
    shift_mac_reference,
)

#: One cycle's inputs: (activation, weight code or weight, valid, clear).
Cycle = tuple[int, int, int, int]

CODE_BITS = [2, 3, 4, 5, 6]
ACT_FORMATS = [(2, False), (2, True), (5, False), (8, True), (8, False), (16, True), (16, False)]


def _act_range(act_bits: int, act_signed: bool) -> tuple[int, int]:
    if act_signed:
        return -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    return 0, (1 << act_bits) - 1


def _acc_range(acc_bits: int) -> tuple[int, int]:
    return -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1


def _simulate(dut: Any, weight_port: str, cycles: list[Cycle]) -> list[int]:
    """``o_acc`` after each clock edge, one cycle of inputs per edge (initial value first)."""
    observed: list[int] = []

    async def bench(ctx: Any) -> None:
        observed.append(ctx.get(dut.o_acc))
        for act, weight, valid, clear in cycles:
            ctx.set(dut.i_act, act)
            ctx.set(getattr(dut, weight_port), weight)
            ctx.set(dut.i_valid, valid)
            ctx.set(dut.i_clear, clear)
            await ctx.tick()
            observed.append(ctx.get(dut.o_acc))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return observed


def _check_shift_mac(dut: ShiftMAC, cycles: list[Cycle]) -> list[int]:
    acts, codes, valids, clears = (list(column) for column in zip(*cycles, strict=True))
    expected = shift_mac_reference(
        codes, acts, valids, clears, weight_bits=dut.weight_bits, acc_bits=dut.acc_bits
    )
    observed = _simulate(dut, "i_code", cycles)
    assert observed == [0, *expected]
    return expected


def _check_mult_mac(dut: MultMAC, cycles: list[Cycle]) -> list[int]:
    acts, weights, valids, clears = (list(column) for column in zip(*cycles, strict=True))
    expected = mult_mac_reference(weights, acts, valids, clears, acc_bits=dut.acc_bits)
    observed = _simulate(dut, "i_weight", cycles)
    assert observed == [0, *expected]
    return expected


def _random_cycles(
    rng: random.Random, n: int, act_range: tuple[int, int], weight: Callable[[], int]
) -> list[Cycle]:
    """Random stream; a fifth of the activations at an extreme, new sums now and then."""
    lo, hi = act_range
    cycles = []
    for _ in range(n):
        act = rng.choice((lo, hi)) if rng.random() < 0.2 else rng.randint(lo, hi)
        cycles.append((act, weight(), int(rng.random() < 0.8), int(rng.random() < 0.1)))
    return cycles


def _extreme_cycles(products: list[tuple[int, int, int]], acc_bits: int) -> list[Cycle]:
    """For each ``(act, weight, product)``: a new sum, then the product again, as often as
    the accumulator holds it (the next one would overflow) for the products of at least
    half the largest magnitude, twice more for the others; then a hold and a clear-only
    cycle."""
    lo, hi = _acc_range(acc_bits)
    largest = max(abs(product) for _, _, product in products)
    cycles: list[Cycle] = []
    for act, weight, product in products:
        count = 3
        if 2 * abs(product) >= largest:
            count = (hi if product > 0 else -lo) // abs(product)
            assert count >= 2 and not lo <= (count + 1) * product <= hi
        cycles += [(act, weight, 1, 1)] + [(act, weight, 1, 0)] * (count - 1)
        cycles += [(act, weight, 0, 0), (act, weight, 0, 1)]
    return cycles


# --- the Python models --------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(2, 9))
def test_decode_weight_code_matches_inq_codes(bits: int) -> None:
    """w_int = 2**(e - n2) of every canonical code, as ``inq_hw.quant`` decodes it."""
    codes = [c for c in range(1 << bits) if c >> (bits - 1) == 0] + [1 << (bits - 1)]
    n1 = 3
    values = decode_codes(unpack_codes(torch.tensor(codes), bits=bits, n1=n1), torch.float64)
    expected = [int(v) for v in (values * 2.0 ** -compute_n2(n1, bits)).tolist()]
    assert [decode_weight_code(c, bits) for c in codes] == expected
    assert decode_weight_code(0, bits) == 1 << ((1 << (bits - 2)) - 1)  # index 0: 2**(n1-n2)


def test_decode_weight_code_rejects_wide_code() -> None:
    with pytest.raises(ValueError, match=r"not 16$"):
        decode_weight_code(16, 4)


def test_references_known_answers() -> None:
    # 4-bit codes: +2**3, -2**0, zero (with stray sign/index bits), -2**2.
    codes, acts = [0b0000, 0b0111, 0b1101, 0b0101], [3, 3, 3, -5]
    assert shift_mac_reference(
        codes, acts, [1, 1, 1, 1], [1, 0, 0, 0], weight_bits=4, acc_bits=16
    ) == [24, 21, 21, 41]
    # Hold, clear-only, load on clear, and wrapping at acc_bits.
    assert mult_mac_reference(
        [5, 5, 5, 5, 100], [3, 3, 3, 3, 2], [1, 0, 0, 1, 1], [0, 0, 1, 1, 0], acc_bits=8
    ) == [15, 15, 0, 15, -41]


# --- ShiftMAC -----------------------------------------------------------------------------


@pytest.mark.parametrize("weight_bits", CODE_BITS)
@pytest.mark.parametrize(("act_bits", "act_signed"), ACT_FORMATS)
def test_shift_mac_random(weight_bits: int, act_bits: int, act_signed: bool) -> None:
    rng = random.Random(1000 * weight_bits + 10 * act_bits + act_signed)
    acc_bits = shift_mac_min_acc_bits(act_bits=act_bits, weight_bits=weight_bits) + 3
    dut = ShiftMAC(
        act_bits=act_bits, act_signed=act_signed, weight_bits=weight_bits, acc_bits=acc_bits
    )
    max_index = (1 << (weight_bits - 2)) - 1

    def code() -> int:  # any code, non-canonical zeros included; a fifth at index 0
        if rng.random() < 0.2:
            return rng.randint(0, 1) << (weight_bits - 2)
        return rng.randrange(1 << weight_bits)

    cycles = _random_cycles(rng, 150, _act_range(act_bits, act_signed), code)
    expected = _check_shift_mac(dut, cycles)
    # The stream does reach sums of both signs, larger than half the largest product.
    product_max = max(map(abs, _act_range(act_bits, act_signed))) << max_index
    assert min(expected) < 0 < max(expected)
    assert max(map(abs, expected)) >= product_max // 2


@pytest.mark.parametrize("weight_bits", CODE_BITS)
@pytest.mark.parametrize(("act_bits", "act_signed"), ACT_FORMATS)
@pytest.mark.parametrize("guard", [0, 2])
def test_shift_mac_extremes(weight_bits: int, act_bits: int, act_signed: bool, guard: int) -> None:
    acc_bits = shift_mac_min_acc_bits(act_bits=act_bits, weight_bits=weight_bits) + guard
    dut = ShiftMAC(
        act_bits=act_bits, act_signed=act_signed, weight_bits=weight_bits, acc_bits=acc_bits
    )
    sign_bit, zero_code = 1 << (weight_bits - 2), 1 << (weight_bits - 1)
    products = [
        (act, code, act * decode_weight_code(code, weight_bits))
        for act in _act_range(act_bits, act_signed)
        for code in (0, sign_bit, sign_bit | (sign_bit - 1), zero_code)  # ±max, -min, zero
    ]
    cycles = _extreme_cycles(products, acc_bits)
    expected = _check_shift_mac(dut, cycles)
    acts, codes, valids, clears = zip(*cycles, strict=True)
    exact = shift_mac_reference(codes, acts, valids, clears, weight_bits=weight_bits, acc_bits=99)
    assert expected == exact  # the worst case fits: nothing wrapped
    if act_signed and guard == 0:  # the narrowest accumulator reaches its most negative value
        assert min(expected) == _acc_range(acc_bits)[0]


# --- MultMAC ------------------------------------------------------------------------------


@pytest.mark.parametrize("weight_bits", [2, 8, 12])
@pytest.mark.parametrize(("act_bits", "act_signed"), ACT_FORMATS)
def test_mult_mac_random(weight_bits: int, act_bits: int, act_signed: bool) -> None:
    rng = random.Random(2000 * weight_bits + 10 * act_bits + act_signed)
    acc_bits = mult_mac_min_acc_bits(act_bits=act_bits, weight_bits=weight_bits) + 3
    dut = MultMAC(
        act_bits=act_bits, act_signed=act_signed, weight_bits=weight_bits, acc_bits=acc_bits
    )
    w_lo, w_hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1

    def weight() -> int:
        return rng.choice((w_lo, w_hi)) if rng.random() < 0.2 else rng.randint(w_lo, w_hi)

    cycles = _random_cycles(rng, 150, _act_range(act_bits, act_signed), weight)
    expected = _check_mult_mac(dut, cycles)
    assert min(expected) < 0 < max(expected) and len(set(expected)) > 5


@pytest.mark.parametrize(("act_bits", "act_signed"), ACT_FORMATS)
@pytest.mark.parametrize("guard", [0, 2])
def test_mult_mac_extremes(act_bits: int, act_signed: bool, guard: int) -> None:
    acc_bits = mult_mac_min_acc_bits(act_bits=act_bits, weight_bits=8) + guard
    dut = MultMAC(act_bits=act_bits, act_signed=act_signed, acc_bits=acc_bits)
    products = [
        (act, w, act * w) for act in _act_range(act_bits, act_signed) for w in (-128, 127, -1, 1, 0)
    ]
    cycles = _extreme_cycles(products, acc_bits)
    expected = _check_mult_mac(dut, cycles)
    acts, weights, valids, clears = zip(*cycles, strict=True)
    assert expected == mult_mac_reference(weights, acts, valids, clears, acc_bits=99)


# --- construction and export --------------------------------------------------------------


def test_ports() -> None:
    dut = ShiftMAC(act_bits=8, act_signed=False, weight_bits=4, acc_bits=20)
    assert dut.i_act.shape() == unsigned(8)
    assert dut.i_code.shape() == unsigned(4)
    assert dut.o_acc.shape() == signed(20)
    twin = MultMAC(act_bits=8, act_signed=True, acc_bits=20)
    assert twin.i_act.shape() == signed(8)
    assert twin.i_weight.shape() == signed(8)
    assert twin.o_acc.shape() == signed(20)
    assert {"i_valid", "i_clear"} <= set(dut.signature.members) & set(twin.signature.members)


SHIFT_OK = {"act_bits": 8, "act_signed": True, "weight_bits": 4, "acc_bits": 17}
MULT_OK = {"act_bits": 8, "act_signed": True, "weight_bits": 8, "acc_bits": 17}


@pytest.mark.parametrize(
    ("component", "good", "name", "value", "error"),
    [
        (ShiftMAC, SHIFT_OK, "act_bits", 1, ValueError),
        (ShiftMAC, SHIFT_OK, "act_bits", 17, ValueError),
        (ShiftMAC, SHIFT_OK, "act_bits", "8", TypeError),
        (ShiftMAC, SHIFT_OK, "act_bits", True, TypeError),
        (ShiftMAC, SHIFT_OK, "act_signed", 1, TypeError),
        (ShiftMAC, SHIFT_OK, "weight_bits", 1, ValueError),
        (ShiftMAC, SHIFT_OK, "weight_bits", 9, ValueError),
        (ShiftMAC, SHIFT_OK, "weight_bits", 4.0, TypeError),
        (ShiftMAC, SHIFT_OK, "acc_bits", 12, ValueError),  # 8 + 3 + 2 = 13 needed
        (ShiftMAC, SHIFT_OK, "acc_bits", 17.0, TypeError),
        (MultMAC, MULT_OK, "act_bits", 0, ValueError),
        (MultMAC, MULT_OK, "act_signed", None, TypeError),
        (MultMAC, MULT_OK, "weight_bits", 17, ValueError),
        (MultMAC, MULT_OK, "acc_bits", 16, ValueError),
        (MultMAC, MULT_OK, "acc_bits", None, TypeError),
    ],
)
def test_constructor_validation(
    component: type, good: dict[str, Any], name: str, value: object, error: type
) -> None:
    with pytest.raises(error, match=f"not {re.escape(repr(value))}$"):
        component(**{**good, name: value})


def test_minimum_accumulator_width() -> None:
    assert shift_mac_min_acc_bits(act_bits=8, weight_bits=4) == 8 + 3 + 2
    assert mult_mac_min_acc_bits(act_bits=8, weight_bits=8) == 17
    ShiftMAC(act_bits=8, act_signed=True, weight_bits=4, acc_bits=13)
    with pytest.raises(ValueError, match=r"at least 13, not 12$"):
        ShiftMAC(act_bits=8, act_signed=True, weight_bits=4, acc_bits=12)
    with pytest.raises(TypeError):
        ShiftMAC(8, True, 4, 13)  # type: ignore[call-arg]


def _operators(text: str) -> str:
    """Verilog without attributes, comments and ``@*``: what is left of ``*`` multiplies."""
    text = re.sub(r"\(\*.*?\*\)|/\*.*?\*/|//[^\n]*", "", text, flags=re.DOTALL)
    return text.replace("@*", "")


def test_verilog_shift_mac_has_no_multiplier() -> None:
    for weight_bits in CODE_BITS:
        dut = ShiftMAC(act_bits=8, act_signed=True, weight_bits=weight_bits, acc_bits=40)
        text = verilog.convert(dut, name="shift_mac", emit_src=False)
        assert "module shift_mac" in text
        assert ("<<" in text) == (weight_bits > 2)  # the barrel shifter
        assert "*" not in _operators(text)


def test_verilog_mult_mac_has_a_multiplier() -> None:
    dut = MultMAC(act_bits=8, act_signed=False, acc_bits=20)
    text = verilog.convert(dut, name="mult_mac", emit_src=False)
    assert "module mult_mac" in text
    assert " * " in _operators(text)
