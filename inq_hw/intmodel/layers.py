"""The integer model: frozen dataclasses that every stage after lowering reads.

An :class:`IntModel` is a list of layers in execution order; each layer names the layers
it reads (``inputs``), its output shape (without the batch dimension) and the
:class:`~inq_hw.intmodel.arith.ActFormat` of its output integers. Weight layers hold the
packed b-bit power-of-two codes of :mod:`inq_hw.intmodel.codes`, the bias as an integer at
accumulator scale, the requantisation shift and the accumulator width. Layer kinds are
registered by name with :func:`layer_kind` so the package reader needs no if/elif chain.

Every weight layer may also carry its **8-bit uniform baseline** (ARCHITECTURE.md,
"Baselines"): the same layer with constant 8-bit non-power-of-two weights, from which
rtl_gen builds the multiplier twin and which the golden executor can run
(``run(..., weights="baseline")``). With W the layer's FP32 weights (the checkpoint the INQ
run started from, BatchNorm folded like the INQ model) and b its float bias:

* ``baseline_exp = k``, the smallest integer with ``max|W| / 2**k <= 127``;
* ``baseline_weights = clip(round_half_up(W / 2**k), -127, 127)`` as ``int8``, the codes'
  shape (so ``max|baseline_weights|`` lies in [64, 127]: all 8 bits are used);
* the accumulator is in units ``2**(k - frac_in)``, and
  ``baseline_bias = round_half_up(b · 2**(frac_in - k))`` as ``int64``;
* ``baseline_shift = frac_in - k - frac_out``, with the po2 layer's input and output
  formats, requantised by the same rule (round half up, ReLU, saturation);
* ``baseline_acc_bits`` from the worst case ``|bias| + Σ|w| · max|x_int|``.

The five fields are all present or all ``None`` (a package lowered without its FP32
source); :mod:`inq_hw.intmodel.baseline` computes them. A sixth, ``baseline_bits``, is the
twin's weight width when it is not 8: the **uniform twin at the design's own width**,
trained by the same incremental re-training (``inq-hw export --twin``); its weights lie in
``[-(2**(k-1) - 1), 2**(k-1) - 1]`` by the same rules with ``k`` for 8
(:func:`~inq_hw.intmodel.baseline.uniform_exponent`).
"""

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import numpy as np

from inq_hw.errors import ConfigError
from inq_hw.intmodel import codes as weight_codes
from inq_hw.intmodel.arith import ActFormat, uniform_max
from inq_hw.intmodel.codes import compute_n2

__all__ = [
    "LAYER_KINDS",
    "WEIGHT_SETS",
    "AddLayer",
    "AvgPoolLayer",
    "ClampLayer",
    "ConcatLayer",
    "Conv2dLayer",
    "ConvGeometry",
    "FlattenLayer",
    "InputLayer",
    "IntModel",
    "Layer",
    "LinearLayer",
    "MaxPoolLayer",
    "MeanPoolLayer",
    "ReLULayer",
    "WeightArithmetic",
    "WeightLayer",
    "layer_kind",
]

#: Which weights a weight layer computes with: its power-of-two codes or its baseline.
WEIGHT_SETS = ("po2", "baseline")
#: Largest magnitude of an 8-bit baseline weight: symmetric (negation never overflows).
BASELINE_MAX = uniform_max(8)
#: Width of the baseline weights when a layer does not say (``baseline_bits`` is None).
DEFAULT_BASELINE_BITS = 8
_BASELINE_FIELDS = (
    "baseline_weights",
    "baseline_bias",
    "baseline_exp",
    "baseline_shift",
    "baseline_acc_bits",
)

LAYER_KINDS: dict[str, type["Layer"]] = {}
_L = TypeVar("_L", bound=type["Layer"])


def layer_kind(name: str) -> Any:
    """Class decorator: register a layer class under its ``kind`` name."""

    def decorate(cls: _L) -> _L:
        cls.kind = name
        LAYER_KINDS[name] = cls
        return cls

    return decorate


@dataclass(frozen=True, eq=False)
class Layer:
    """Common part of every layer.

    Members
    -------
    name : str
        Unique name (the PyTorch module's name where there is one).
    inputs : tuple of str
        Names of the layers whose outputs this one reads (``()`` for the input).
    shape : tuple of int
        Output shape without the batch dimension: ``(C, H, W)`` or ``(F,)``.
    out : ActFormat
        Format of the output integers.
    """

    kind: ClassVar[str] = ""
    name: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    out: ActFormat

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Layer name must be a non-empty string, not {self.name!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d < 1 for d in self.shape):
            raise ConfigError(f"Layer {self.name!r}: shape must be positive, not {self.shape}")

    def params(self) -> dict[str, Any]:
        """JSON-ready scalar fields of the subclass (arrays, common fields and optional
        fields that are ``None`` excluded)."""
        common = {"name", "inputs", "shape", "out"}
        return {
            f.name: value
            for f in fields(self)
            if f.name not in common
            and not isinstance(value := getattr(self, f.name), np.ndarray)
            and not (value is None and f.default is None)
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The integer arrays of the layer, by field name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }


@layer_kind("input")
@dataclass(frozen=True, eq=False)
class InputLayer(Layer):
    """The network input: integers of ``out`` format, produced on the host."""


@dataclass(frozen=True, eq=False)
class WeightLayer(Layer):
    """A layer with power-of-two weights: ``acc = Σ x_int·w_int + bias``, then requantise.

    Members
    -------
    bits, n1, n2 : int
        Code width and exponent range of the weights.
    codes : numpy.ndarray
        ``uint8`` packed codes (``zero << (b-1) | sign << (b-2) | index``), weight shape.
    bias : numpy.ndarray
        ``int64`` bias per output, in accumulator units ``2**(n2 - frac_in)``.
    shift : int
        Requantisation shift ``frac_in - n2 - frac_out`` (right when positive).
    relu : bool
        ReLU fused after requantisation.
    acc_bits : int
        Accumulator width from the worst case; it cannot overflow.
    baseline_weights : numpy.ndarray or None
        ``int8`` 8-bit uniform weights in [-127, 127], weight shape, in units
        ``2**baseline_exp`` (module docstring). Keyword-only, like the other baseline fields.
    baseline_bias : numpy.ndarray or None
        ``int64`` bias per output in the baseline's accumulator units
        ``2**(baseline_exp - frac_in)``.
    baseline_exp : int or None
        Exponent ``k`` of the baseline's weight step ``2**k``.
    baseline_shift : int or None
        The baseline's requantisation shift ``frac_in - baseline_exp - frac_out``.
    baseline_acc_bits : int or None
        The baseline's accumulator width from its worst case.
    baseline_bits : int or None
        The baseline's weight width, 2 to 8, when it is not 8 (a uniform twin trained at
        the design's width); ``None`` means 8. See :attr:`twin_bits`.
    """

    bits: int
    n1: int
    n2: int
    codes: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    shift: int
    relu: bool
    acc_bits: int
    baseline_weights: np.ndarray | None = field(default=None, kw_only=True, repr=False)
    baseline_bias: np.ndarray | None = field(default=None, kw_only=True, repr=False)
    baseline_exp: int | None = field(default=None, kw_only=True)
    baseline_shift: int | None = field(default=None, kw_only=True)
    baseline_acc_bits: int | None = field(default=None, kw_only=True)
    baseline_bits: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.codes.dtype != np.uint8 or self.bias.dtype != np.int64:
            raise ConfigError(f"Layer {self.name!r}: codes must be uint8 and bias int64")
        if self.n2 != compute_n2(self.n1, self.bits):
            raise ConfigError(
                f"Layer {self.name!r}: n2 must be n1 + 1 - 2**(bits-2), not {self.n2}"
            )
        if self.bias.shape != (self.codes.shape[0],):
            raise ConfigError(
                f"Layer {self.name!r}: bias shape {self.bias.shape} does not match the codes"
            )
        # Validates the code range and the zero-code canonical form.
        weight_codes.unpack(self.codes, self.bits)
        self._check_baseline()

    @property
    def has_baseline(self) -> bool:
        """Whether the layer carries its uniform baseline (the multiplier twin's weights)."""
        return self.baseline_weights is not None

    @property
    def twin_bits(self) -> int:
        """Weight width of the baseline: ``baseline_bits``, or 8 when it is ``None``."""
        return DEFAULT_BASELINE_BITS if self.baseline_bits is None else self.baseline_bits

    def _check_baseline(self) -> None:
        present = [name for name in _BASELINE_FIELDS if getattr(self, name) is not None]
        if self.baseline_bits is not None:
            if not present:
                raise ConfigError(f"Layer {self.name!r}: baseline_bits without a baseline")
            if isinstance(self.baseline_bits, bool) or not isinstance(
                self.baseline_bits, int | np.integer
            ):
                raise ConfigError(
                    f"Layer {self.name!r}: baseline_bits must be an integer, "
                    f"not {self.baseline_bits!r}"
                )
            object.__setattr__(self, "baseline_bits", int(self.baseline_bits))
            try:
                uniform_max(self.baseline_bits)
            except ConfigError as exc:
                raise ConfigError(f"Layer {self.name!r}: baseline_bits: {exc}") from None
        if not present:
            return
        if len(present) != len(_BASELINE_FIELDS):
            missing = [name for name in _BASELINE_FIELDS if name not in present]
            raise ConfigError(
                f"Layer {self.name!r}: the baseline fields are all present or all None, "
                f"but {missing} are missing"
            )
        for name in ("baseline_exp", "baseline_shift", "baseline_acc_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"Layer {self.name!r}: {name} must be an integer, not {value!r}")
            object.__setattr__(self, name, int(value))
        weights, bias = self.baseline_weights, self.baseline_bias
        if not isinstance(weights, np.ndarray) or weights.dtype != np.int8:
            raise ConfigError(f"Layer {self.name!r}: baseline_weights must be an int8 array")
        if not isinstance(bias, np.ndarray) or bias.dtype != np.int64:
            raise ConfigError(f"Layer {self.name!r}: baseline_bias must be an int64 array")
        if weights.shape != self.codes.shape:
            raise ConfigError(
                f"Layer {self.name!r}: baseline_weights shape {weights.shape} does not match "
                f"the codes' {self.codes.shape}"
            )
        if bias.shape != self.bias.shape:
            raise ConfigError(
                f"Layer {self.name!r}: baseline_bias shape {bias.shape} does not match the "
                f"bias' {self.bias.shape}"
            )
        largest = int(np.abs(weights.astype(np.int64)).max(initial=0))
        top = uniform_max(self.twin_bits)
        if largest > top or 0 < largest <= top // 2:
            # The step is the smallest power of two that fits max|W| into 2**(k-1) - 1, so
            # the largest weight rounds to 2**(k-2)..2**(k-1) - 1; else another step or damage.
            raise ConfigError(
                f"Layer {self.name!r}: the largest {self.twin_bits}-bit baseline weight "
                f"magnitude must lie in [{top // 2 + 1}, {top}] (or all be 0), not {largest}"
            )

    def weights_int(self) -> np.ndarray:
        """Weights as integers ``±2**(e - n2)`` (0 for zero codes), ``int64``, weight shape."""
        return weight_codes.weights_int(self.codes, self.bits)

    def baseline_weights_int(self) -> np.ndarray:
        """The uniform baseline weights as ``int64``, weight shape.

        Raises
        ------
        ConfigError
            If the layer carries no baseline.
        """
        if self.baseline_weights is None:
            raise ConfigError(f"Layer {self.name!r} carries no uniform baseline")
        return self.baseline_weights.astype(np.int64)

    def arithmetic(self, weights: str = "po2") -> "WeightArithmetic":
        """What the layer computes with: its po2 weights or its baseline (``WEIGHT_SETS``).

        Raises
        ------
        ConfigError
            An unknown weight set, or ``"baseline"`` for a layer without one.
        """
        if weights == "po2":
            return WeightArithmetic(self.weights_int(), self.bias, self.shift, self.acc_bits)
        if weights != "baseline":
            raise ConfigError(f"Weights must be one of {WEIGHT_SETS}, not {weights!r}")
        baseline = self.baseline_weights_int()
        assert self.baseline_bias is not None and self.baseline_shift is not None
        assert self.baseline_acc_bits is not None  # all present with the weights
        return WeightArithmetic(
            baseline, self.baseline_bias, self.baseline_shift, self.baseline_acc_bits
        )


@dataclass(frozen=True, eq=False)
class WeightArithmetic:
    """The integers one weight layer computes with: ``acc = Σ x·weights + bias``, then a
    requantisation by ``shift``; ``acc_bits`` bounds the accumulator.

    Members
    -------
    weights : numpy.ndarray
        ``int64`` integer weights, weight shape.
    bias : numpy.ndarray
        ``int64`` bias per output at accumulator scale.
    shift : int
        Requantisation shift (right when positive).
    acc_bits : int
        Accumulator width.
    """

    weights: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    shift: int
    acc_bits: int


@dataclass(frozen=True)
class ConvGeometry:
    """Kernel, stride, zero padding and dilation per axis ``(h, w)`` and the group count."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def plain(self) -> bool:
        """Square kernel, one stride and padding for both axes, dilation 1, groups 1: the
        convolution every hardware stage has run since the first package version."""
        return (
            self.kernel[0] == self.kernel[1]
            and self.stride[0] == self.stride[1]
            and self.padding[0] == self.padding[1]
            and self.dilation == (1, 1)
            and self.groups == 1
        )

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """Output height and width for an ``h x w`` input (PyTorch's formula)."""
        return (
            _conv_out(h, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0]),
            _conv_out(w, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1]),
        )


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@layer_kind("conv2d")
@dataclass(frozen=True, eq=False)
class Conv2dLayer(WeightLayer):
    """2-D convolution with zero padding; weights ``(Cout, Cin / groups, kh, kw)``.

    ``stride`` and ``padding`` are the height axis' (and the width axis' unless
    ``stride_w`` / ``padding_w`` say otherwise); ``dilation`` / ``dilation_w`` default to 1
    and ``groups`` to 1. The optional fields are absent from packages of plain
    convolutions, which therefore read exactly as before (:meth:`geometry`).
    """

    stride: int
    padding: int
    stride_w: int | None = field(default=None, kw_only=True)
    padding_w: int | None = field(default=None, kw_only=True)
    dilation: int | None = field(default=None, kw_only=True)
    dilation_w: int | None = field(default=None, kw_only=True)
    groups: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.codes.ndim != 4:
            raise ConfigError(
                f"Layer {self.name!r} (conv2d): weights must have shape (Cout, Cin/groups, "
                f"kh, kw), not {self.codes.shape}"
            )
        geometry = self.geometry()
        if min(*geometry.stride, *geometry.dilation, geometry.groups) < 1:
            raise ConfigError(
                f"Layer {self.name!r}: stride, dilation and groups must be >= 1, not "
                f"{geometry.stride}, {geometry.dilation}, {geometry.groups}"
            )
        if min(geometry.padding) < 0:
            raise ConfigError(f"Layer {self.name!r}: padding {min(geometry.padding)} must be >= 0")
        if self.codes.shape[0] % geometry.groups:
            raise ConfigError(
                f"Layer {self.name!r}: weights (Cout, Cin/groups, kh, kw) with Cout a multiple "
                f"of groups={geometry.groups}, not {self.codes.shape}"
            )

    def geometry(self) -> ConvGeometry:
        """The convolution's full geometry, optional fields resolved."""

        def pick(value: int | None, default: int) -> int:
            return default if value is None else int(value)

        dilation = pick(self.dilation, 1)
        return ConvGeometry(
            kernel=(int(self.codes.shape[2]), int(self.codes.shape[3])),
            stride=(self.stride, pick(self.stride_w, self.stride)),
            padding=(self.padding, pick(self.padding_w, self.padding)),
            dilation=(dilation, pick(self.dilation_w, dilation)),
            groups=pick(self.groups, 1),
        )


@layer_kind("linear")
@dataclass(frozen=True, eq=False)
class LinearLayer(WeightLayer):
    """Fully connected layer; its input is a flat vector."""


@layer_kind("maxpool")
@dataclass(frozen=True, eq=False)
class MaxPoolLayer(Layer):
    """Max pooling on integers; the format passes through.

    ``padding`` (optional, default 0) pads every side with the format's minimum, which
    never wins a maximum; with ``ceil_mode`` the output size rounds up as in PyTorch (a
    last window must start inside the input or its left padding).
    """

    kernel: int
    stride: int
    padding: int | None = field(default=None, kw_only=True)
    ceil_mode: bool | None = field(default=None, kw_only=True)

    @property
    def plain(self) -> bool:
        """No padding and floor mode: the pooling of the first package version."""
        return not self.padding and not self.ceil_mode

    def out_size(self, size: int) -> int:
        """Output height (or width) for an input of ``size`` (PyTorch's rule)."""
        k, s, p = self.kernel, self.stride, self.padding or 0
        span = size + 2 * p - k
        out = (-(-span // s) if self.ceil_mode else span // s) + 1
        if self.ceil_mode and (out - 1) * s >= size + p:
            out -= 1
        return out


@layer_kind("avgpool")
@dataclass(frozen=True, eq=False)
class AvgPoolLayer(Layer):
    """Average over a ``kernel x kernel`` window of ``2**shift`` elements: sum, then a
    round-half-up right shift by ``shift``; the format passes through."""

    kernel: int
    stride: int
    shift: int


@layer_kind("meanpool")
@dataclass(frozen=True, eq=False)
class MeanPoolLayer(Layer):
    """Average over ``kernel_h x kernel_w`` windows of any size: the window sum times the
    constant ``multiplier``, then a round-half-up right shift by ``shift``, saturated; the
    format passes through.

    ``mode`` says how exact it is (:func:`~inq_hw.intmodel.arith.mean_constant`):
    ``"shift"`` for a power-of-two window (``multiplier == 1``, exact), ``"shift_add"``
    otherwise (``multiplier = round_half_up(2**shift / N)``, a constant multiplication by
    the shifts and adds of its set bits, relative error below ``2**-MEAN_PRECISION_BITS``),
    or ``"folded"`` (``multiplier == 1``, ``shift = ceil(log2 N)``: the weight layer after
    it was multiplied by ``2**shift / N`` before INQ, :func:`~inq_hw.intmodel.arith.folded_mean`).
    Global average pooling is the window of the whole map (output ``(C, 1, 1)``). A
    stride of 0 on an axis repeats one window spanning that whole axis over the output's
    size (an adaptive pool from a 1-pixel axis to a larger one: each output copies it).
    """

    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    multiplier: int
    shift: int
    mode: str


@layer_kind("clamp")
@dataclass(frozen=True, eq=False)
class ClampLayer(Layer):
    """Clamp to ``[lo, hi]`` (integers at the input's scale): ReLU6, Hardtanh. The frac
    passes through; the output is unsigned when ``lo >= 0``."""

    lo: int
    hi: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lo > self.hi:
            raise ConfigError(f"Layer {self.name!r}: clamp bounds {self.lo} > {self.hi}")


@layer_kind("concat")
@dataclass(frozen=True, eq=False)
class ConcatLayer(Layer):
    """Channel concatenation (``torch.cat(..., dim=1)``) of ``(C_i, H, W)`` tensors: each
    operand requantised to the output's format by ``shifts[i] = frac_i - frac_out``
    (round half up, saturated), then stacked in order."""

    shifts: tuple[int, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "shifts", tuple(int(a) for a in self.shifts))
        if len(self.shifts) != len(self.inputs):
            raise ConfigError(f"Layer {self.name!r}: one shift per input, not {self.shifts}")


@layer_kind("flatten")
@dataclass(frozen=True, eq=False)
class FlattenLayer(Layer):
    """``(C, H, W)`` → ``(C·H·W,)`` in C, H, W order (PyTorch's)."""


@layer_kind("relu")
@dataclass(frozen=True, eq=False)
class ReLULayer(Layer):
    """Clamp at zero (a ReLU that could not be fused into the layer before it)."""


@layer_kind("add")
@dataclass(frozen=True, eq=False)
class AddLayer(Layer):
    """Residual add: each operand shifted left by ``align[i]`` to a common scale, summed,
    then requantised by ``shift`` (round half up), optional ReLU, saturated."""

    align: tuple[int, ...]
    shift: int
    relu: bool
    acc_bits: int

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "align", tuple(int(a) for a in self.align))
        if len(self.align) != len(self.inputs) or any(a < 0 for a in self.align):
            raise ConfigError(
                f"Layer {self.name!r}: one non-negative alignment per input, not {self.align}"
            )


@dataclass(frozen=True, eq=False)
class IntModel:
    """An integer-only network: layers in execution order and the name of the output.

    Members
    -------
    layers : tuple of Layer
        The first is the :class:`InputLayer`.
    output : str
        Name of the layer whose integers are the logits.
    meta : dict
        Provenance (source checkpoint hash, bits, calibration, accuracy ...).
    """

    layers: tuple[Layer, ...]
    output: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers or not isinstance(self.layers[0], InputLayer):
            raise ConfigError("An integer model must start with its input layer")
        seen: set[str] = set()
        for layer in self.layers:
            if layer.name in seen:
                raise ConfigError(f"Layer name {layer.name!r} is used twice")
            missing = [name for name in layer.inputs if name not in seen]
            if missing:
                raise ConfigError(
                    f"Layer {layer.name!r} reads {missing}, which no earlier layer produces"
                )
            seen.add(layer.name)
        if self.output not in seen:
            raise ConfigError(f"Output layer {self.output!r} is not in the model")

    @property
    def input(self) -> InputLayer:
        layer = self.layers[0]
        assert isinstance(layer, InputLayer)
        return layer

    def layer(self, name: str) -> Layer:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def weight_layers(self) -> list[WeightLayer]:
        return [layer for layer in self.layers if isinstance(layer, WeightLayer)]
