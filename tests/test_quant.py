"""The power-of-two quantizer against a literal, scalar reading of the paper's Eq. 4."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inq_hw.errors import ConfigError
from inq_hw.quant import (
    check_bits,
    compute_n1,
    compute_n2,
    decode_codes,
    is_po2_grid,
    pack_codes,
    po2_codes,
    quantize_po2,
    unpack_codes,
)


def reference_n1(s: float) -> int:
    """floor(log2(4s/3)) in exact rational arithmetic."""
    x = Fraction(s) * 4 / 3
    n = 0
    while Fraction(2) ** (n + 1) <= x:
        n += 1
    while Fraction(2) ** n > x:
        n -= 1
    return n


def reference_quantize(w: float, bits: int, n1: int) -> float:
    """Eq. 4 read literally, level by level, plus the documented clip at 2**n1."""
    n2 = n1 + 1 - 2 ** (bits - 2)
    a = Fraction(abs(w))
    levels = [Fraction(2) ** e for e in range(n2, n1 + 1)]
    for i, beta in enumerate(levels):
        alpha = levels[i - 1] if i else Fraction(0)
        if (alpha + beta) / 2 <= a < 3 * beta / 2:
            return math.copysign(float(beta), w)
    if a >= 3 * levels[-1] / 2:
        return math.copysign(float(levels[-1]), w)
    return 0.0


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)


@given(st.floats(min_value=1e-30, max_value=1e30, allow_nan=False, allow_infinity=False))
def test_n1_is_exact(s: float) -> None:
    assert compute_n1(s) == reference_n1(s)


@pytest.mark.parametrize("e", range(-20, 21))
def test_n1_when_four_thirds_s_is_a_power_of_two(e: int) -> None:
    # 4s/3 = 2**e exactly: the case a float logarithm gets wrong.
    s = 3 * 2.0**e / 4
    assert compute_n1(s) == e
    # and the largest weight then quantizes to 2**e, never to 0
    assert quantize_po2(torch.tensor([s], dtype=torch.float64), 5).item() == 2.0**e


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=64), st.integers(2, 8))
def test_matches_eq4_elementwise(values: list[float], bits: int) -> None:
    w = torch.tensor(values, dtype=torch.float32)
    n1 = compute_n1(float(w.abs().max())) if float(w.abs().max()) > 0 else 0
    expected = torch.tensor(
        [reference_quantize(float(v), bits, n1) for v in w], dtype=torch.float32
    )
    assert torch.equal(quantize_po2(w, bits), expected)


@settings(max_examples=40, deadline=None)
@given(st.lists(finite, min_size=1, max_size=64), st.integers(2, 8), st.integers(-12, 6))
def test_every_value_on_grid_with_fixed_n1(values: list[float], bits: int, n1: int) -> None:
    q = quantize_po2(torch.tensor(values), bits, n1=n1)
    assert is_po2_grid(q, bits, n1)
    expected = [reference_quantize(v, bits, n1) for v in torch.tensor(values).tolist()]
    assert q.tolist() == expected


def test_thresholds_and_ties() -> None:
    # bits=4, n1=0: levels 1, 1/2, 1/4, 1/8; n2=-3; zero below 2**-4.
    n1, bits = 0, 4
    cases = {
        2.0**-4: 2.0**-3,  # lower threshold of the smallest level: tie goes up
        2.0**-4 - 2.0**-30: 0.0,
        3 * 2.0**-4: 2.0**-2,  # (1/8 + 1/4)/2: tie goes to the larger level
        3 * 2.0**-4 - 2.0**-30: 2.0**-3,
        1.5 - 2.0**-30: 1.0,
        1.5: 1.0,  # past 3·2**n1/2: clipped to 2**n1 (the literal Eq. 4 would give 0)
        100.0: 1.0,
        0.0: 0.0,
    }
    w = torch.tensor(list(cases), dtype=torch.float64)
    assert quantize_po2(w, bits, n1=n1).tolist() == list(cases.values())
    assert quantize_po2(-w, bits, n1=n1).tolist() == [-v if v else 0.0 for v in cases.values()]


def test_shape_dtype_device_preserved() -> None:
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        w = torch.randn(3, 4, 5, 5).to(dtype)
        q = quantize_po2(w, 5)
        assert q.shape == w.shape and q.dtype == dtype and q.device == w.device
    assert quantize_po2(torch.randn(0), 3).shape == (0,)


def test_input_not_modified() -> None:
    w = torch.randn(100)
    before = w.clone()
    quantize_po2(w, 3)
    assert torch.equal(w, before)


def test_all_zero_tensor_gives_zero_codes() -> None:
    codes = po2_codes(torch.zeros(4, 3), 5)
    assert (
        bool(codes.zero.all()) and not bool(codes.sign.any()) and int(codes.index.abs().sum()) == 0
    )
    assert torch.equal(quantize_po2(torch.zeros(4, 3), 5), torch.zeros(4, 3))


def test_codes_round_trip_and_packing() -> None:
    torch.manual_seed(0)
    w = torch.randn(1000) * 0.1
    for bits in range(2, 9):
        codes = po2_codes(w, bits)
        assert codes.n2 == compute_n2(codes.n1, bits)
        assert int(codes.index.min()) >= 0 and int(codes.index.max()) < 2 ** (bits - 2)
        assert torch.equal(decode_codes(codes), quantize_po2(w, bits))
        packed = pack_codes(codes)
        assert int(packed.max()) < 2**bits
        assert torch.equal(
            decode_codes(unpack_codes(packed, bits=bits, n1=codes.n1)), decode_codes(codes)
        )


def test_ternary_levels() -> None:
    w = torch.tensor([0.9, -0.9, 0.3, -0.2, 0.0])
    q = quantize_po2(w, 2)
    n1 = compute_n1(0.9)
    assert set(q.abs().unique().tolist()) <= {0.0, 2.0**n1}


def test_eight_bit_tiny_levels_are_exact() -> None:
    # n2 = n1 - 63 for 8 bits: levels far below float32's normal range need float64.
    w = torch.tensor([1.0, 2.0**-60, 2.0**-70], dtype=torch.float32)
    q = quantize_po2(w, 8)
    assert q.dtype == torch.float32
    assert q.tolist() == [1.0, 2.0**-60, 0.0]


@pytest.mark.parametrize("bits", [1, 9, 0, -3, 2.5, "4", True, None])
def test_bad_bits(bits: object) -> None:
    with pytest.raises(ConfigError, match="Bit-width must be an integer from 2 to 8"):
        check_bits(bits)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_rejected(bad: float) -> None:
    with pytest.raises(ConfigError, match="finite"):
        quantize_po2(torch.tensor([0.5, bad]), 4)


def test_wrong_types_rejected() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        quantize_po2(torch.tensor([1, 2]), 4, n1=0)
    with pytest.raises(TypeError, match="n1 must be an int"):
        quantize_po2(torch.tensor([1.0]), 4, n1=1.5)  # type: ignore[arg-type]


def test_unpack_rejects_malformed_codes() -> None:
    with pytest.raises(ConfigError, match="zero code"):
        unpack_codes(torch.tensor([0b1001]), bits=4, n1=0)
    with pytest.raises(ConfigError, match="lie in"):
        unpack_codes(torch.tensor([16]), bits=4, n1=0)


def test_grid_check_can_fail() -> None:
    assert not is_po2_grid(torch.tensor([0.3]), 4, 0)
    assert not is_po2_grid(torch.tensor([2.0]), 4, 0)  # above 2**n1
    assert not is_po2_grid(torch.tensor([2.0**-4]), 4, 0)  # below 2**n2
    assert is_po2_grid(torch.tensor([0.0, -0.125, 1.0]), 4, 0)
