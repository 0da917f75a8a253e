# amaranth: UnusedElaboratable=no
"""rtl_gen's arithmetic blocks and constant-weight units in Amaranth's simulator.

Every comparison is against the golden integer arithmetic of :mod:`inq_hw.intmodel` (its
``requantize`` and, for whole layers, its executor) with accumulators computed as Python
ints, so a wrapped accumulator cannot hide. The units are driven as streams: a new input
vector every cycle, ``i_valid`` toggling at random, and each result must appear exactly
``latency`` cycles later (the latency the unit states), with ``o_valid`` delayed alike.
Inputs include the extremes that reach each output's worst-case accumulator. Each checker
has a test that makes it fail (truncating golden, a misstated latency, a narrow width).
"""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator, SimulatorContext
from hypothesis import given
from hypothesis import strategies as st

from inq_hw.intmodel import execute
from inq_hw.intmodel.arith import ActFormat, accumulator_bits, requantize
from inq_hw.intmodel.layers import Conv2dLayer, InputLayer, IntModel, LinearLayer, WeightLayer
from inq_hw.quant import pack_codes, po2_codes
from rtl_gen.arith import Requantizer, register_levels
from rtl_gen.units import ConstDotUnit, Requant

Golden = Callable[[list[int], int, bool, ActFormat], list[int]]


def golden_requantize(accs: list[int], shift: int, relu: bool, out: ActFormat) -> list[int]:
    """The golden executor's requantisation, element by element."""
    y = requantize(np.asarray(accs, dtype=np.int64), shift=shift, relu=relu, out=out)
    return [int(v) for v in y]


def truncating_requantize(accs: list[int], shift: int, relu: bool, out: ActFormat) -> list[int]:
    """A deliberately wrong golden: floor instead of round half up."""
    lo = max(out.lo, 0) if relu else out.lo
    return [min(max(a >> shift if shift > 0 else a << -shift, lo), out.hi) for a in accs]


def fits(values: Sequence[int], bits: int) -> bool:
    """Every value is a ``bits``-bit two's-complement integer."""
    return all(-(1 << (bits - 1)) <= v < 1 << (bits - 1) for v in values)


# --- Requantizer --------------------------------------------------------------------------

SHIFTS = range(-3, 13)
OUT_FORMATS = [ActFormat(bits, signed, 0) for bits in range(4, 17) for signed in (True, False)]


def boundary_accs(acc_bits: int, shift: int, out: ActFormat, rng: np.random.Generator) -> list[int]:
    """The accumulator range's ends, values around every rounding boundary
    ``k·2**s ± 2**(s-1)`` near zero, the saturation bounds and the range's ends, and
    random values (over the whole range and near the output's)."""
    amin, amax = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    values = {amin, amin + 1, amax - 1, amax, -1, 0, 1}
    ks = {0, 1, -1, out.hi, out.hi + 1, out.lo, out.lo - 1, amin >> max(shift, 0)}
    ks |= {amax >> max(shift, 0)} | {int(k) for k in rng.integers(out.lo - 4, out.hi + 5, 6)}
    for k in ks:
        if shift > 0:
            half = 1 << (shift - 1)
            for edge in ((k << shift) - half, (k << shift) + half):
                values.update(edge + d for d in (-1, 0, 1))
        else:  # acc << m crosses k between floor(k / 2**m) and the next integer
            values.update((k >> -shift) + d for d in (-1, 0, 1, 2))
    near = (out.hi + 4) << max(shift, 0)
    values.update(int(v) for v in rng.integers(amin, amax, 16, endpoint=True))
    values.update(int(v) for v in rng.integers(-near, near, 16, endpoint=True))
    return sorted(v for v in values if amin <= v <= amax)


def requantizer_mismatches(
    acc_bits: int,
    shift: int,
    relu: bool,
    out: ActFormat,
    accs: list[int],
    golden: Golden = golden_requantize,
) -> list[tuple[int, int, int]]:
    """``(acc, hardware, golden)`` wherever the combinational Requantizer differs."""
    dut = Requantizer(acc_bits=acc_bits, shift=shift, relu=relu, out=out)
    got: list[int] = []

    async def bench(ctx: SimulatorContext) -> None:
        for acc in accs:
            ctx.set(dut.i_acc, acc)
            await ctx.delay(1e-9)
            got.append(ctx.get(dut.o_data))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    want = golden(accs, shift, relu, out)
    return [(a, g, w) for a, g, w in zip(accs, got, want, strict=True) if g != w]


def _acc_widths(out: ActFormat, shift: int) -> list[int]:
    """Narrower than the output (never saturates), at the saturation edge, and wide."""
    edge = out.bits + max(shift, 0)
    return [max(2, min(62, b)) for b in (3, edge, edge + 1, 24, 62)]


#: Shifts the fast tier sweeps (left shifts, none, a tie at 1, mid, the widest); the rest
#: run in ``pytest -q`` (integration).
FAST_SHIFTS = (-3, -1, 0, 1, 4, 12)


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
@pytest.mark.parametrize(
    "shift",
    [s if s in FAST_SHIFTS else pytest.param(s, marks=pytest.mark.integration) for s in SHIFTS],
)
def test_requantizer_matches_golden(shift: int, relu: bool) -> None:
    rng = np.random.default_rng(1000 + 2 * shift + relu)
    for index, out in enumerate(OUT_FORMATS):
        acc_bits = _acc_widths(out, shift)[index % 5]
        accs = boundary_accs(acc_bits, shift, out, rng)
        bad = requantizer_mismatches(acc_bits, shift, relu, out, accs)
        assert not bad, f"acc_bits={acc_bits} out={out}: (acc, rtl, golden) {bad[:5]}"


def test_requantizer_boundary_values_reach_both_sides() -> None:
    """The chosen accumulators do exercise rounding ties and both saturation bounds."""
    out, shift = ActFormat(8, True, 0), 4
    accs = boundary_accs(24, shift, out, np.random.default_rng(0))
    ys = golden_requantize(accs, shift, False, out)
    assert {out.lo, out.hi} <= set(ys)
    assert {(k << shift) + 8 for k in (0, -1, out.hi - 1)} <= set(accs)  # exact ties
    assert -(1 << 23) in accs and (1 << 23) - 1 in accs


def test_requantizer_check_catches_truncation() -> None:
    out, shift = ActFormat(8, True, 0), 3
    accs = boundary_accs(16, shift, out, np.random.default_rng(1))
    bad = requantizer_mismatches(16, shift, False, out, accs, golden=truncating_requantize)
    assert bad and all(a % 8 >= 4 for a, _, _ in bad)


# --- streaming harness for ConstDotUnit ---------------------------------------------------


def stream_mismatches(
    dut: ConstDotUnit,
    vectors: list[list[int]],
    valids: list[int],
    expected: list[list[int]],
) -> list[str]:
    """Drive ``vectors[t]`` with ``i_valid = valids[t]`` at cycle ``t``; at cycle
    ``t + dut.latency`` ``o_valid`` must be ``valids[t]`` (0 before) and, where valid,
    ``o_data`` must be ``expected[t]``. Returns a description of every difference."""
    latency, n = dut.latency, len(vectors)
    clocked = dut.stages > 0  # a combinational unit has no clock domain
    got: list[tuple[list[int], int]] = []

    async def bench(ctx: SimulatorContext) -> None:
        for t in range(n + latency):
            ctx.set(dut.i_data, vectors[t % n])  # after the stream: stale data, not valid
            ctx.set(dut.i_valid, valids[t] if t < n else 0)
            await ctx.delay(1e-8)
            got.append((list(ctx.get(dut.o_data)), ctx.get(dut.o_valid)))
            await (ctx.tick() if clocked else ctx.delay(1e-6))

    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    bad = []
    for t, (data, valid) in enumerate(got):
        source = t - latency
        want_valid = valids[source] if 0 <= source < n else 0
        if valid != want_valid:
            bad.append(f"cycle {t}: o_valid {valid}, expected {want_valid}")
        if want_valid and data != expected[source]:
            bad.append(f"cycle {t}: o_data {data}, expected {expected[source]} for input {source}")
    return bad


def accumulators(weights: np.ndarray, bias: np.ndarray, x: Sequence[int]) -> list[int]:
    """``W @ x + b`` in Python ints."""
    return [
        sum(int(w) * int(v) for w, v in zip(row, x, strict=True)) + int(b)
        for row, b in zip(weights, bias, strict=True)
    ]


def unit_golden(
    weights: np.ndarray, bias: np.ndarray, requant: Requant | None, x: Sequence[int]
) -> list[int]:
    acc = accumulators(weights, bias, x)
    return (
        acc if requant is None else golden_requantize(acc, requant.shift, requant.relu, requant.out)
    )


def extreme_vectors(
    weights: np.ndarray, fmt: ActFormat, rng: np.random.Generator
) -> list[list[int]]:
    """Per output, ``x = hi`` where ``w > 0`` and ``lo`` where ``w < 0`` (random where
    ``w = 0``), and the opposite; then all-lo, all-hi and zeros."""
    vectors = []
    for row in weights:
        for sign in (1, -1):
            vectors.append(
                [
                    fmt.hi
                    if sign * w > 0
                    else fmt.lo
                    if sign * w < 0
                    else int(rng.integers(fmt.lo, fmt.hi + 1))
                    for w in row
                ]
            )
    n = weights.shape[1]
    return [*vectors, [fmt.lo] * n, [fmt.hi] * n, [0] * n]


def stimulus(
    weights: np.ndarray, fmt: ActFormat, rng: np.random.Generator, randoms: int = 24
) -> tuple[list[list[int]], list[int]]:
    """Random and extreme vectors in random order, with a random ``i_valid`` per cycle
    (extremes always valid, so their results are checked)."""
    shape = (randoms, weights.shape[1])
    random = [[int(v) for v in row] for row in rng.integers(fmt.lo, fmt.hi + 1, shape)]
    extremes = extreme_vectors(weights, fmt, rng)
    tagged = [(v, int(rng.random() < 0.7)) for v in random] + [(v, 1) for v in extremes]
    order = rng.permutation(len(tagged))
    return [tagged[i][0] for i in order], [tagged[i][1] for i in order]


# --- weight matrices ----------------------------------------------------------------------


def po2_matrix(rng: np.random.Generator, outputs: int, inputs: int, max_exp: int) -> np.ndarray:
    """Random 0 / ±2**k weights, about a third zero."""
    magnitude = 1 << rng.integers(0, max_exp + 1, (outputs, inputs))
    sign = rng.choice([-1, 1], (outputs, inputs))
    return np.where(rng.random((outputs, inputs)) < 0.3, 0, sign * magnitude).astype(np.int64)


def special_rows(rng: np.random.Generator, inputs: int, max_exp: int) -> np.ndarray:
    """An all-zero row, an all-negative row (the negated root) and a row with one weight."""
    negative = -(1 << rng.integers(0, max_exp + 1, inputs))
    single = np.zeros(inputs, dtype=np.int64)
    single[rng.integers(inputs)] = 1 << int(rng.integers(0, max_exp + 1))
    return np.stack([np.zeros(inputs, dtype=np.int64), negative, single])


def int8_matrix(rng: np.random.Generator, outputs: int, inputs: int) -> np.ndarray:
    """Random 8-bit uniform weights with non-power-of-two magnitudes mixed in."""
    w = rng.integers(-128, 128, (outputs, inputs))
    w[0, 0] = -127  # never all powers of two
    return w.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Case:
    weights: np.ndarray
    bias: np.ndarray
    in_format: ActFormat
    mode: str
    requant: Requant | None


def _with_special_rows(
    rng: np.random.Generator, w: np.ndarray, bias_abs: int, max_exp: int
) -> tuple[np.ndarray, np.ndarray]:
    """Append the special rows; the all-zero and all-negative rows get no bias."""
    weights = np.concatenate([w, special_rows(rng, w.shape[1], max_exp)])
    bias = rng.integers(-bias_abs, bias_abs + 1, len(weights))
    bias[len(w) : len(w) + 2] = 0
    return weights, bias


def _shift_add_signed_requant() -> Case:
    rng = np.random.default_rng(11)
    w, b = _with_special_rows(rng, po2_matrix(rng, 5, 12, 5), 500, 5)
    out = ActFormat(8, True, 0)
    return Case(w, b, ActFormat(8, True, 0), "shift-add", Requant(shift=6, relu=False, out=out))


def _shift_add_unsigned_relu() -> Case:
    rng = np.random.default_rng(12)
    w, b = _with_special_rows(rng, po2_matrix(rng, 4, 9, 3), 200, 3)
    out = ActFormat(8, False, 0)
    return Case(w, b, ActFormat(6, False, 0), "shift-add", Requant(shift=3, relu=True, out=out))


def _shift_add_signed_raw() -> Case:
    rng = np.random.default_rng(13)
    w, b = _with_special_rows(rng, po2_matrix(rng, 4, 7, 6), 1000, 6)
    return Case(w, b, ActFormat(5, True, 0), "shift-add", None)


def _shift_add_left_shift() -> Case:
    rng = np.random.default_rng(14)
    w, b = _with_special_rows(rng, po2_matrix(rng, 3, 6, 4), 50, 4)
    out = ActFormat(12, True, 0)
    return Case(w, b, ActFormat(8, False, 0), "shift-add", Requant(shift=-2, relu=False, out=out))


def _shift_add_single_input() -> Case:
    w = np.array([[-4], [1], [0], [-1]], dtype=np.int64)
    return Case(w, np.array([0, -3, 7, 0]), ActFormat(8, True, 0), "shift-add", None)


def _shift_add_single_input_requant() -> Case:
    w = np.array([[-8], [2]], dtype=np.int64)
    out = ActFormat(4, True, 0)
    # -2 cancels the rounding constant 2: a negated root under a right shift
    return Case(
        w,
        np.array([-2, 5]),
        ActFormat(6, True, 0),
        "shift-add",
        Requant(shift=2, relu=False, out=out),
    )


def _shift_add_two_bit_inputs() -> Case:
    rng = np.random.default_rng(15)
    w, b = _with_special_rows(rng, po2_matrix(rng, 3, 5, 2), 4, 2)
    return Case(w, b, ActFormat(2, True, 0), "shift-add", None)


def _shift_add_wide() -> Case:
    """Exponents up to 40 (8-bit codes span 2**63): adders wider than 32 bits."""
    rng = np.random.default_rng(16)
    w, b = _with_special_rows(rng, po2_matrix(rng, 3, 8, 40), 1 << 45, 40)
    out = ActFormat(16, True, 0)
    return Case(w, b, ActFormat(8, True, 0), "shift-add", Requant(shift=35, relu=False, out=out))


def _multiply_signed_requant() -> Case:
    rng = np.random.default_rng(21)
    w = int8_matrix(rng, 5, 9)
    b = rng.integers(-5000, 5001, 5)
    out = ActFormat(8, True, 0)
    return Case(w, b, ActFormat(8, True, 0), "multiply", Requant(shift=7, relu=False, out=out))


def _multiply_unsigned_raw() -> Case:
    rng = np.random.default_rng(22)
    w = np.concatenate([int8_matrix(rng, 3, 7), np.zeros((1, 7), dtype=np.int64)])
    w = np.concatenate([w, [[0, 0, -3, 0, 0, 0, 0]], -np.abs(int8_matrix(rng, 1, 7))])
    return Case(w, np.zeros(len(w), dtype=np.int64), ActFormat(4, False, 0), "multiply", None)


def _multiply_relu() -> Case:
    rng = np.random.default_rng(23)
    w = np.concatenate([int8_matrix(rng, 3, 10), -np.abs(int8_matrix(rng, 1, 10))])
    out = ActFormat(6, False, 0)
    b = rng.integers(-300, 301, 4)
    return Case(w, b, ActFormat(6, True, 0), "multiply", Requant(shift=3, relu=True, out=out))


CASES: dict[str, Callable[[], Case]] = {
    "shift-add-signed-requant": _shift_add_signed_requant,
    "shift-add-unsigned-relu": _shift_add_unsigned_relu,
    "shift-add-signed-raw": _shift_add_signed_raw,
    "shift-add-left-shift": _shift_add_left_shift,
    "shift-add-single-input": _shift_add_single_input,
    "shift-add-single-input-requant": _shift_add_single_input_requant,
    "shift-add-two-bit-inputs": _shift_add_two_bit_inputs,
    "shift-add-wide": _shift_add_wide,
    "multiply-signed-requant": _multiply_signed_requant,
    "multiply-unsigned-raw": _multiply_unsigned_raw,
    "multiply-relu": _multiply_relu,
}


def build(case: Case, stages: int) -> ConstDotUnit:
    return ConstDotUnit(
        weights=case.weights,
        bias=case.bias,
        in_format=case.in_format,
        mode=case.mode,
        requant=case.requant,
        stages=stages,
    )


def case_mismatches(
    case: Case, dut: ConstDotUnit, seed: int, requant_golden: Golden = golden_requantize
) -> list[str]:
    """Stream random and extreme vectors through ``dut`` (built from ``case``)."""
    vectors, valids = stimulus(case.weights, case.in_format, np.random.default_rng(seed))
    accs = [accumulators(case.weights, case.bias, x) for x in vectors]
    if case.requant is None:
        expected = accs
    else:
        q = case.requant
        expected = [requant_golden(a, q.shift, q.relu, q.out) for a in accs]
    return stream_mismatches(dut, vectors, valids, expected)


@pytest.mark.parametrize("stages", range(5))
@pytest.mark.parametrize("name", CASES)
def test_const_dot_unit_streams_golden_results(name: str, stages: int) -> None:
    case = CASES[name]()
    dut = build(case, stages)
    assert dut.latency == stages
    sums = np.abs(case.weights).sum(axis=1)
    assert dut.acc_bits == accumulator_bits(sums, case.bias, case.in_format.max_abs)
    bad = case_mismatches(case, dut, seed=stages)
    assert not bad, "\n".join(bad[:10])


@pytest.mark.parametrize("name", CASES)
def test_extreme_inputs_reach_every_accumulator_bound(name: str) -> None:
    """For every output the extreme inputs give the largest and the smallest accumulator
    its inputs can produce, and both fit the documented worst-case width (which the
    stream test checks the unit states)."""
    case = CASES[name]()
    fmt = case.in_format
    width = accumulator_bits(np.abs(case.weights).sum(axis=1), case.bias, fmt.max_abs)
    extremes = extreme_vectors(case.weights, fmt, np.random.default_rng(0))
    accs = np.array([accumulators(case.weights, case.bias, x) for x in extremes], dtype=object)
    for o, (row, b) in enumerate(zip(case.weights, case.bias, strict=True)):
        high = sum(max(int(w) * fmt.lo, int(w) * fmt.hi) for w in row) + int(b)
        low = sum(min(int(w) * fmt.lo, int(w) * fmt.hi) for w in row) + int(b)
        assert (accs[2 * o, o], accs[2 * o + 1, o]) == (high, low)
        assert fits([high, low], width)


def test_stream_check_catches_truncating_golden() -> None:
    case = CASES["shift-add-signed-requant"]()
    bad = case_mismatches(case, build(case, 2), 0, truncating_requantize)
    assert bad and all("o_data" in line for line in bad)


def test_stream_check_catches_misstated_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ConstDotUnit, "latency", property(lambda self: self.stages + 1))
    case = CASES["multiply-signed-requant"]()
    bad = case_mismatches(case, build(case, 2), 0)
    assert any("o_valid" in line for line in bad) and any("o_data" in line for line in bad)


def test_stream_check_catches_a_combinational_unit_claiming_a_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ConstDotUnit, "latency", property(lambda self: 1))
    case = CASES["shift-add-signed-raw"]()
    assert case_mismatches(case, build(case, 0), 0)


def test_stream_check_catches_a_wrapping_accumulator() -> None:
    """Raw outputs wrapped to one bit less than the worst case differ from Python ints."""
    case = CASES["shift-add-signed-raw"]()
    dut = build(case, 1)
    vectors, valids = stimulus(case.weights, case.in_format, np.random.default_rng(0))
    half = 1 << (dut.acc_bits - 2)
    wrapped = [
        [(a + half) % (2 * half) - half for a in accumulators(case.weights, case.bias, x)]
        for x in vectors
    ]
    assert stream_mismatches(dut, vectors, valids, wrapped)


# --- from_layer on real integer-model layers ----------------------------------------------


def _layer_fields(
    weights: torch.Tensor, bits: int, in_format: ActFormat, shift: int, relu: bool, seed: int
) -> dict[str, object]:
    """Codes, bias and formats of a weight layer whose shift is ``shift``."""
    codes = po2_codes(weights, bits)
    rng = np.random.default_rng(seed)
    bias_abs = 1 << (codes.n1 - codes.n2 + in_format.bits)
    frac_out = in_format.frac - codes.n2 - shift
    return {
        "out": ActFormat(8, not relu, frac_out),
        "bits": bits,
        "n1": codes.n1,
        "n2": codes.n2,
        "codes": pack_codes(codes).numpy(),
        "bias": rng.integers(-bias_abs, bias_abs + 1, weights.shape[0]).astype(np.int64),
        "shift": shift,
        "relu": relu,
        "acc_bits": 62,
    }


def _with_exact_width(layer: WeightLayer, in_format: ActFormat) -> WeightLayer:
    w = layer.weights_int().reshape(layer.codes.shape[0], -1)
    width = accumulator_bits(np.abs(w).sum(axis=1), layer.bias, in_format.max_abs)
    return dataclasses.replace(layer, acc_bits=width)


def linear_model(bits: int, in_format: ActFormat, shift: int, relu: bool) -> IntModel:
    weights = torch.randn(4, 16, generator=torch.Generator().manual_seed(bits)) * 0.3
    weights[1, ::3] = 0.0  # zero codes at every bit-width
    fields = _layer_fields(weights, bits, in_format, shift, relu, seed=bits)
    layer = LinearLayer(name="fc", inputs=("x",), shape=(4,), **fields)  # type: ignore[arg-type]
    source = InputLayer(name="x", inputs=(), shape=(16,), out=in_format)
    return IntModel(layers=(source, _with_exact_width(layer, in_format)), output="fc")


def conv_model(in_format: ActFormat, shift: int, relu: bool) -> IntModel:
    weights = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(7))
    fields = _layer_fields(weights, 4, in_format, shift, relu, seed=7)
    layer = Conv2dLayer(
        name="conv",
        inputs=("x",),
        shape=(2, 1, 1),
        stride=1,
        padding=0,
        **fields,  # type: ignore[arg-type]
    )
    source = InputLayer(name="x", inputs=(), shape=(2, 3, 3), out=in_format)
    return IntModel(layers=(source, _with_exact_width(layer, in_format)), output="conv")


def layer_mismatches(model: IntModel, stages: int, seed: int, requantise: bool = True) -> list[str]:
    """Stream random and extreme inputs through ``from_layer`` and compare to the executor
    (or, without requantisation, to the Python-int accumulators)."""
    layer = model.layer(model.output)
    assert isinstance(layer, WeightLayer)
    fmt = model.input.out
    dut = ConstDotUnit.from_layer(layer, fmt, stages=stages, requantise=requantise)
    assert dut.acc_bits == layer.acc_bits
    weights = layer.weights_int().reshape(layer.codes.shape[0], -1)
    vectors, valids = stimulus(weights, fmt, np.random.default_rng(seed), randoms=32)
    x = np.array(vectors, dtype=np.int64).reshape(len(vectors), *model.input.shape)
    if requantise:
        golden = execute.run(model, x)
        assert isinstance(golden, np.ndarray)
        expected = golden.reshape(len(vectors), -1).tolist()
    else:
        expected = [accumulators(weights, layer.bias, v) for v in vectors]
    return stream_mismatches(dut, vectors, valids, expected)


@pytest.mark.parametrize("stages", [0, 3])
@pytest.mark.parametrize(
    ("bits", "in_format", "shift", "relu"),
    [
        (3, ActFormat(8, True, 5), 4, False),
        (4, ActFormat(8, False, 6), 7, True),
        (5, ActFormat(8, True, 4), 9, True),
        (4, ActFormat(6, True, 2), -1, False),
    ],
)
def test_from_linear_layer_matches_executor(
    bits: int, in_format: ActFormat, shift: int, relu: bool, stages: int
) -> None:
    model = linear_model(bits, in_format, shift, relu)
    layer = model.layer("fc")
    assert isinstance(layer, WeightLayer)
    assert (layer.weights_int() == 0).any() and (layer.weights_int() < 0).any()
    bad = layer_mismatches(model, stages, seed=bits + stages)
    assert not bad, "\n".join(bad[:10])


@pytest.mark.parametrize(
    ("in_format", "shift", "relu", "stages"),
    [(ActFormat(8, False, 7), 8, True, 2), (ActFormat(8, True, 3), 5, False, 1)],
)
def test_from_conv_window_matches_executor(
    in_format: ActFormat, shift: int, relu: bool, stages: int
) -> None:
    bad = layer_mismatches(conv_model(in_format, shift, relu), stages, seed=stages)
    assert not bad, "\n".join(bad[:10])


def test_from_layer_without_requantisation_gives_accumulators() -> None:
    model = linear_model(5, ActFormat(8, True, 4), 6, False)
    bad = layer_mismatches(model, 2, seed=5, requantise=False)
    assert not bad, "\n".join(bad[:10])


def test_from_layer_check_catches_a_wrong_layer() -> None:
    """The executor comparison fails when the unit is built from a different layer."""
    model = linear_model(4, ActFormat(8, True, 5), 4, False)
    layer = model.layer("fc")
    assert isinstance(layer, WeightLayer)
    moved = dataclasses.replace(layer, bias=layer.bias + 16)  # one output step at shift 4
    wrong = IntModel(layers=(model.input, _with_exact_width(moved, model.input.out)), output="fc")
    dut = ConstDotUnit.from_layer(layer, model.input.out)
    weights = layer.weights_int()
    vectors, valids = stimulus(weights, model.input.out, np.random.default_rng(0))
    golden = execute.run(wrong, np.array(vectors, dtype=np.int64))
    assert isinstance(golden, np.ndarray)
    assert stream_mismatches(dut, vectors, valids, golden.tolist())


# --- validation ---------------------------------------------------------------------------

FMT = ActFormat(8, True, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": [[1, 3]], "mode": "shift-add"}, "0 or ±2"),
        ({"weights": [[1, -6, 0]], "bias": [0]}, "0 or ±2"),
        ({"weights": [[1, 2]], "mode": "mac"}, "Mode"),
        ({"weights": [1, 2], "bias": [0]}, "matrix"),
        ({"weights": [[[1, 2]]], "bias": [0]}, "matrix"),
        ({"weights": np.zeros((0, 3)), "bias": []}, "matrix"),
        ({"weights": np.zeros((2, 0)), "bias": [0, 0]}, "matrix"),
        ({"weights": [[1, 2]], "bias": [0, 0]}, "one value per output"),
        ({"weights": [[1, 2]], "bias": [[0]]}, "one value per output"),
        ({"weights": [[1, 2]], "stages": -1}, "-1"),
        ({"weights": [[1, 2]], "stages": True}, "True"),
        ({"weights": [[1, 2]], "stages": 1.5}, "1.5"),
    ],
)
def test_const_dot_unit_rejects(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {"bias": [0], "in_format": FMT, **kwargs}
    with pytest.raises(ValueError, match=match):
        ConstDotUnit(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("acc_bits", [1, 65, True, 8.0])
def test_requantizer_rejects_width(acc_bits: object) -> None:
    with pytest.raises(ValueError, match=repr(acc_bits).replace(".", r"\.")):
        Requantizer(acc_bits=acc_bits, shift=0, relu=False, out=FMT)  # type: ignore[arg-type]


def test_requantizer_rejects_non_format() -> None:
    with pytest.raises(TypeError, match="ActFormat"):
        Requantizer(acc_bits=16, shift=0, relu=False, out=(8, True, 0))  # type: ignore[arg-type]


# --- register_levels ----------------------------------------------------------------------


@given(depth=st.integers(0, 16), stages=st.integers(-2, 16))
def test_register_levels_within_the_tree(depth: int, stages: int) -> None:
    levels = register_levels(depth, stages)
    if stages <= 0:
        assert levels == set()
    elif depth == 0:
        assert levels == {0}
    else:
        assert levels <= set(range(1, depth + 1))


@given(depth=st.integers(1, 16), data=st.data())
def test_register_levels_count_and_output_register(depth: int, data: st.DataObject) -> None:
    """With no more stages than levels: exactly ``stages`` levels, the last one included
    (the tree's output is registered)."""
    stages = data.draw(st.integers(1, depth))
    levels = register_levels(depth, stages)
    assert len(levels) == stages and depth in levels


@pytest.mark.parametrize(("depth", "stages"), [(2, 3), (2, 4), (3, 4), (4, 8), (5, 16)])
def test_register_levels_every_level_when_stages_exceed_depth(depth: int, stages: int) -> None:
    assert register_levels(depth, stages) == set(range(1, depth + 1))


@pytest.mark.parametrize("stages", [1, 2, 5])
def test_register_levels_single_term_and_depth_one(stages: int) -> None:
    assert register_levels(0, stages) == {0}
    assert register_levels(1, stages) == {1}
