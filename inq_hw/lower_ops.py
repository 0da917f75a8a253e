"""Lowering handlers for CNNs written the ordinary way (registered into :mod:`inq_hw.lower`).

Modules: ``Conv2d`` of any stride, padding, dilation, groups (depthwise included) and
rectangular kernels; ``MaxPool2d`` with padding (the format's minimum), ``ceil_mode`` and
any stride; ``AvgPool2d`` and ``AdaptiveAvgPool2d`` of any window; ``ReLU6`` and
``Hardtanh`` as clamps. Functions and tensor methods, as torchvision writes them: ``+``,
``+=``, ``torch.add`` (residual adds), ``torch.cat`` (channels), ``F.relu``/``x.relu()``,
``torch.flatten``, ``.view``/``.reshape`` to ``(N, -1)``, ``F.adaptive_avg_pool2d``,
``F.avg_pool2d``, ``F.max_pool2d``, ``x.mean((2, 3))``, ``F.relu6``, ``F.hardtanh``,
``torch.clamp``.

Average pooling: a power-of-two square window without padding stays the shift-only
:class:`~inq_hw.intmodel.layers.AvgPoolLayer` of earlier packages; any other window is a
:class:`~inq_hw.intmodel.layers.MeanPoolLayer`: the window sum times the constant of
:func:`~inq_hw.intmodel.arith.mean_constant` (shifts and adds), its ``mode`` recorded in the
package (``"shift"`` exact, ``"shift_add"`` within ``2**-15`` relative). A pool folded
before INQ (:func:`inq_hw.fold.fold_mean_pools`, a :class:`~inq_hw.models.FoldedMean`) is
the sum and shift of mode ``"folded"``: the next weight layer carries the rest of 1/N.
"""

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.nn import functional as F

from inq_hw.errors import ModelError
from inq_hw.intmodel.arith import ActFormat, adaptive_window, folded_mean, mean_constant
from inq_hw.intmodel.layers import (
    AvgPoolLayer,
    ClampLayer,
    ConcatLayer,
    Conv2dLayer,
    FlattenLayer,
    Layer,
    MaxPoolLayer,
    MeanPoolLayer,
    ReLULayer,
)
from inq_hw.lower import (
    RELU_CALLS,
    LoweringContext,
    _lower_weights,
    _require_rank,
    add_layer,
    lowers,
    lowers_call,
)
from inq_hw.models import FoldedMean, node_argument

__all__: list[str] = []


def _fail(name: str, what: str, reason: str) -> ModelError:
    return ModelError(f"Cannot lower {name!r} ({what}): {reason}")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def _what(ctx: LoweringContext, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(ctx.module(node)).__name__
    return f"{node.op} {getattr(node.target, '__name__', node.target)}"


def _source(ctx: LoweringContext, node: fx.Node) -> Layer:
    """The layer producing the first (tensor) argument of ``node``."""
    first = node.args[0] if node.args else node.kwargs.get("input")
    if not isinstance(first, fx.Node) or first not in ctx.produced:
        raise _fail(ctx.name(node), _what(ctx, node), "its first argument is not a tensor")
    return ctx.produced[first]


def _image_source(ctx: LoweringContext, node: fx.Node) -> Layer:
    source = _source(ctx, node)
    if len(source.shape) != 3:
        raise _fail(
            ctx.name(node), _what(ctx, node), f"needs a (C, H, W) input, not {source.shape}"
        )
    return source


_argument = node_argument


# --- convolution --------------------------------------------------------------------------


def _conv_padding(name: str, conv: nn.Conv2d) -> tuple[int, int]:
    padding = conv.padding
    kh, kw = conv.kernel_size
    dh, dw = conv.dilation
    if padding == "valid":
        return 0, 0
    if padding == "same":
        spans = (dh * (kh - 1), dw * (kw - 1))
        if any(span % 2 for span in spans):
            raise _fail(name, "Conv2d", f"padding='same' is asymmetric for kernel {(kh, kw)}")
        return spans[0] // 2, spans[1] // 2
    return _pair(padding)


@lowers(nn.Conv2d)
def _lower_conv2d(ctx: LoweringContext, node: fx.Node, conv: nn.Conv2d) -> None:
    name = str(node.target)
    if conv.padding_mode != "zeros":
        raise _fail(name, "Conv2d", f"padding_mode must be 'zeros', not {conv.padding_mode!r}")
    _require_rank(ctx.operands(node)[0], 3, name, conv)
    (sh, sw), (ph, pw) = _pair(conv.stride), _conv_padding(name, conv)
    (dh, dw), groups = _pair(conv.dilation), int(conv.groups)
    # Only what differs from a plain convolution is stored: plain packages stay as before.
    extra: dict[str, int] = {}
    for key, value, default in (
        ("stride_w", sw, sh),
        ("padding_w", pw, ph),
        ("dilation", dh, 1),
        ("dilation_w", dw, dh),
        ("groups", groups, 1),
    ):
        if value != default:
            extra[key] = value
    _lower_weights(ctx, node, conv, Conv2dLayer, stride=sh, padding=ph, **extra)


# --- pooling ------------------------------------------------------------------------------


def _maxpool(
    ctx: LoweringContext,
    node: fx.Node,
    *,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
) -> None:
    name, what = ctx.name(node), _what(ctx, node)
    kernel_hw, stride_hw = _pair(kernel), _pair(stride if stride else kernel)
    padding_hw, dilation_hw = _pair(padding), _pair(dilation)
    if kernel_hw[0] != kernel_hw[1] or stride_hw[0] != stride_hw[1]:
        raise _fail(name, what, f"kernel {kernel_hw} and stride {stride_hw} must be square")
    if padding_hw[0] != padding_hw[1] or dilation_hw != (1, 1):
        raise _fail(name, what, f"padding {padding_hw} must be square, dilation 1")
    source = _image_source(ctx, node)
    layer = MaxPoolLayer(
        name,
        (source.name,),
        ctx.shape(node),
        source.out,
        kernel=kernel_hw[0],
        stride=stride_hw[0],
        padding=padding_hw[0] or None,
        ceil_mode=bool(ceil_mode) or None,
    )
    ctx.add(layer, node)


@lowers(nn.MaxPool2d)
def _lower_maxpool(ctx: LoweringContext, node: fx.Node, pool: nn.MaxPool2d) -> None:
    if pool.return_indices:
        raise _fail(str(node.target), "MaxPool2d", "return_indices must be False")
    _maxpool(
        ctx,
        node,
        kernel=pool.kernel_size,
        stride=pool.stride,
        padding=pool.padding,
        dilation=pool.dilation,
        ceil_mode=pool.ceil_mode,
    )


@lowers_call(F.max_pool2d, torch.max_pool2d)
def _lower_max_pool2d(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    if _argument(node, 6, "return_indices", False):
        raise _fail(node.name, "max_pool2d", "return_indices must be False")
    _maxpool(
        ctx,
        node,
        kernel=_argument(node, 1, "kernel_size", None),
        stride=_argument(node, 2, "stride", None),
        padding=_argument(node, 3, "padding", 0),
        dilation=_argument(node, 4, "dilation", 1),
        ceil_mode=_argument(node, 5, "ceil_mode", False),
    )


def _average(
    ctx: LoweringContext,
    node: fx.Node,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    *,
    flatten: bool = False,
    out_hw: tuple[int, int] | None = None,
    folded: bool = False,
) -> None:
    """Average pooling of ``kernel`` windows: a shift-only AvgPoolLayer where it can be,
    else a MeanPoolLayer (also for a stride of 0, one window repeated over ``out_hw``;
    ``folded``: the sum and shift of a :class:`~inq_hw.models.FoldedMean`);
    ``flatten`` adds the ``(C,)`` view of a ``(C, 1, 1)`` result."""
    name, source = ctx.name(node), _image_source(ctx, node)
    (c, h, w), count = source.shape, kernel[0] * kernel[1]
    if out_hw is None:
        out_hw = ((h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1)
    out_shape = (c, *out_hw)
    pool_name = f"{name}.pool" if flatten else name
    layer: Layer
    square = kernel[0] == kernel[1] and stride[0] == stride[1] > 0
    if folded:
        layer = MeanPoolLayer(
            pool_name, (source.name,), out_shape, source.out,
            kernel_h=kernel[0], kernel_w=kernel[1], stride_h=stride[0], stride_w=stride[1],
            multiplier=1, shift=folded_mean(count)[0], mode="folded",
        )  # fmt: skip
    elif square and count & (count - 1) == 0:
        shift = count.bit_length() - 1
        layer = AvgPoolLayer(
            pool_name, (source.name,), out_shape, source.out,
            kernel=kernel[0], stride=stride[0], shift=shift,
        )  # fmt: skip
    else:
        multiplier, shift, mode = mean_constant(count)
        layer = MeanPoolLayer(
            pool_name, (source.name,), out_shape, source.out,
            kernel_h=kernel[0], kernel_w=kernel[1], stride_h=stride[0], stride_w=stride[1],
            multiplier=multiplier, shift=shift, mode=mode,
        )  # fmt: skip
    if not flatten:
        ctx.add(layer, node)
        return
    ctx.add(layer)
    ctx.add(FlattenLayer(name, (pool_name,), (c,), source.out), node)


def _check_avgpool(
    ctx: LoweringContext, node: fx.Node, padding: Any, ceil_mode: bool, divisor: Any
) -> None:
    name, what = ctx.name(node), _what(ctx, node)
    if _pair(padding) != (0, 0) or ceil_mode:
        raise _fail(name, what, "padding and ceil_mode change the divisor per window")
    if divisor is not None:
        raise _fail(name, what, f"divisor_override must be None, not {divisor!r}")
    _image_source(ctx, node)


@lowers(nn.AvgPool2d)
def _lower_avgpool(ctx: LoweringContext, node: fx.Node, pool: nn.AvgPool2d) -> None:
    _check_avgpool(ctx, node, pool.padding, pool.ceil_mode, pool.divisor_override)
    kernel = _pair(pool.kernel_size)
    _average(ctx, node, kernel, _pair(pool.stride if pool.stride else kernel))


@lowers_call(F.avg_pool2d, torch._C._nn.avg_pool2d)
def _lower_avg_pool2d(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    _check_avgpool(
        ctx,
        node,
        _argument(node, 3, "padding", 0),
        _argument(node, 4, "ceil_mode", False),
        _argument(node, 6, "divisor_override", None),
    )
    kernel = _pair(_argument(node, 1, "kernel_size", None))
    stride = _argument(node, 2, "stride", None)
    _average(ctx, node, kernel, _pair(stride if stride else kernel))


def _adaptive(ctx: LoweringContext, node: fx.Node, output_size: Any) -> None:
    name, source = ctx.name(node), _image_source(ctx, node)
    _, h, w = source.shape
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    oh, ow = (h if size[0] is None else size[0]), (w if size[1] is None else size[1])
    along_h, along_w = adaptive_window(h, oh), adaptive_window(w, ow)
    if along_h is None or along_w is None:
        raise _fail(
            name,
            _what(ctx, node),
            f"a {h}x{w} map does not split into {oh}x{ow} equal windows (windows of "
            "different sizes need different divisors)",
        )
    # Stride 0 where every window is the one pixel, repeated (VGG's 7x7 of a 1x1 map).
    kernel, stride = (along_h[0], along_w[0]), (along_h[1], along_w[1])
    _average(ctx, node, kernel, stride, out_hw=(oh, ow))


@lowers(FoldedMean)
def _lower_folded_mean(ctx: LoweringContext, node: fx.Node, pool: FoldedMean) -> None:
    _average(ctx, node, pool.kernel, pool.stride, flatten=pool.flatten, folded=True)


@lowers(nn.AdaptiveAvgPool2d)
def _lower_adaptive(ctx: LoweringContext, node: fx.Node, pool: nn.AdaptiveAvgPool2d) -> None:
    _adaptive(ctx, node, pool.output_size)


@lowers_call(F.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool2d)
def _lower_adaptive_fn(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    _adaptive(ctx, node, _argument(node, 1, "output_size", None))


@lowers_call("mean", torch.mean)
def _lower_mean(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    """``x.mean((2, 3))`` / ``torch.mean(x, [-2, -1], keepdim=...)``: global pooling."""
    name, source = ctx.name(node), _source(ctx, node)
    dims = _argument(node, 1, "dim", None)
    keepdim = bool(_argument(node, 2, "keepdim", False))
    rank = len(source.shape) + 1
    axes = {d % rank for d in ([dims] if isinstance(dims, int) else (dims or ()))}
    if len(source.shape) != 3 or axes != {2, 3} or node.kwargs.get("dtype") is not None:
        raise _fail(name, "mean", f"only the mean over H and W of (N, C, H, W), not dim={dims}")
    h, w = source.shape[1:]
    _average(ctx, node, (h, w), (h, w), flatten=not keepdim)


# --- element-wise ---------------------------------------------------------------------------


def _tensor_operands(ctx: LoweringContext, node: fx.Node, values: Sequence[Any]) -> list[Layer]:
    if not all(isinstance(v, fx.Node) and v in ctx.produced for v in values):
        raise _fail(
            ctx.name(node),
            _what(ctx, node),
            f"every operand must be a tensor of the network, not {list(values)} (a constant "
            "operand has no integer layer)",
        )
    return [ctx.produced[v] for v in values]


@lowers_call(torch.add, "add", "add_", operator.add, operator.iadd)
def _lower_add_call(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    alpha = node.kwargs.get("alpha", 1)
    if alpha != 1 or len(node.args) != 2 or set(node.kwargs) - {"alpha"}:
        raise _fail(node.name, _what(ctx, node), f"only a + b (alpha 1), not alpha={alpha}")
    add_layer(ctx, node, node.name, _tensor_operands(ctx, node, node.args))


@lowers_call(torch.cat, torch.concat, torch.concatenate)
def _lower_cat(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    tensors = _argument(node, 0, "tensors", ())
    dim = _argument(node, 1, "dim", 0)
    operands = _tensor_operands(ctx, node, list(tensors))
    if any(len(op.shape) != 3 for op in operands) or dim not in (1, -3):
        raise _fail(node.name, "cat", f"only channels (dim=1) of images, not dim={dim}")
    out = ctx.calibrate(node, signed=any(op.out.signed for op in operands))
    shifts = tuple(op.out.frac - out.frac for op in operands)
    layer = ConcatLayer(
        node.name, tuple(op.name for op in operands), ctx.shape(node), out, shifts=shifts
    )
    ctx.add(layer, node)


@lowers_call(*RELU_CALLS)
def _lower_relu_call(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    """``F.relu`` / ``x.relu()`` that could not be fused: unsigned, same scale."""
    source = _source(ctx, node)
    out = ActFormat(source.out.bits, False, source.out.frac)
    ctx.add(ReLULayer(node.name, (source.name,), ctx.shape(node), out), node)


def _clamp(ctx: LoweringContext, node: fx.Node, lo: float | None, hi: float | None) -> None:
    """Clamp to ``[lo, hi]`` at the input's scale (bounds rounded inwards)."""
    name, source = ctx.name(node), _source(ctx, node)
    fmt, scale = source.out, 2.0**source.out.frac
    lo_int = fmt.lo if lo is None else max(fmt.lo, math.ceil(lo * scale))
    hi_int = fmt.hi if hi is None else min(fmt.hi, math.floor(hi * scale))
    out = ActFormat(fmt.bits, lo_int < 0, fmt.frac)
    lo_int, hi_int = max(lo_int, out.lo), min(hi_int, out.hi)
    if lo_int > hi_int:
        raise _fail(name, _what(ctx, node), f"empty clamp range [{lo}, {hi}] at this scale")
    ctx.add(ClampLayer(name, (source.name,), ctx.shape(node), out, lo=lo_int, hi=hi_int), node)


@lowers(nn.ReLU6, nn.Hardtanh)
def _lower_hardtanh(ctx: LoweringContext, node: fx.Node, module: nn.Hardtanh) -> None:
    _clamp(ctx, node, float(module.min_val), float(module.max_val))


@lowers_call(F.relu6)
def _lower_relu6(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    _clamp(ctx, node, 0.0, 6.0)


@lowers_call(F.hardtanh)
def _lower_hardtanh_call(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    lo, hi = _argument(node, 1, "min_val", -1.0), _argument(node, 2, "max_val", 1.0)
    _clamp(ctx, node, float(lo), float(hi))


@lowers_call(torch.clamp, torch.clip, "clamp", "clip", "clamp_")
def _lower_clamp(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    lo, hi = _argument(node, 1, "min", None), _argument(node, 2, "max", None)
    if isinstance(lo, fx.Node) or isinstance(hi, fx.Node):
        raise _fail(node.name, "clamp", "the bounds must be constants")
    _clamp(ctx, node, None if lo is None else float(lo), None if hi is None else float(hi))


# --- reshaping ----------------------------------------------------------------------------


def _flatten(ctx: LoweringContext, node: fx.Node) -> None:
    name, source = ctx.name(node), _source(ctx, node)
    shape = ctx.shape(node)
    if shape != (math.prod(source.shape),):
        raise _fail(
            name,
            _what(ctx, node),
            f"only flattening to (N, -1) is a layout the hardware keeps, not {shape}",
        )
    ctx.add(FlattenLayer(name, (source.name,), shape, source.out), node)


@lowers_call(torch.flatten, "flatten")
def _lower_flatten_call(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    start = _argument(node, 1, "start_dim", 0)
    end = _argument(node, 2, "end_dim", -1)
    if start != 1 or end != -1:
        raise _fail(node.name, "flatten", f"only flatten(x, 1), not ({start}, {end})")
    _flatten(ctx, node)


@lowers_call("view", "reshape", torch.reshape)
def _lower_view(ctx: LoweringContext, node: fx.Node, _: None) -> None:
    """``x.view(x.size(0), -1)`` and the like: a flatten, checked on the traced shapes."""
    _flatten(ctx, node)
