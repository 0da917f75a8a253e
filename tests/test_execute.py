"""The golden executor against a slow reference written from the spec, with Python ints.

The reference below (``ref_*``) follows ARCHITECTURE.md, "Number formats", line by line:
plain Python integers and loops, no numpy arithmetic, no im2col, its own decoding of the
packed weight codes. Random integer models (seeded numpy and hypothesis) must agree with it
on every element of every layer; the extreme inputs of every weight layer prove that the
accumulator fits its stated width and that neither matmul path of the executor (float64
BLAS, int64) loses a bit. Each checker has a test that makes it fail (wrong rounding rules,
wrong tap or flatten order, an inexact matmul path).
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inq_hw.errors import ConfigError, PackageError
from inq_hw.intmodel import execute
from inq_hw.intmodel.arith import ActFormat, accumulator_bits, signed_bits
from inq_hw.intmodel.layers import (
    AddLayer,
    AvgPoolLayer,
    Conv2dLayer,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    ReLULayer,
    WeightLayer,
)
from inq_hw.quant import compute_n2, pack_codes, po2_codes

Nested = Any  # an int or a (nested) list of ints

# --- the reference: Python ints and loops, written from the spec -------------------------


def ref_weight(code: int, bits: int, n1: int) -> int:
    """A packed code ``zero | sign | index`` as the integer ``±2**(e - n2)``, e = n1 - index."""
    if (code >> (bits - 1)) & 1:
        return 0
    n2 = n1 + 1 - 2 ** (bits - 2)
    e = n1 - code % 2 ** (bits - 2)
    magnitude = 2 ** (e - n2)
    return -magnitude if (code >> (bits - 2)) & 1 else magnitude


def ref_requantize(acc: int, shift: int, relu: bool, lo: int, hi: int) -> int:
    """Right shift rounding half up, ``floor((acc + 2**(r-1)) / 2**r)``, or exact left
    shift; then ReLU; then saturation to ``[lo, hi]``."""
    y = (acc + 2 ** (shift - 1)) // 2**shift if shift > 0 else acc * 2**-shift
    if relu:
        y = max(y, 0)
    return min(max(y, lo), hi)


def _map(fn: Callable[..., int], *nested: Nested) -> Nested:
    """``fn`` applied elementwise to nested lists of the same shape."""
    if isinstance(nested[0], list):
        return [_map(fn, *items) for items in zip(*nested, strict=True)]
    return fn(*nested)


def ref_conv_acc(
    x: Nested, w: Nested, bias: Sequence[int], stride: int, padding: int
) -> list[list[list[int]]]:
    """Accumulators of a zero-padded 2-D convolution, ``(O, Ho, Wo)``."""
    channels, height, width = len(x), len(x[0]), len(x[0][0])
    k = len(w[0][0])
    out_h = (height + 2 * padding - k) // stride + 1
    out_w = (width + 2 * padding - k) // stride + 1

    def pixel(c: int, i: int, j: int) -> int:
        return x[c][i][j] if 0 <= i < height and 0 <= j < width else 0

    out = []
    for o in range(len(w)):
        plane = []
        for oi in range(out_h):
            row = []
            for oj in range(out_w):
                acc = bias[o]
                for c in range(channels):
                    for ki in range(k):
                        for kj in range(k):
                            i, j = oi * stride - padding + ki, oj * stride - padding + kj
                            acc += w[o][c][ki][kj] * pixel(c, i, j)
                row.append(acc)
            plane.append(row)
        out.append(plane)
    return out


def ref_linear_acc(x: Sequence[int], w: Nested, bias: Sequence[int]) -> list[int]:
    out = []
    for o in range(len(w)):
        acc = bias[o]
        for f in range(len(x)):
            acc += w[o][f] * x[f]
        out.append(acc)
    return out


def ref_pool(x: Nested, kernel: int, stride: int, reduce: Callable[[list[int]], int]) -> Nested:
    out = []
    for plane in x:
        out_h = (len(plane) - kernel) // stride + 1
        out_w = (len(plane[0]) - kernel) // stride + 1
        out.append(
            [
                [
                    reduce(
                        [
                            plane[oi * stride + ki][oj * stride + kj]
                            for ki in range(kernel)
                            for kj in range(kernel)
                        ]
                    )
                    for oj in range(out_w)
                ]
                for oi in range(out_h)
            ]
        )
    return out


def ref_avg(values: list[int], shift: int) -> int:
    """Sum, then ``(s + 2**(k-1)) >> k`` (Python's ``>>`` floors)."""
    s = sum(values)
    return (s + 2 ** (shift - 1)) >> shift if shift > 0 else s


def ref_layer_weights(layer: WeightLayer) -> Nested:
    return _map(lambda c: ref_weight(c, layer.bits, layer.n1), layer.codes.tolist())


def _ref_weight_layer(layer: Any, operands: list[Nested]) -> Nested:
    w, bias = ref_layer_weights(layer), layer.bias.tolist()
    acc: Nested
    if isinstance(layer, Conv2dLayer):
        acc = ref_conv_acc(operands[0], w, bias, layer.stride, layer.padding)
    else:
        acc = ref_linear_acc(operands[0], w, bias)
    lo, hi = layer.out.lo, layer.out.hi
    return _map(lambda a: ref_requantize(a, layer.shift, layer.relu, lo, hi), acc)


def _ref_add(layer: Any, operands: list[Nested]) -> Nested:
    def one(*values: int) -> int:
        acc = sum(v * 2**a for v, a in zip(values, layer.align, strict=True))
        return ref_requantize(acc, layer.shift, layer.relu, layer.out.lo, layer.out.hi)

    return _map(one, *operands)


REFERENCE: dict[type[Layer], Callable[[Any, list[Nested]], Nested]] = {
    InputLayer: lambda layer, ops: ops[0],
    Conv2dLayer: _ref_weight_layer,
    LinearLayer: _ref_weight_layer,
    MaxPoolLayer: lambda layer, ops: ref_pool(ops[0], layer.kernel, layer.stride, max),
    AvgPoolLayer: lambda layer, ops: ref_pool(
        ops[0], layer.kernel, layer.stride, lambda v: ref_avg(v, layer.shift)
    ),
    FlattenLayer: lambda layer, ops: [v for plane in ops[0] for row in plane for v in row],
    ReLULayer: lambda layer, ops: _map(lambda v: max(v, 0), ops[0]),
    AddLayer: _ref_add,
}


def ref_run(model: IntModel, sample: np.ndarray) -> dict[str, Nested]:
    """Every layer's integers for one sample, as nested lists of Python ints."""
    values: dict[str, Nested] = {}
    for layer in model.layers:
        operands = [sample.tolist()] if isinstance(layer, InputLayer) else []
        operands += [values[name] for name in layer.inputs]
        values[layer.name] = REFERENCE[type(layer)](layer, operands)
    return values


def first_mismatch(model: IntModel, x: np.ndarray) -> str | None:
    """Where ``execute.run`` (traced and not) first differs from the reference, or None."""
    traced = execute.run(model, x, trace=True)
    assert isinstance(traced, dict)
    if set(traced) != {layer.name for layer in model.layers}:
        return f"trace has layers {sorted(traced)}"
    output = execute.run(model, x)
    if not isinstance(output, np.ndarray) or not np.array_equal(output, traced[model.output]):
        return "run() and run(trace=True) disagree on the output"
    for i, sample in enumerate(x):
        want = ref_run(model, sample)
        for layer in model.layers:
            got = traced[layer.name]
            if got.shape != (len(x), *layer.shape) or not np.issubdtype(got.dtype, np.integer):
                return f"{layer.name}: {got.dtype} array of shape {got.shape}"
            if got[i].tolist() != want[layer.name]:
                return f"sample {i}, {layer.name}: {got[i].tolist()} != {want[layer.name]}"
    return None


# --- random integer models ---------------------------------------------------------------


def random_codes(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    bits: int,
    n1: int,
    *,
    max_exp: int | None = None,
    zeros: float = 0.3,
) -> np.ndarray:
    """Packed codes (via ``po2_codes``) of weights on every level up to ``2**(n2+max_exp)``,
    both signs, about a fraction ``zeros`` of them zero."""
    n2 = compute_n2(n1, bits)
    top = n1 if max_exp is None else n2 + max_exp
    # 2**(e ± 0.4) lies inside level e's interval [3/4, 3/2)·2**e of Eq. 4.
    magnitude = 2.0 ** rng.uniform(n2 - 0.4, top + 0.4, size=shape)
    w = np.where(rng.random(shape) < zeros, 0.0, rng.choice([-1.0, 1.0], size=shape) * magnitude)
    return pack_codes(po2_codes(torch.from_numpy(w), bits, n1=n1)).numpy()


def weight_abs_sums(codes: np.ndarray, bits: int, n1: int) -> list[int]:
    """``Σ|w_int|`` per output, decoded by the reference."""
    rows = codes.reshape(codes.shape[0], -1).tolist()
    return [sum(abs(ref_weight(c, bits, n1)) for c in row) for row in rows]


class Builder:
    """Builds an :class:`IntModel` layer by layer with consistent shapes, formats and shifts.

    A weight layer's shift is ``acc_bits - out_bits + delta`` (so its outputs use the
    output range, saturating for negative ``delta``) and its output fraction follows from
    ``shift = frac_in - n2 - frac_out``.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...], fmt: ActFormat):
        self.rng = rng
        self.layers: dict[str, Layer] = {"x": InputLayer(name="x", inputs=(), shape=shape, out=fmt)}

    def _add(self, layer: Layer) -> str:
        self.layers[layer.name] = layer
        return layer.name

    def _weight(
        self, cls: type[WeightLayer], name: str, src: str, codes: np.ndarray, shape: Any, **kw: Any
    ) -> str:
        fmt_in = self.layers[src].out
        bits, n1, relu, out_bits = kw.pop("bits"), kw.pop("n1"), kw.pop("relu"), kw.pop("out_bits")
        sums = weight_abs_sums(codes, bits, n1)
        bound = max(1, max(sums) * fmt_in.max_abs // 2)
        bias = self.rng.integers(-bound, bound + 1, size=len(sums), dtype=np.int64)
        acc_bits = accumulator_bits(np.array(sums), bias, fmt_in.max_abs)
        shift = acc_bits - out_bits + kw.pop("delta")
        n2 = compute_n2(n1, bits)
        out = ActFormat(bits=out_bits, signed=not relu, frac=fmt_in.frac - n2 - shift)
        return self._add(
            cls(
                name=name,
                inputs=(src,),
                shape=shape,
                out=out,
                bits=bits,
                n1=n1,
                n2=n2,
                codes=codes,
                bias=bias,
                shift=shift,
                relu=relu,
                acc_bits=acc_bits,
                **kw,
            )
        )

    def conv(
        self,
        name: str,
        src: str,
        *,
        out_ch: int,
        k: int,
        stride: int,
        padding: int,
        bits: int,
        n1: int,
        **kw: Any,
    ) -> str:
        c, h, w = self.layers[src].shape
        shape = (out_ch, (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1)
        codes = random_codes(self.rng, (out_ch, c, k, k), bits, n1)
        return self._weight(
            Conv2dLayer,
            name,
            src,
            codes,
            shape,
            bits=bits,
            n1=n1,
            stride=stride,
            padding=padding,
            **kw,
        )

    def linear(self, name: str, src: str, *, out: int, bits: int, n1: int, **kw: Any) -> str:
        codes = random_codes(self.rng, (out, self.layers[src].shape[0]), bits, n1)
        return self._weight(LinearLayer, name, src, codes, (out,), bits=bits, n1=n1, **kw)

    def pool(self, cls: type[Any], name: str, src: str, kernel: int, stride: int, **kw: Any) -> str:
        c, h, w = self.layers[src].shape
        shape = (c, (h - kernel) // stride + 1, (w - kernel) // stride + 1)
        fmt = self.layers[src].out
        return self._add(
            cls(name=name, inputs=(src,), shape=shape, out=fmt, kernel=kernel, stride=stride, **kw)
        )

    def flatten(self, name: str, src: str) -> str:
        layer = self.layers[src]
        size = int(np.prod(layer.shape))
        return self._add(FlattenLayer(name=name, inputs=(src,), shape=(size,), out=layer.out))

    def relu(self, name: str, src: str) -> str:
        layer = self.layers[src]
        out = ActFormat(bits=layer.out.bits, signed=False, frac=layer.out.frac)
        return self._add(ReLULayer(name=name, inputs=(src,), shape=layer.shape, out=out))

    def add(self, name: str, srcs: list[str], *, relu: bool, out_bits: int, delta: int) -> str:
        fmts = [self.layers[s].out for s in srcs]
        frac = max(f.frac for f in fmts)
        align = [frac - f.frac for f in fmts]
        acc_bits = signed_bits(sum(f.max_abs << a for f, a in zip(fmts, align, strict=True)))
        shift = acc_bits - out_bits + delta
        out = ActFormat(bits=out_bits, signed=not relu, frac=frac - shift)
        shape = self.layers[srcs[0]].shape
        return self._add(
            AddLayer(
                name=name,
                inputs=tuple(srcs),
                shape=shape,
                out=out,
                align=tuple(align),
                shift=shift,
                relu=relu,
                acc_bits=acc_bits,
            )
        )

    def build(self, output: str) -> IntModel:
        return IntModel(layers=tuple(self.layers.values()), output=output)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The structure of a random model: input → conv (or two convs added) → optional ReLU /
    max pool / average pool → flatten → linear."""

    in_ch: int
    px: int
    in_bits: int
    in_signed: bool
    in_frac: int
    out_ch: int
    k: int
    stride: int
    padding: int
    conv_bits: int
    conv_n1: int
    conv_relu: bool
    conv_delta: int
    act_bits: int
    branch: str
    add_relu: bool
    add_delta: int
    pool: str
    pool_stride: int
    fc_out: int
    fc_bits: int
    fc_n1: int
    fc_relu: bool
    fc_delta: int


SPEC_CHOICES: dict[str, Sequence[Any]] = {
    "in_ch": range(1, 4),
    "px": range(3, 7),
    "in_bits": range(2, 9),
    "in_signed": (False, True),
    "in_frac": range(0, 8),
    "out_ch": range(1, 5),
    "k": range(1, 4),
    "stride": (1, 2),
    "padding": (0, 1),
    "conv_bits": range(2, 7),
    "conv_n1": range(-3, 2),
    "conv_relu": (False, True),
    "conv_delta": range(-3, 3),
    "act_bits": range(2, 9),
    "branch": ("plain", "relu", "add"),
    "add_relu": (False, True),
    "add_delta": range(-3, 3),
    "pool": ("none", "max", "avg"),
    "pool_stride": (1, 2),
    "fc_out": range(1, 6),
    "fc_bits": range(2, 7),
    "fc_n1": range(-3, 2),
    "fc_relu": (False, True),
    "fc_delta": range(-3, 3),
}
assert set(SPEC_CHOICES) == {f.name for f in dataclasses.fields(ModelSpec)}


def random_spec(rng: np.random.Generator) -> ModelSpec:
    return ModelSpec(**{k: v[int(rng.integers(len(v)))] for k, v in SPEC_CHOICES.items()})


model_specs = st.fixed_dictionaries(
    {k: st.sampled_from(list(v)) for k, v in SPEC_CHOICES.items()}
).map(lambda d: ModelSpec(**d))


def build_model(spec: ModelSpec, rng: np.random.Generator) -> IntModel:
    fmt = ActFormat(bits=spec.in_bits, signed=spec.in_signed, frac=spec.in_frac)
    b = Builder(rng, (spec.in_ch, spec.px, spec.px), fmt)
    conv = {
        "out_ch": spec.out_ch,
        "k": spec.k,
        "stride": spec.stride,
        "padding": spec.padding,
        "bits": spec.conv_bits,
        "n1": spec.conv_n1,
        "out_bits": spec.act_bits,
    }
    if spec.branch == "add":
        a = b.conv("conv_a", "x", relu=False, delta=spec.conv_delta, **conv)
        c = b.conv("conv_b", "x", relu=spec.conv_relu, delta=spec.conv_delta + 1, **conv)
        top = b.add("add", [a, c], relu=spec.add_relu, out_bits=spec.act_bits, delta=spec.add_delta)
    else:
        top = b.conv("conv", "x", relu=spec.conv_relu, delta=spec.conv_delta, **conv)
        if spec.branch == "relu" and not spec.conv_relu:
            top = b.relu("relu", top)
    kernel = 2 if b.layers[top].shape[1] >= 2 else 1
    if spec.pool == "max":
        top = b.pool(MaxPoolLayer, "maxpool", top, kernel, spec.pool_stride)
    elif spec.pool == "avg":  # a window of 2**shift elements
        top = b.pool(AvgPoolLayer, "avgpool", top, kernel, spec.pool_stride, shift=2 * kernel - 2)
    top = b.flatten("flatten", top)
    top = b.linear(
        "fc",
        top,
        out=spec.fc_out,
        bits=spec.fc_bits,
        n1=spec.fc_n1,
        relu=spec.fc_relu,
        out_bits=spec.act_bits,
        delta=spec.fc_delta,
    )
    return b.build(top)


def random_inputs(model: IntModel, rng: np.random.Generator) -> np.ndarray:
    """Four samples: uniform, a random mix of the two range ends, all ``hi``, all ``lo``."""
    fmt, shape = model.input.out, model.input.shape
    uniform = rng.integers(fmt.lo, fmt.hi + 1, size=shape)
    corners = np.where(rng.random(shape) < 0.5, fmt.lo, fmt.hi)
    return np.stack([uniform, corners, np.full(shape, fmt.hi), np.full(shape, fmt.lo)])


def random_case(seed: int, **overrides: Any) -> tuple[IntModel, np.ndarray]:
    rng = np.random.default_rng(seed)
    model = build_model(dataclasses.replace(random_spec(rng), **overrides), rng)
    return model, random_inputs(model, rng)


# --- random models agree with the reference on every layer -------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_seeded_models_match_reference(seed: int) -> None:
    model, x = random_case(seed)
    assert first_mismatch(model, x) is None


@settings(max_examples=80, deadline=None)
@given(spec=model_specs, seed=st.integers(0, 2**32 - 1))
def test_random_models_match_reference(spec: ModelSpec, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = build_model(spec, rng)
    assert first_mismatch(model, random_inputs(model, rng)) is None


def test_random_models_cover_every_layer_kind_and_both_shift_directions() -> None:
    models = [random_case(seed)[0] for seed in range(40)]
    kinds = {type(layer) for model in models for layer in model.layers}
    assert kinds == set(REFERENCE)
    shifts = [layer.shift for m in models for layer in m.layers if isinstance(layer, WeightLayer)]
    assert min(shifts) <= 0 < max(shifts)


# --- extreme inputs: the accumulator fits its width; no path loses a bit -----------------


@dataclasses.dataclass(frozen=True)
class ExtremeCase:
    """One weight layer fed by the input directly, its window the whole input (conv with
    ``k = H = W``, padding 0), so every output sees every input element."""

    kind: str
    bits: int
    n1: int
    max_exp: int
    in_bits: int
    in_signed: bool
    out_ch: int
    fan_in: tuple[int, ...]
    bias_scale: int
    headroom: int
    seed: int


@st.composite
def extreme_cases(draw: st.DrawFn) -> ExtremeCase:
    kind = draw(st.sampled_from(["conv", "linear"]))
    bits, in_bits = draw(st.integers(2, 8)), draw(st.integers(2, 24))
    # |w_int| <= 2**max_exp keeps the worst case within 62 bits (fan-in <= 27 < 2**5).
    max_exp = draw(st.integers(0, min((1 << (bits - 2)) - 1, 54 - in_bits)))
    if kind == "conv":
        k = draw(st.integers(1, 3))
        fan_in: tuple[int, ...] = (draw(st.integers(1, 3)), k, k)
    else:
        fan_in = (draw(st.integers(1, 12)),)
    return ExtremeCase(
        kind=kind,
        bits=bits,
        n1=draw(st.integers(-4, 4)),
        max_exp=max_exp,
        in_bits=in_bits,
        in_signed=draw(st.booleans()),
        out_ch=draw(st.integers(1, 3)),
        fan_in=fan_in,
        bias_scale=draw(st.integers(0, 2)),
        headroom=draw(st.integers(0, 3)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def extreme_model(case: ExtremeCase) -> IntModel:
    """The layer with a 32-bit output and ``shift = acc_bits - 32 + headroom``, so the
    output keeps the accumulator's top bits unsaturated (a left shift for small ones)."""
    rng = np.random.default_rng(case.seed)
    fmt = ActFormat(bits=case.in_bits, signed=case.in_signed, frac=0)
    shape = (case.out_ch, *case.fan_in)
    codes = random_codes(rng, shape, case.bits, case.n1, max_exp=case.max_exp)
    sums = weight_abs_sums(codes, case.bits, case.n1)
    bound = max(sums) * fmt.max_abs * case.bias_scale // 2
    bias = rng.integers(-bound, bound + 1, size=case.out_ch, dtype=np.int64)
    acc_bits = accumulator_bits(np.array(sums), bias, fmt.max_abs)
    shift = acc_bits - 32 + case.headroom
    n2 = compute_n2(case.n1, case.bits)
    common: dict[str, Any] = {
        "inputs": ("x",),
        "out": ActFormat(bits=32, signed=True, frac=-n2 - shift),
        "bits": case.bits,
        "n1": case.n1,
        "n2": n2,
        "codes": codes,
        "bias": bias,
        "shift": shift,
        "relu": False,
        "acc_bits": acc_bits,
    }
    if case.kind == "conv":
        layer: WeightLayer = Conv2dLayer(
            name="w", shape=(case.out_ch, 1, 1), stride=1, padding=0, **common
        )
    else:
        layer = LinearLayer(name="w", shape=(case.out_ch,), **common)
    inp = InputLayer(name="x", inputs=(), shape=case.fan_in, out=fmt)
    return IntModel(layers=(inp, layer), output="w")


def extreme_inputs(model: IntModel, rng: np.random.Generator) -> np.ndarray:
    """Per output channel, the input maximising its accumulator (``hi`` where w > 0, ``lo``
    where w < 0) and the one minimising it; anything where w = 0."""
    layer, fmt = model.layer(model.output), model.input.out
    assert isinstance(layer, WeightLayer)
    samples = []
    for w_row in np.array(ref_layer_weights(layer), dtype=object):
        anything = rng.integers(fmt.lo, fmt.hi + 1, size=w_row.shape)
        for up, down in ((fmt.hi, fmt.lo), (fmt.lo, fmt.hi)):
            samples.append(np.where(w_row > 0, up, np.where(w_row < 0, down, anything)))
    return np.stack(samples).astype(np.int64)


def check_extremes(model: IntModel) -> None:
    layer, fmt = model.layer(model.output), model.input.out
    assert isinstance(layer, WeightLayer)
    w, bias = ref_layer_weights(layer), layer.bias.tolist()
    x = extreme_inputs(model, np.random.default_rng(0))
    flat_w = [np.array(row, dtype=object).ravel().tolist() for row in w]
    accs = [ref_linear_acc(sample.ravel().tolist(), flat_w, bias) for sample in x]
    limit = 2 ** (layer.acc_bits - 1)
    for o, row in enumerate(flat_w):
        worst = bias[o] + sum(v * (fmt.hi if v > 0 else fmt.lo) for v in row)
        assert accs[2 * o][o] == worst  # the maximising input attains the maximum
        assert -limit <= accs[2 * o + 1][o] <= worst < limit
    assert all(-limit <= a < limit for row in accs for a in row)
    # Exact accumulators on whichever path acc_bits selects (the low bits the shift drops).
    patches = x.reshape(len(x), -1)
    weights = layer.weights_int().reshape(layer.codes.shape[0], -1).T
    assert (execute._matmul(patches, weights, layer.acc_bits) + layer.bias).tolist() == accs
    got = execute.run(model, x)
    assert isinstance(got, np.ndarray)
    lo, hi = layer.out.lo, layer.out.hi
    want = [[ref_requantize(a, layer.shift, False, lo, hi) for a in row] for row in accs]
    assert got.reshape(len(x), -1).tolist() == want


@settings(max_examples=200, deadline=None)
@given(case=extreme_cases())
def test_extreme_inputs_fit_accumulator_and_match_reference(case: ExtremeCase) -> None:
    check_extremes(extreme_model(case))


@pytest.mark.parametrize(
    "bits, max_exp, in_bits, path",
    [
        (5, 7, 8, "float64"),  # the bench's formats
        (7, 31, 14, "float64"),  # just below the 52-bit limit
        (7, 31, 24, "int64"),  # 7-bit weights, 24-bit activations
        (8, 40, 16, "int64"),
        (8, 36, 20, "int64"),  # up to the 62-bit ceiling
    ],
)
@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_extremes_on_both_matmul_paths(
    kind: str, bits: int, max_exp: int, in_bits: int, path: str
) -> None:
    fan_in = (3, 3, 3) if kind == "conv" else (12,)
    for seed in range(5):
        case = ExtremeCase(
            kind=kind,
            bits=bits,
            n1=0,
            max_exp=max_exp,
            in_bits=in_bits,
            in_signed=bool(seed % 2),
            out_ch=3,
            fan_in=fan_in,
            bias_scale=2,
            headroom=0,
            seed=seed,
        )
        model = extreme_model(case)
        acc_bits = model.weight_layers()[0].acc_bits
        assert (acc_bits > execute._EXACT_FLOAT_BITS) == (path == "int64"), acc_bits
        check_extremes(model)


def test_accumulator_width_is_tight() -> None:
    """All-positive weights, unsigned input, no bias: the maximum needs every bit of the
    width, so the fit check fails for an accumulator one bit narrower."""
    fmt = ActFormat(bits=8, signed=False, frac=0)
    codes = np.zeros((1, 5), dtype=np.uint8)  # zero flag clear, sign +, index 0: w_int = 8
    bias = np.zeros(1, dtype=np.int64)
    acc_bits = accumulator_bits(np.array(weight_abs_sums(codes, 4, 0)), bias, fmt.max_abs)
    layer = LinearLayer(
        name="w",
        inputs=("x",),
        shape=(1,),
        out=ActFormat(32, True, 3),
        bits=4,
        n1=0,
        n2=-3,
        codes=codes,
        bias=bias,
        shift=0,
        relu=False,
        acc_bits=acc_bits,
    )
    model = IntModel(
        layers=(InputLayer(name="x", inputs=(), shape=(5,), out=fmt), layer), output="w"
    )
    assert ref_linear_acc([255] * 5, ref_layer_weights(layer), [0]) == [5 * 8 * 255]
    assert 2 ** (acc_bits - 2) <= 5 * 8 * 255 < 2 ** (acc_bits - 1)
    check_extremes(model)
    narrow = dataclasses.replace(layer, acc_bits=acc_bits - 1)
    with pytest.raises((AssertionError, PackageError)):
        check_extremes(IntModel(layers=(model.input, narrow), output="w"))


def test_float_path_would_be_caught_where_it_is_inexact() -> None:
    """The exactness checks can fail: a float64 product of a 56-bit accumulator loses the 1."""
    x = np.array([[1 << 24, 1]], dtype=np.int64)
    w = np.array([[1 << 31], [1]], dtype=np.int64)
    exact = (1 << 55) + 1
    assert execute._matmul(x, w, 57).tolist() == [[exact]]
    assert execute._matmul(x, w, execute._EXACT_FLOAT_BITS).tolist() != [[exact]]


# --- the rounding rule, and checkers that catch wrong ones -------------------------------

# (acc, shift, expected): floor((acc + 2**(r-1)) / 2**r), worked by hand.
ROUNDING = [
    (5, 1, 3),
    (-5, 1, -2),
    (-3, 1, -1),
    (3, 1, 2),
    (4, 1, 2),
    (-4, 1, -2),
    (6, 2, 2),
    (-6, 2, -1),
    (7, 2, 2),
    (-7, 2, -2),
    (2, 2, 1),
    (-2, 2, 0),
    (-1, 2, 0),
    (12, 3, 2),
    (-12, 3, -1),
    (-13, 3, -2),
    (3, 0, 3),
    (-3, -2, -12),
    (100, -1, 127),
]

WRONG_RULES: dict[str, Callable[[int, int], int]] = {
    "half even": lambda a, r: int(np.round(a / 2**r)) if r > 0 else a * 2**-r,
    "truncate": lambda a, r: int(np.trunc(a / 2**r)) if r > 0 else a * 2**-r,
    "floor": lambda a, r: a >> r if r > 0 else a * 2**-r,
    "half away from zero": lambda a, r: (
        int(np.sign(a) * np.floor(abs(a) / 2**r + 0.5)) if r > 0 else a * 2**-r
    ),
    "half down": lambda a, r: -((-a + 2 ** (r - 1)) // 2**r) if r > 0 else a * 2**-r,
}


@pytest.mark.parametrize("acc, shift, expected", ROUNDING)
def test_reference_rounds_half_up(acc: int, shift: int, expected: int) -> None:
    assert ref_requantize(acc, shift, False, -128, 127) == expected


@pytest.mark.parametrize("rule", WRONG_RULES)
def test_reference_rejects_wrong_rounding(rule: str) -> None:
    wrong = WRONG_RULES[rule]
    assert any(
        min(max(wrong(a, r), -128), 127) != ref_requantize(a, r, False, -128, 127)
        for a, r, _ in ROUNDING
    )


def unit_linear(shift: int, *, bias: int = 0, relu: bool = False) -> IntModel:
    """``acc = x + bias`` (one weight 1, 4-bit code index n1 - n2 = 3), requantised by
    ``shift`` (the output format's frac is chosen so that shift = frac_in - n2 - frac_out)."""
    fmt = ActFormat(bits=8, signed=True, frac=0)
    layer = LinearLayer(
        name="fc",
        inputs=("x",),
        shape=(1,),
        out=ActFormat(bits=8, signed=True, frac=3 - shift),
        bits=4,
        n1=0,
        n2=-3,
        codes=np.array([[3]], dtype=np.uint8),
        bias=np.array([bias]),
        shift=shift,
        relu=relu,
        acc_bits=accumulator_bits(np.array([1]), np.array([bias]), fmt.max_abs),
    )
    return IntModel(
        layers=(InputLayer(name="x", inputs=(), shape=(1,), out=fmt), layer), output="fc"
    )


@pytest.mark.parametrize("acc, shift, expected", ROUNDING)
def test_executor_rounds_half_up(acc: int, shift: int, expected: int) -> None:
    bias = acc - 100 if acc > 127 else 0
    got = execute.run(unit_linear(shift, bias=bias), np.array([[acc - bias]]))
    assert isinstance(got, np.ndarray)
    assert got.tolist() == [[expected]]


def _wrong_requantize(rule: str) -> Callable[..., np.ndarray]:
    def requantize(acc: np.ndarray, *, shift: int, relu: bool, out: ActFormat) -> np.ndarray:
        y = np.vectorize(lambda a: WRONG_RULES[rule](int(a), shift), otypes=[np.int64])(acc)
        return np.clip(y, max(out.lo, 0) if relu else out.lo, out.hi)

    return requantize


@pytest.mark.parametrize("rule", WRONG_RULES)
def test_comparison_catches_executor_with_wrong_rounding(
    rule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = np.arange(-16, 17).reshape(-1, 1)
    assert all(first_mismatch(unit_linear(s), x) is None for s in (1, 2, 3))
    monkeypatch.setattr(execute, "requantize", _wrong_requantize(rule))
    assert any(first_mismatch(unit_linear(s), x) is not None for s in (1, 2, 3))


_IM2COL = execute._im2col


def _transposed_im2col(x: np.ndarray, geometry: Any) -> Any:
    """im2col with kh and kw swapped: a convolution by the transposed kernel."""
    patches, ho, wo = _IM2COL(x, geometry)
    kernel = geometry.kernel[0]
    taps = patches.reshape(-1, x.shape[1], kernel, kernel).transpose(0, 1, 3, 2)
    return taps.reshape(patches.shape), ho, wo


def _flatten_hwc(layer: Layer, operands: list[np.ndarray]) -> np.ndarray:
    return operands[0].transpose(0, 2, 3, 1).reshape(len(operands[0]), -1)


MUTANTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "tap order": lambda mp: mp.setattr(execute, "_im2col", _transposed_im2col),
    "flatten HWC": lambda mp: mp.setitem(execute._HANDLERS, FlattenLayer, _flatten_hwc),
    "avgpool floors": lambda mp: mp.setattr(
        execute, "round_shift", lambda acc, shift: np.asarray(acc) >> shift
    ),
}


MUTANT_SPECS = {
    "tap order": {"k": 3, "pool": "none"},
    "flatten HWC": {"in_ch": 2, "out_ch": 3, "pool": "none", "stride": 1},
    "avgpool floors": {"pool": "avg", "px": 6, "stride": 1},
}


@pytest.mark.parametrize("mutant", MUTANT_SPECS)
def test_comparison_catches_executor_mutants(mutant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [random_case(seed, **MUTANT_SPECS[mutant]) for seed in range(10)]
    assert all(first_mismatch(model, x) is None for model, x in cases)
    MUTANTS[mutant](monkeypatch)
    assert any(first_mismatch(model, x) is not None for model, x in cases)


# --- input validation ---------------------------------------------------------------------


def _small_model(signed: bool) -> IntModel:
    return random_case(0, in_signed=signed, in_bits=8, in_ch=2, px=4)[0]


@pytest.mark.parametrize(
    "signed, make, match",
    [
        (True, lambda s: np.full((2, *s), 128), "must lie in"),
        (True, lambda s: np.full((2, *s), -129), "must lie in"),
        (False, lambda s: np.full((2, *s), 256), "must lie in"),
        (False, lambda s: np.full((2, *s), -1), "must lie in"),
        (False, lambda s: np.zeros(s, dtype=np.int64), "shape"),
        (False, lambda s: np.zeros((2, s[0] + 1, *s[1:]), dtype=np.int64), "shape"),
        (False, lambda s: np.zeros((2, *s, 1), dtype=np.int64), "shape"),
        (False, lambda s: np.zeros((2, *s)), "integers"),
        (True, lambda s: np.ones((2, *s), dtype=np.float32), "integers"),
        (False, lambda s: np.ones((2, *s), dtype=bool), "integers"),
    ],
    ids=[
        "above",
        "below",
        "above-unsigned",
        "negative-unsigned",
        "no-batch",
        "channels",
        "extra-dim",
        "float",
        "float32",
        "bool",
    ],
)
def test_bad_inputs_raise_config_error(
    signed: bool, make: Callable[[tuple[int, ...]], np.ndarray], match: str
) -> None:
    model = _small_model(signed)
    with pytest.raises(ConfigError, match=match):
        execute.run(model, make(model.input.shape))


def test_range_ends_are_accepted() -> None:
    model = _small_model(signed=True)
    x = np.stack([np.full(model.input.shape, v, dtype=np.int8) for v in (-128, 127)])
    assert first_mismatch(model, x) is None


# --- bugs found by these tests, fixed: they stay as regressions ------------------------------


def test_uint64_input_out_of_range_is_refused() -> None:
    model = _small_model(signed=True)
    x = np.full((1, *model.input.shape), 2**64 - 1, dtype=np.uint64)  # runs as if all -1
    with pytest.raises(ConfigError):
        execute.run(model, x)


def test_empty_batch_gives_empty_output() -> None:
    model = _small_model(signed=True)
    out = execute.run(model, np.zeros((0, *model.input.shape), dtype=np.int64))
    assert isinstance(out, np.ndarray)
    assert out.shape == (0, *model.layer(model.output).shape)


@pytest.mark.parametrize("acc, shift", [(5, 64), (-5, 67)])
def test_right_shift_of_64_or_more_rounds_half_up(acc: int, shift: int) -> None:
    # 8-bit codes have n2 = n1 - 63, so shift = frac_in - n2 - frac_out passes 64 easily.
    assert ref_requantize(acc, shift, False, -128, 127) == 0
    got = execute.run(unit_linear(shift), np.array([[acc]]))
    assert isinstance(got, np.ndarray)
    assert got.tolist() == [[0]]


@pytest.mark.parametrize("acc, shift", [(3, -62), (1, -63), (1, -64)])
def test_large_left_shift_saturates(acc: int, shift: int) -> None:
    assert ref_requantize(acc, shift, False, -128, 127) == 127
    got = execute.run(unit_linear(shift), np.array([[acc]]))
    assert isinstance(got, np.ndarray)
    assert got.tolist() == [[127]]


def test_understated_accumulator_width_is_refused() -> None:
    """7-bit weights 2**31 and 1, 24-bit inputs: the accumulator needs 56 bits, the layer
    claims 52, and the float64 product silently loses the low bit."""
    fmt = ActFormat(bits=24, signed=True, frac=0)
    codes = np.array([[0, 31]], dtype=np.uint8)  # w_int = 2**31, 1
    bias = np.array([-(2**54 - 2**31)], dtype=np.int64)  # so that acc = 1
    x = np.array([[2**23 - 1, 1]])
    with pytest.raises(PackageError, match="acc_bits is 52"):
        layer = LinearLayer(
            name="w",
            inputs=("x",),
            shape=(1,),
            out=ActFormat(8, True, 31),
            bits=7,
            n1=0,
            n2=-31,
            codes=codes,
            bias=bias,
            shift=0,
            relu=False,
            acc_bits=52,
        )
        inp = InputLayer(name="x", inputs=(), shape=(2,), out=fmt)
        execute.run(IntModel(layers=(inp, layer), output="w"), x)
