"""The golden executor: runs an :class:`IntModel` bit-exactly on integers (numpy, int64).

It implements exactly the arithmetic of :mod:`inq_hw.intmodel.arith` that the hardware
implements: products are exact, accumulators are exact (their width is checked at
lowering), requantisation rounds half up and saturates. Convolutions use im2col and a
matrix product; where the accumulator fits 52 bits the product runs in float64 BLAS,
which is exact there (every partial sum is an integer below 2**53), else in int64.

``weights="baseline"`` runs every weight layer on its 8-bit uniform baseline instead of its
power-of-two weights (:mod:`~inq_hw.intmodel.baseline`): the multiplier twin's arithmetic,
with the same activation formats and the same rounding. Handlers of weight layers receive
the :class:`~inq_hw.intmodel.layers.WeightArithmetic` to compute with as a third argument.
"""

import weakref
from collections.abc import Callable

import numpy as np

from inq_hw.errors import ConfigError
from inq_hw.intmodel.arith import requantize, round_shift
from inq_hw.intmodel.layers import (
    WEIGHT_SETS,
    AddLayer,
    AvgPoolLayer,
    ClampLayer,
    ConcatLayer,
    Conv2dLayer,
    ConvGeometry,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    MeanPoolLayer,
    ReLULayer,
    WeightArithmetic,
    WeightLayer,
)
from inq_hw.intmodel.validate import validate_model

__all__ = ["predict", "run"]

_EXACT_FLOAT_BITS = 52
Handler = Callable[..., np.ndarray]
_HANDLERS: dict[type[Layer], Handler] = {}


def _executes(kind: type[Layer]) -> Callable[[Handler], Handler]:
    def decorate(fn: Handler) -> Handler:
        _HANDLERS[kind] = fn
        return fn

    return decorate


def _matmul(x: np.ndarray, w: np.ndarray, acc_bits: int) -> np.ndarray:
    """Exact ``x @ w`` of integer matrices."""
    if acc_bits <= _EXACT_FLOAT_BITS:
        return np.rint(x.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    return x @ w


def _im2col(x: np.ndarray, geometry: ConvGeometry) -> tuple[np.ndarray, int, int]:
    """``(N, C, H, W)`` → ``(N·Ho·Wo, C·kh·kw)`` patches in C, kh, kw order (zero padding,
    stride and dilation per axis)."""
    (kh, kw), (sh, sw), (ph, pw) = geometry.kernel, geometry.stride, geometry.padding
    dh, dw = geometry.dilation
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    windows = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]
    n, c, ho, wo = windows.shape[:4]
    patches = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    return patches, ho, wo


def _accumulate(arith: WeightArithmetic, patches: np.ndarray) -> np.ndarray:
    weights = arith.weights.reshape(arith.weights.shape[0], -1)
    return _matmul(patches, weights.T, arith.acc_bits) + arith.bias


@_executes(InputLayer)
def _input(layer: InputLayer, inputs: list[np.ndarray]) -> np.ndarray:
    return inputs[0]


@_executes(Conv2dLayer)
def _conv(layer: Conv2dLayer, inputs: list[np.ndarray], arith: WeightArithmetic) -> np.ndarray:
    x, geometry = inputs[0], layer.geometry()
    groups, cout = geometry.groups, layer.codes.shape[0]
    cin_g, cout_g = x.shape[1] // groups, cout // groups
    parts = []
    for g in range(groups):
        patches, ho, wo = _im2col(x[:, g * cin_g : (g + 1) * cin_g], geometry)
        part = WeightArithmetic(
            arith.weights[g * cout_g : (g + 1) * cout_g],
            arith.bias[g * cout_g : (g + 1) * cout_g],
            arith.shift,
            arith.acc_bits,
        )
        parts.append(_accumulate(part, patches))
    acc = parts[0] if groups == 1 else np.concatenate(parts, axis=1)
    y = requantize(acc, shift=arith.shift, relu=layer.relu, out=layer.out)
    return y.reshape(x.shape[0], ho, wo, cout).transpose(0, 3, 1, 2)


@_executes(LinearLayer)
def _linear(layer: LinearLayer, inputs: list[np.ndarray], arith: WeightArithmetic) -> np.ndarray:
    acc = _accumulate(arith, inputs[0])
    return requantize(acc, shift=arith.shift, relu=layer.relu, out=layer.out)


@_executes(MaxPoolLayer)
def _maxpool(layer: MaxPoolLayer, inputs: list[np.ndarray]) -> np.ndarray:
    x, k, s = inputs[0], layer.kernel, layer.stride
    (_, h, w), (_, ho, wo) = x.shape[1:], layer.shape
    p = layer.padding or 0
    # The format's minimum never wins; ceil mode's last window may reach past the padding.
    extra_h, extra_w = (ho - 1) * s + k - h - 2 * p, (wo - 1) * s + k - w - 2 * p
    padded = np.pad(
        x,
        ((0, 0), (0, 0), (p, p + max(extra_h, 0)), (p, p + max(extra_w, 0))),
        constant_values=layer.out.lo,
    )
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))
    return windows[:, :, ::s, ::s][:, :, :ho, :wo].max(axis=(4, 5))


@_executes(MeanPoolLayer)
def _meanpool(layer: MeanPoolLayer, inputs: list[np.ndarray]) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(
        inputs[0], (layer.kernel_h, layer.kernel_w), axis=(2, 3)
    )
    # Stride 0: the one window of the whole axis, repeated over the output.
    windows = windows[:, :, :: layer.stride_h or 1, :: layer.stride_w or 1]
    total = windows.sum(axis=(4, 5), dtype=np.int64) * np.int64(layer.multiplier)
    total = np.broadcast_to(total, (*total.shape[:2], *layer.shape[1:]))
    return np.clip(round_shift(total, layer.shift), layer.out.lo, layer.out.hi)


@_executes(ClampLayer)
def _clamp(layer: ClampLayer, inputs: list[np.ndarray]) -> np.ndarray:
    return np.clip(inputs[0], layer.lo, layer.hi)


@_executes(ConcatLayer)
def _concat(layer: ConcatLayer, inputs: list[np.ndarray]) -> np.ndarray:
    parts = [
        requantize(x, shift=shift, relu=False, out=layer.out)
        for x, shift in zip(inputs, layer.shifts, strict=True)
    ]
    return np.concatenate(parts, axis=1)


@_executes(AvgPoolLayer)
def _avgpool(layer: AvgPoolLayer, inputs: list[np.ndarray]) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(
        inputs[0], (layer.kernel, layer.kernel), axis=(2, 3)
    )
    total = windows[:, :, :: layer.stride, :: layer.stride].sum(axis=(4, 5), dtype=np.int64)
    return np.clip(round_shift(total, layer.shift), layer.out.lo, layer.out.hi)


@_executes(FlattenLayer)
def _flatten(layer: FlattenLayer, inputs: list[np.ndarray]) -> np.ndarray:
    return inputs[0].reshape(inputs[0].shape[0], *layer.shape)


@_executes(ReLULayer)
def _relu(layer: ReLULayer, inputs: list[np.ndarray]) -> np.ndarray:
    return np.clip(inputs[0], 0, layer.out.hi)


@_executes(AddLayer)
def _add(layer: AddLayer, inputs: list[np.ndarray]) -> np.ndarray:
    acc = sum((x << np.int64(a) for x, a in zip(inputs, layer.align, strict=True)), np.int64(0))
    return requantize(np.asarray(acc), shift=layer.shift, relu=layer.relu, out=layer.out)


_VALIDATED: "weakref.WeakSet[IntModel]" = weakref.WeakSet()


def _check_input(model: IntModel, x: np.ndarray) -> np.ndarray:
    fmt = model.input.out
    if x.ndim != len(model.input.shape) + 1 or tuple(x.shape[1:]) != model.input.shape:
        shape = ", ".join(map(str, model.input.shape))
        raise ConfigError(f"Input must have shape (N, {shape}), not {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ConfigError(f"Input must be integers, not {x.dtype}")
    # Compare before any conversion: a uint64 above 2**63 must not wrap into range.
    if x.size and (int(x.min()) < fmt.lo or int(x.max()) > fmt.hi):
        raise ConfigError(f"Input integers must lie in [{fmt.lo}, {fmt.hi}]")
    return x.astype(np.int64)


def run(
    model: IntModel,
    x: np.ndarray,
    *,
    trace: bool = False,
    batch_size: int = 1024,
    weights: str = "po2",
) -> np.ndarray | dict[str, np.ndarray]:
    """Run ``model`` on integer inputs ``x`` of shape ``(N, *input shape)``.

    Returns the output layer's integers, or with ``trace=True`` every layer's integers by
    name (the input included), for finding the first layer where hardware differs. Runs
    ``batch_size`` samples at a time to bound memory. The model is validated as a graph
    (:func:`~inq_hw.intmodel.validate.validate_model`) the first time it is run.
    ``weights="baseline"`` computes every weight layer with its 8-bit uniform baseline
    (the multiplier twin) instead of its power-of-two weights.

    Example usage::

        logits = run(model, quantize_input(images, model.input.out))
        classes = logits.argmax(axis=1)   # ties: the lowest index, as in hardware
        twin = run(model, quantize_input(images, model.input.out), weights="baseline")

    Raises
    ------
    ConfigError
        Inputs of the wrong shape or type, or outside the input format's range; an unknown
        ``weights``, or ``"baseline"`` for a model without baselines.
    PackageError
        The model is inconsistent (shapes, shifts, an understated accumulator).
    """
    arithmetic = _arithmetic(model, weights)
    if model not in _VALIDATED:
        validate_model(model)
        _VALIDATED.add(model)
    x = _check_input(model, np.asarray(x))
    starts = range(0, max(len(x), 1), batch_size)
    chunks = [_run_batch(model, x[i : i + batch_size], arithmetic) for i in starts]
    values = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    return values if trace else values[model.output]


def _arithmetic(model: IntModel, weights: str) -> dict[str, WeightArithmetic]:
    """Each weight layer's arithmetic for the weight set ``weights``, by layer name."""
    if weights not in WEIGHT_SETS:
        raise ConfigError(f"Weights must be one of {WEIGHT_SETS}, not {weights!r}")
    if weights == "baseline":
        lacking = [layer.name for layer in model.weight_layers() if not layer.has_baseline]
        if lacking:
            raise ConfigError(
                f"The model has no 8-bit baseline (lowered without its FP32 source?) for "
                f"layer(s) {lacking}"
            )
    return {layer.name: layer.arithmetic(weights) for layer in model.weight_layers()}


def _run_batch(
    model: IntModel, x: np.ndarray, arithmetic: dict[str, WeightArithmetic]
) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for layer in model.layers:
        operands = [x] if isinstance(layer, InputLayer) else [values[n] for n in layer.inputs]
        handler = _HANDLERS[type(layer)]
        if isinstance(layer, WeightLayer):
            values[layer.name] = handler(layer, operands, arithmetic[layer.name])
        else:
            values[layer.name] = handler(layer, operands)
    return values


def predict(model: IntModel, x: np.ndarray) -> np.ndarray:
    """Predicted class per sample: argmax of the output integers (lowest index on ties)."""
    out = run(model, x)
    assert isinstance(out, np.ndarray)
    return out.argmax(axis=1)
