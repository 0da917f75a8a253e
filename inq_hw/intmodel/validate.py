"""Structural validation of an integer model: what one layer's dataclass cannot check.

Run when a package is saved or loaded, and once per model object by the golden executor,
so an in-memory model with an understated accumulator or inconsistent shapes is refused
before it can silently compute something else.
"""

import math
import typing
from collections.abc import Callable
from typing import Any

import numpy as np

from inq_hw.errors import PackageError
from inq_hw.intmodel.arith import (
    MAX_ACCUMULATOR_BITS,
    accumulator_bits,
    folded_mean,
    mean_constant,
    signed_bits,
)
from inq_hw.intmodel.codes import compute_n2, weight_abs_sums
from inq_hw.intmodel.layers import (
    AddLayer,
    AvgPoolLayer,
    ClampLayer,
    ConcatLayer,
    Conv2dLayer,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    MeanPoolLayer,
    ReLULayer,
    WeightLayer,
)

__all__ = ["validate_model"]

_CONSTRUCTION_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)


def validate_model(model: IntModel) -> None:
    """Check ``model`` as a graph: what the dataclasses cannot check one layer at a time.

    Shapes along every edge (convolution, pooling and flatten arithmetic, linear fan-in,
    equal add operands), formats that pass through pooling, ``2**shift == kernel**2`` for
    average pooling, ``n2`` from ``n1`` and the bit-width, the requantisation shift
    ``frac_in - n2 - frac_out`` and an accumulator at least as wide as the worst case; for
    a layer with an 8-bit baseline also its shift ``frac_in - baseline_exp - frac_out`` and
    its accumulator width.

    Raises
    ------
    PackageError
        Naming the first inconsistent layer and what is wrong with it.
    """
    by_name = {layer.name: layer for layer in model.layers}
    for position, layer in enumerate(model.layers):
        if position and isinstance(layer, InputLayer):
            _fail(layer, "only the first layer may be an input")
        check = _CHECKS.get(type(layer))
        if check is None:
            _fail(layer, "this kind of layer has no structural check")
        try:
            check(layer, [by_name[name] for name in layer.inputs])
        except _CONSTRUCTION_ERRORS as exc:
            raise PackageError(f"layer {layer.name!r} ({layer.kind}): {exc}") from None


# --- structural checks, one per layer kind ------------------------------------------------

Check = Callable[[Any, list[Layer]], None]
_CHECKS: dict[type[Layer], Check] = {}


def _checks(*kinds: type[Layer]) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        for kind in kinds:
            _CHECKS[kind] = check
        return check

    return register


def _fail(layer: Layer, message: str) -> typing.NoReturn:
    raise PackageError(f"layer {layer.name!r} ({layer.kind}): {message}")


def _operands(layer: Layer, operands: list[Layer], count: int) -> list[Layer]:
    if len(operands) != count:
        _fail(layer, f"reads {count} layer(s), not {len(operands)}")
    return operands


def _image(layer: Layer, source: Layer) -> tuple[int, int, int]:
    if len(source.shape) != 3:
        _fail(layer, f"reads an image (C, H, W), but {source.name!r} has shape {source.shape}")
    c, h, w = source.shape
    return c, h, w


def _window(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def _expect_shape(layer: Layer, expected: tuple[int, ...]) -> None:
    if layer.shape != expected:
        _fail(layer, f"shape is {layer.shape}, but its input and parameters give {expected}")


def _expect_format_of(layer: Layer, source: Layer) -> None:
    if layer.out != source.out:
        _fail(layer, f"output format {layer.out} must be its input's {source.out}")


def _check_weights(layer: WeightLayer, source: Layer) -> None:
    n2 = compute_n2(layer.n1, layer.bits)
    if layer.n2 != n2:
        _fail(layer, f"n2 is {layer.n2}, but n1 + 1 - 2**(bits-2) = {n2}")
    shift = source.out.frac - layer.n2 - layer.out.frac
    if layer.shift != shift:
        _fail(
            layer,
            f"shift is {layer.shift}, but frac_in - n2 - frac_out = "
            f"{source.out.frac} - ({layer.n2}) - {layer.out.frac} = {shift}",
        )
    need = accumulator_bits(
        weight_abs_sums(layer.codes, layer.bits), layer.bias, source.out.max_abs
    )
    if not need <= layer.acc_bits <= MAX_ACCUMULATOR_BITS:
        _fail(layer, f"acc_bits is {layer.acc_bits}, but the worst case needs {need}")
    if layer.has_baseline:
        _check_baseline(layer, source)


def _check_baseline(layer: WeightLayer, source: Layer) -> None:
    """The 8-bit baseline's shift and accumulator (dtypes, shapes and range: the layer)."""
    assert layer.baseline_weights is not None and layer.baseline_bias is not None
    exp, shift = layer.baseline_exp, layer.baseline_shift
    assert exp is not None and shift is not None and layer.baseline_acc_bits is not None
    expected = source.out.frac - exp - layer.out.frac
    if shift != expected:
        _fail(
            layer,
            f"baseline_shift is {shift}, but frac_in - baseline_exp - frac_out = "
            f"{source.out.frac} - ({exp}) - {layer.out.frac} = {expected}",
        )
    weights = np.abs(layer.baseline_weights.astype(np.int64))
    sums = weights.reshape(weights.shape[0], -1).sum(axis=1).astype(object)
    need = accumulator_bits(sums, layer.baseline_bias, source.out.max_abs)
    if not need <= layer.baseline_acc_bits <= MAX_ACCUMULATOR_BITS:
        _fail(
            layer,
            f"baseline_acc_bits is {layer.baseline_acc_bits}, but the worst case needs {need}",
        )


@_checks(InputLayer)
def _check_input(layer: InputLayer, operands: list[Layer]) -> None:
    _operands(layer, operands, 0)
    if len(layer.shape) not in (1, 3):
        _fail(layer, f"shape must be (C, H, W) or (F,), not {layer.shape}")


@_checks(Conv2dLayer)
def _check_conv(layer: Conv2dLayer, operands: list[Layer]) -> None:
    (source,) = _operands(layer, operands, 1)
    c, h, w = _image(layer, source)
    shape, geometry = layer.codes.shape, layer.geometry()
    if c % geometry.groups:
        _fail(layer, f"{c} input channels do not split into {geometry.groups} groups")
    if shape[1] * geometry.groups != c:
        groups = f" ({geometry.groups} groups)" if geometry.groups > 1 else ""
        _fail(
            layer,
            f"weights expect {shape[1] * geometry.groups} input channels{groups}, but "
            f"{source.name!r} has {c}",
        )
    _expect_shape(layer, (shape[0], *geometry.out_size(h, w)))
    _check_weights(layer, source)


@_checks(LinearLayer)
def _check_linear(layer: LinearLayer, operands: list[Layer]) -> None:
    (source,) = _operands(layer, operands, 1)
    if len(source.shape) != 1:
        _fail(layer, f"reads a flat vector, but {source.name!r} has shape {source.shape}")
    if layer.codes.ndim != 2 or layer.codes.shape[1] != source.shape[0]:
        _fail(layer, f"weights must have shape (out, {source.shape[0]}), not {layer.codes.shape}")
    _expect_shape(layer, (layer.codes.shape[0],))
    _check_weights(layer, source)


@_checks(MaxPoolLayer, AvgPoolLayer)
def _check_pool(layer: MaxPoolLayer | AvgPoolLayer, operands: list[Layer]) -> None:
    (source,) = _operands(layer, operands, 1)
    c, h, w = _image(layer, source)
    if layer.kernel < 1 or layer.stride < 1:
        _fail(layer, f"kernel {layer.kernel} and stride {layer.stride} must be positive")
    k, s = layer.kernel, layer.stride
    if isinstance(layer, MaxPoolLayer):
        p = layer.padding or 0
        if not 0 <= 2 * p <= k:
            _fail(layer, f"padding {p} must lie in [0, kernel/2] (PyTorch's limit)")
        _expect_shape(layer, (c, layer.out_size(h), layer.out_size(w)))
    else:
        _expect_shape(layer, (c, _window(h, k, s), _window(w, k, s)))
    _expect_format_of(layer, source)
    if isinstance(layer, AvgPoolLayer) and (layer.shift < 0 or 1 << layer.shift != k * k):
        _fail(layer, f"averages {k}x{k} = {k * k} elements, not 2**shift = 2**{layer.shift}")


@_checks(MeanPoolLayer)
def _check_meanpool(layer: MeanPoolLayer, operands: list[Layer]) -> None:
    (source,) = _operands(layer, operands, 1)
    c, h, w = _image(layer, source)
    kh, kw, sh, sw = layer.kernel_h, layer.kernel_w, layer.stride_h, layer.stride_w
    if min(kh, kw) < 1 or min(sh, sw) < 0:
        _fail(layer, f"kernel {kh}x{kw} must be positive and stride {sh}x{sw} not negative")
    sizes: list[int] = []
    for axis, size, k, s in (("height", h, kh, sh), ("width", w, kw, sw)):
        if s == 0 and k != size:  # a repeated window must span the whole axis
            _fail(layer, f"stride 0 repeats one window, but its {axis} {k} is not the {size}")
        sizes.append(layer.shape[1 + len(sizes)] if s == 0 else _window(size, k, s))
    _expect_shape(layer, (c, *sizes))
    _expect_format_of(layer, source)
    expected = mean_constant(kh * kw)
    if layer.mode == "folded":  # the weight layer after it carries 2**shift / N
        expected = (1, folded_mean(kh * kw)[0], "folded")
    if (layer.multiplier, layer.shift, layer.mode) != expected:
        _fail(
            layer,
            f"(multiplier, shift, mode) = {(layer.multiplier, layer.shift, layer.mode)}, "
            f"but the mean of {kh * kw} elements is {expected}",
        )
    worst = source.out.max_abs * kh * kw * layer.multiplier
    if signed_bits(worst) > MAX_ACCUMULATOR_BITS:
        _fail(layer, f"the window sum times {layer.multiplier} overflows the accumulator")


@_checks(ClampLayer)
def _check_clamp(layer: ClampLayer, operands: list[Layer]) -> None:
    (source,) = _operands(layer, operands, 1)
    _expect_shape(layer, source.shape)
    if layer.out.frac != source.out.frac or layer.out.signed != (layer.lo < 0):
        _fail(layer, f"format {layer.out} must keep frac {source.out.frac}, signed iff lo < 0")
    if not layer.out.lo <= layer.lo <= layer.hi <= layer.out.hi:
        _fail(layer, f"bounds [{layer.lo}, {layer.hi}] exceed the format's range")


@_checks(ConcatLayer)
def _check_concat(layer: ConcatLayer, operands: list[Layer]) -> None:
    if not operands:
        _fail(layer, "concatenates no operand")
    for operand in operands:
        _image(layer, operand)
        if operand.shape[1:] != layer.shape[1:]:
            _fail(layer, f"operand {operand.name!r} has shape {operand.shape}")
    _expect_shape(layer, (sum(op.shape[0] for op in operands), *layer.shape[1:]))
    expected = tuple(op.out.frac - layer.out.frac for op in operands)
    if layer.shifts != expected:
        _fail(layer, f"shifts are {layer.shifts}, but frac_i - frac_out = {expected}")


@_checks(FlattenLayer)
def _check_flatten(layer: FlattenLayer, operands: list[Layer]) -> None:
    (source,) = _operands(layer, operands, 1)
    _expect_shape(layer, (math.prod(source.shape),))
    _expect_format_of(layer, source)


@_checks(ReLULayer)
def _check_relu(layer: ReLULayer, operands: list[Layer]) -> None:
    (source,) = _operands(layer, operands, 1)
    _expect_shape(layer, source.shape)
    if layer.out.frac != source.out.frac:
        _fail(layer, f"frac is {layer.out.frac}, but its input's is {source.out.frac}")


@_checks(AddLayer)
def _check_add(layer: AddLayer, operands: list[Layer]) -> None:
    if len(operands) < 2:
        _fail(layer, f"adds at least 2 operands, not {len(operands)}")
    for operand in operands:
        if operand.shape != layer.shape:
            _fail(layer, f"operand {operand.name!r} has shape {operand.shape}, not {layer.shape}")
    scales = {operand.out.frac + a for operand, a in zip(operands, layer.align, strict=True)}
    if len(scales) != 1:
        fracs = [operand.out.frac for operand in operands]
        _fail(layer, f"align {layer.align} does not bring fracs {fracs} to one scale")
    shift = scales.pop() - layer.out.frac
    if layer.shift != shift:
        _fail(layer, f"shift is {layer.shift}, but the aligned operands need {shift}")
    worst = sum(op.out.max_abs << a for op, a in zip(operands, layer.align, strict=True))
    need = signed_bits(worst)
    if not need <= layer.acc_bits <= MAX_ACCUMULATOR_BITS:
        _fail(layer, f"acc_bits is {layer.acc_bits}, but the worst case needs {need}")
