"""The PE-array compiler: an integer model package → a program for :mod:`rtl_gen.pe_array`.

A program is what the generated array's memories are initialised with, so the same
generator runs any package that fits its parameters:

* **instructions** (program memory), one per layer that does work, then an ``END``:
  ``MATMUL`` folds a Conv2d or Linear layer onto the R×C array (rows: output pixels in
  raster order, columns: output channels; the reduction ``Cin·k·k`` runs one step per
  cycle), ``VECTOR`` runs MaxPool, AvgPool, ReLU or a residual Add on the scalar vector
  unit (one operand read per cycle). Flatten costs nothing: the C, H, W order of a
  ``(C, H, W)`` tensor already is PyTorch's flattening, so the output aliases the input.
  A max pool with padding or ``ceil_mode`` (on an unsigned input, as after a ReLU) first
  copies its input into a zero-padded scratch region with a depthwise 1x1 MATMUL of
  weight 1 (one per channel; the MATMUL's address generator reads outside taps as
  zero), then pools the copy with a plain VECTOR.
* **weight words** (weight memory): for each MATMUL layer, output-channel tile and
  reduction step one word of C lanes, lane c holding the weight of output channel
  ``o0 + c`` (a b-bit code for shift PEs; for the multiplier twin a ``k``-bit two's
  complement integer, ``k`` the package's twin width; zero in lanes past the last
  channel).
* **bias** (bias memory), one accumulator-wide integer per output channel.
* **terms** (term table) of VECTOR layers: ``(offset, align)`` per operand read.
* **activation memory map**: every tensor in its own region of the activation memory, the
  regions reused once a tensor's last reader has run (first fit); the input at address 0.

Every address, shift and loop bound the controller needs is precomputed here, so the
controller has counters and adders but no multiplier and no divider.

Errors (:class:`ProgramError`, an :class:`~rtl_gen.export.RTLError`) are raised here,
before any RTL exists: an accumulator or activation word too narrow for the package, a
memory too small, a layer the controller cannot run, a field that does not fit its width,
a twin weight beyond the uniform range of the multiplier lanes.

Example usage::

    model = load_package("build/inq5")
    config = fit_config(model, rows=4, cols=4)       # the smallest memories that fit
    program = compile_program(model, config)
    program.instructions[0].layer                    # 'features.conv1'
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from inq_hw.intmodel import (
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
from inq_hw.intmodel.arith import (
    ActFormat,
    constant_shifts,
    output_bounds,
    signed_bits,
    uniform_max,
)
from inq_hw.intmodel.codes import code_of_weight, zero_code
from inq_hw.intmodel.layers import DEFAULT_BASELINE_BITS
from rtl_gen.export import RTLError
from rtl_gen.pe import mult_mac_min_acc_bits, shift_mac_min_acc_bits

__all__ = [
    "FIELDS",
    "FLUSH_CYCLES",
    "OP_END",
    "OP_MATMUL",
    "OP_VECTOR",
    "PE_KINDS",
    "SETTLE_CYCLES",
    "ArrayConfig",
    "Instruction",
    "Program",
    "ProgramError",
    "Region",
    "compile_program",
    "fit_config",
    "instruction_word",
    "twin_bits",
]

#: Processing elements: power-of-two shift-MACs or the multiplier twin (uniform weights).
PE_KINDS = ("shift", "mult")
OP_END, OP_MATMUL, OP_VECTOR = 0, 1, 2
#: Vector unit reductions.
REDUCE_SUM, REDUCE_MAX = 0, 1
#: Cycles from a MATMUL tile's last compute step to its drain: the step's registered read
#: request, the read, the accumulation (:mod:`rtl_gen.pe_array`); counted by
#: :mod:`sim.cycle_model`.
FLUSH_CYCLES = 2
#: Cycles the controller waits after a MATMUL's or VECTOR's last issue before the next
#: FETCH, so that the pipelined write of its last output (:mod:`rtl_gen.pe_array`: read,
#: align, reduce, two requantiser stages, write; 4 cycles after the old one-cycle path)
#: lands before the next instruction reads it or the host does; counted by
#: :mod:`sim.cycle_model`.
SETTLE_CYCLES = 3

#: Fields of an instruction word, in order (all signed, ``field_bits`` wide; see
#: :class:`Instruction` for their meaning).
FIELDS = (
    "op", "reduce", "rshift", "lshift", "lo", "hi",
    "in_base", "out_base", "w_base", "b_base",
    "cin", "kernel", "in_h", "in_w", "ksteps",
    "kh_step", "ci_step", "cout", "pixels", "out_cp",
    "start_y", "start_x", "start_pa",
    "one_dy", "one_dx", "one_dpa", "tile_dy", "tile_dx", "tile_dpa",
    "xlim", "wrap_x", "wrap_y", "wrap_pa",
    "terms", "term_base", "elements", "out_h", "out_w",
    "step_x", "step_y", "step_c",
)  # fmt: skip


class ProgramError(RTLError):
    """A package cannot run on an array of the given parameters (found before any RTL)."""


def _check_int(what: str, value: object, lo: int, hi: int | None = None) -> int:
    bounds = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer {bounds}, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{what} must be an integer {bounds}, not {value!r}")
    return value


@dataclass(frozen=True)
class ArrayConfig:
    """Parameters of one generated array.

    Members
    -------
    rows, cols : int
        Array shape R×C: rows take output pixels, columns output channels (1 to 64).
    pe : str
        ``"shift"`` (b-bit power-of-two codes, barrel shifter) or ``"mult"`` (k-bit
        runtime-weight multipliers, the twin).
    act_bits : int
        Width of an activation word (signed); unsigned b-bit tensors need b + 1.
    weight_bits : int
        Code width b of shift PEs (2 to 8); for the multiplier twin the width k (2 to 8)
        of its signed weight lanes, which hold uniform weights up to
        ``±``:func:`~inq_hw.intmodel.arith.uniform_max` ``(k)``.
    acc_bits : int
        PE accumulator and vector-unit width (checked against the package's worst case).
    act_depth, weight_depth, bias_depth, program_depth, term_depth : int
        Memory sizes in words.
    max_lshift : int
        Largest left requantisation shift the requantiser implements.
    max_align : int
        Largest operand alignment shift of a residual add.
    """

    rows: int
    cols: int
    pe: str = "shift"
    act_bits: int = 9
    weight_bits: int = 5
    acc_bits: int = 24
    act_depth: int = 4096
    weight_depth: int = 4096
    bias_depth: int = 256
    program_depth: int = 32
    term_depth: int = 64
    max_lshift: int = 7
    max_align: int = 15

    def __post_init__(self) -> None:
        _check_int("Array rows", self.rows, 1, 64)
        _check_int("Array columns", self.cols, 1, 64)
        if self.pe not in PE_KINDS:
            raise ValueError(f"PE kind must be one of {PE_KINDS}, not {self.pe!r}")
        _check_int("Activation word width", self.act_bits, 2, 16)
        if self.pe == "mult":
            _check_int("Multiplier weight width", self.weight_bits, 2, 8)
            least = mult_mac_min_acc_bits(act_bits=self.act_bits, weight_bits=self.weight_bits)
        else:
            _check_int("Weight code width", self.weight_bits, 2, 8)
            least = shift_mac_min_acc_bits(act_bits=self.act_bits, weight_bits=self.weight_bits)
        _check_int("Accumulator width", self.acc_bits, least, 62)
        for name in ("act_depth", "weight_depth", "bias_depth", "program_depth", "term_depth"):
            _check_int(name.replace("_", " ").capitalize(), getattr(self, name), 1, 1 << 24)
        _check_int("Largest left shift", self.max_lshift, 0, 31)
        _check_int("Largest alignment", self.max_align, 0, 31)

    @property
    def field_bits(self) -> int:
        """Width of every (signed) instruction field: room for any address, any product of
        an address bound and a stride, and any saturation bound."""
        depth = max(self.act_depth, self.weight_depth, self.bias_depth, self.term_depth)
        return max((depth - 1).bit_length() + 4, self.act_bits + 2, 8)

    @property
    def word_bits(self) -> int:
        """Width of an instruction word."""
        return self.field_bits * len(FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Region:
    """A tensor's place in the activation memory: ``size`` words from ``base``, C, H, W
    order, integers of ``fmt``."""

    name: str
    base: int
    size: int
    fmt: ActFormat


@dataclass(frozen=True)
class Instruction:
    """One controller instruction: the values of :data:`FIELDS` (zero when unused), plus
    what the cycle model and reports read.

    MATMUL fields: ``in_base``/``out_base`` activation addresses, ``w_base``/``b_base``
    weight-word and bias addresses; ``cin``, ``kernel``, ``in_h``, ``in_w`` and ``ksteps``
    (``cin·kernel²``) the reduction, ``kh_step``/``ci_step`` the input-offset jumps when a
    kernel row / an input channel ends; ``cout``, ``pixels`` (``Ho·Wo``), ``out_cp``
    (``cols·pixels``, the output jump per channel tile); ``start_*`` the position of output
    pixel 0 (input row and column of the window's corner, its address offset), ``one_*``
    and ``tile_*`` a move by one pixel and by ``rows`` pixels before the wrap at
    ``xlim`` (``wrap_*`` added then). VECTOR fields: ``terms`` reads per output element
    from ``term_base`` in the term table, ``elements`` outputs of ``out_h × out_w`` per
    channel, ``step_x``/``step_y``/``step_c`` the read-base jumps. Both: requantisation
    ``rshift`` (round half up) or ``lshift``, then saturation to ``[lo, hi]`` (``lo`` is 0
    where a ReLU is fused).
    """

    layer: str
    kind: str
    values: dict[str, int]

    def __getitem__(self, name: str) -> int:
        return self.values.get(name, 0)

    @property
    def op(self) -> int:
        return self["op"]


@dataclass(frozen=True)
class Program:
    """A compiled package: memory images and the activation memory map.

    Members
    -------
    config : ArrayConfig
    instructions : tuple of Instruction
        The last is ``END``.
    weight_words : tuple of int
        Weight memory image; lanes packed ``cols`` per word, lane 0 in the low bits.
    bias : tuple of int
        Bias memory image.
    terms : tuple of (int, int)
        Term table image: ``(offset, align)``.
    regions : dict of str to Region
        Every tensor's region, by layer name (Flatten shares its input's), and each
        padded max pool's scratch (:func:`padded_name`).
    input, output : Region
    act_words : int
        Activation words the program needs (peak of the map).
    weights : str
        ``"po2"`` or ``"baseline"``, the weight set compiled.
    """

    config: ArrayConfig
    instructions: tuple[Instruction, ...]
    weight_words: tuple[int, ...]
    bias: tuple[int, ...]
    terms: tuple[tuple[int, int], ...]
    regions: dict[str, Region] = field(repr=False)
    input: Region
    output: Region
    act_words: int
    weights: str

    def requirements(self) -> dict[str, int]:
        """Memory words the program needs, by :class:`ArrayConfig` depth field."""
        return {
            "act_depth": self.act_words,
            "weight_depth": max(len(self.weight_words), 1),
            "bias_depth": max(len(self.bias), 1),
            "program_depth": len(self.instructions),
            "term_depth": max(len(self.terms), 1),
        }


def instruction_word(instr: Instruction, field_bits: int) -> int:
    """The instruction packed as the program memory holds it: field ``FIELDS[i]`` in bits
    ``[i·field_bits, (i+1)·field_bits)``, two's complement."""
    word, mask = 0, (1 << field_bits) - 1
    for i, name in enumerate(FIELDS):
        word |= (instr[name] & mask) << (i * field_bits)
    return word


# --- the compiler ------------------------------------------------------------------------


@dataclass
class _Builder:
    model: IntModel
    config: ArrayConfig
    weights: str
    regions: dict[str, Region]
    instructions: list[Instruction] = field(default_factory=list)
    weight_words: list[int] = field(default_factory=list)
    bias: list[int] = field(default_factory=list)
    terms: list[tuple[int, int]] = field(default_factory=list)

    def region(self, name: str) -> Region:
        return self.regions[name]

    def emit(self, layer: Layer, values: dict[str, int]) -> None:
        self.instructions.append(Instruction(layer.name, layer.kind, values))


_Handler = Callable[[_Builder, Any], None]
_HANDLERS: dict[type[Layer], _Handler] = {}


def _compiles(*kinds: type[Layer]) -> Callable[[_Handler], _Handler]:
    def decorate(fn: _Handler) -> _Handler:
        for kind in kinds:
            _HANDLERS[kind] = fn
        return fn

    return decorate


def _requant(shift: int, relu: bool, out: ActFormat, sum_bits: int) -> dict[str, int]:
    """Requantisation fields. A right shift of ``sum_bits`` or more gives 0 for every
    ``sum_bits``-bit sum, exactly like the golden rule, so it is capped there."""
    lo, hi = output_bounds(out, relu)
    return {
        "rshift": min(max(shift, 0), sum_bits),
        "lshift": max(-shift, 0),
        "lo": lo,
        "hi": hi,
    }


def _arith(layer: WeightLayer, weights: str) -> tuple[int, int, np.ndarray]:
    """``(shift, acc_bits, bias)`` of a weight set, without decoding the weights (as
    :meth:`WeightLayer.arithmetic` does, which is slow for large layers)."""
    if weights == "po2":
        return layer.shift, layer.acc_bits, layer.bias
    assert layer.baseline_shift is not None and layer.baseline_acc_bits is not None
    assert layer.baseline_bias is not None
    return layer.baseline_shift, layer.baseline_acc_bits, layer.baseline_bias


def _lane_values(layer: WeightLayer, weights: str, bits: int) -> np.ndarray:
    """``(Cout, K)`` lane values: packed codes, or baseline integers as ``bits``-bit
    two's complement."""
    if weights == "po2":
        return layer.codes.reshape(layer.codes.shape[0], -1).astype(np.int64)
    assert layer.baseline_weights is not None
    values = layer.baseline_weights.reshape(layer.codes.shape[0], -1).astype(np.int64)
    return values & ((1 << bits) - 1)


def _pack_lanes(b: _Builder, lanes: np.ndarray) -> int:
    """Append the weight words of ``(Cout, K)`` lane values (output tile by tile, step by
    step); their base."""
    cfg = b.config
    bits = cfg.weight_bits
    cout, ksteps = lanes.shape
    tiles = -(-cout // cfg.cols)
    padded = np.zeros((tiles * cfg.cols, ksteps), dtype=object)
    # A lane past the last channel holds a zero weight: the zero-flag code, or 0.
    padded[:, :] = zero_code(bits) if b.weights == "po2" else 0
    padded[:cout] = lanes.astype(object)
    base = len(b.weight_words)
    for t in range(tiles):
        block = padded[t * cfg.cols : (t + 1) * cfg.cols]
        for k in range(ksteps):
            b.weight_words.append(sum(int(block[c, k]) << (c * bits) for c in range(cfg.cols)))
    return base


@dataclass(frozen=True)
class _Dot:
    """What one MATMUL computes: ``(Cout, K)`` lane values (as the weight memory holds
    them), bias, requantisation, the tensor it reads and the region it writes."""

    source: str
    target: str
    lanes: np.ndarray
    bias: np.ndarray
    shift: int
    relu: bool
    out: ActFormat

    @classmethod
    def of(cls, b: _Builder, layer: WeightLayer) -> "_Dot":
        shift, _, bias = _arith(layer, b.weights)
        lanes = _lane_values(layer, b.weights, b.config.weight_bits)
        return cls(layer.inputs[0], layer.name, lanes, bias, shift, layer.relu, layer.out)


def _move(pixels: int, out_w: int, stride: int, in_w: int) -> tuple[int, int, int]:
    """``(dy, dx, dpa)`` of a move by ``pixels`` output pixels, before the row wrap."""
    q, rem = divmod(pixels, out_w)
    return q * stride, rem * stride, q * stride * in_w + rem * stride


def _matmul(
    b: _Builder,
    layer: Layer,
    dot: _Dot,
    *,
    cin: int,
    in_hw: tuple[int, int],
    kernel: int,
    stride: int,
    padding: int,
    out_hw: tuple[int, int],
    group: int = 0,
    groups: int = 1,
) -> None:
    """One MATMUL of ``dot`` (named after ``layer``); for a grouped convolution, the one
    of group ``group``: its output channels, its input channels' region and its part of
    the output region. Taps outside the ``in_hw`` input read as zero."""
    cfg = b.config
    (h, w), (ho, wo) = in_hw, out_hw
    cout, pixels = dot.lanes.shape[0] // groups, ho * wo
    rows = slice(group * cout, (group + 1) * cout)
    w_base, b_base = _pack_lanes(b, dot.lanes[rows]), len(b.bias)
    b.bias.extend(int(v) for v in dot.bias[rows])
    one, tile = _move(1, wo, stride, w), _move(cfg.rows, wo, stride, w)
    values = {
        "op": OP_MATMUL,
        **_requant(dot.shift, dot.relu, dot.out, cfg.acc_bits + 1),
        "in_base": b.region(dot.source).base + group * cin * h * w,
        "out_base": b.region(dot.target).base + group * cout * pixels,
        "w_base": w_base,
        "b_base": b_base,
        "cin": cin,
        "kernel": kernel,
        "in_h": h,
        "in_w": w,
        "ksteps": cin * kernel * kernel,
        "kh_step": w - (kernel - 1),
        "ci_step": h * w - (kernel - 1) * w - (kernel - 1),
        "cout": cout,
        "pixels": pixels,
        "out_h": ho,
        "out_w": wo,
        "out_cp": cfg.cols * pixels,
        "start_y": -padding,
        "start_x": -padding,
        "start_pa": -padding * w - padding,
        "one_dy": one[0],
        "one_dx": one[1],
        "one_dpa": one[2],
        "tile_dy": tile[0],
        "tile_dx": tile[1],
        "tile_dpa": tile[2],
        "xlim": wo * stride - padding,
        "wrap_x": -wo * stride,
        "wrap_y": stride,
        "wrap_pa": stride * w - wo * stride,
    }
    b.emit(layer, values)


@_compiles(Conv2dLayer)
def _conv(b: _Builder, layer: Conv2dLayer) -> None:
    """One MATMUL, or one per group (depthwise: one per channel)."""
    cin, h, w = b.model.layer(layer.inputs[0]).shape
    _, ho, wo = layer.shape
    groups = layer.geometry().groups
    dot = _Dot.of(b, layer)
    for group in range(groups):
        _matmul(
            b,
            layer,
            dot,
            cin=cin // groups,
            in_hw=(h, w),
            kernel=layer.codes.shape[-1],
            stride=layer.stride,
            padding=layer.padding,
            out_hw=(ho, wo),
            group=group,
            groups=groups,
        )


@_compiles(LinearLayer)
def _linear(b: _Builder, layer: LinearLayer) -> None:
    (features,) = b.model.layer(layer.inputs[0]).shape
    dot = _Dot.of(b, layer)
    _matmul(b, layer, dot, cin=features, in_hw=(1, 1), kernel=1, stride=1, padding=0, out_hw=(1, 1))


def _vector(
    b: _Builder,
    layer: Layer,
    *,
    reduce: int,
    terms: list[tuple[int, int]],
    in_base: int,
    in_hw: tuple[int, int],
    stride: int,
    requant: dict[str, int],
    shape: tuple[int, ...] | None = None,
    out_offset: int = 0,
) -> None:
    channels, ho, wo = _chw(layer.shape if shape is None else shape)
    h, w = in_hw
    values = {
        "op": OP_VECTOR,
        "reduce": reduce,
        **requant,
        "in_base": in_base,
        "out_base": b.region(layer.name).base + out_offset,
        "terms": len(terms),
        "term_base": len(b.terms),
        "elements": channels * ho * wo,
        "out_h": ho,
        "out_w": wo,
        "step_x": stride,
        "step_y": stride * w - (wo - 1) * stride,
        "step_c": h * w - (ho - 1) * stride * w - (wo - 1) * stride,
    }
    b.terms.extend(terms)
    b.emit(layer, values)


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A ``(C, H, W)`` shape, or a flat ``(F,)`` one as ``(F, 1, 1)``."""
    return (shape[0], 1, 1) if len(shape) == 1 else (shape[0], shape[1], shape[2])


@_compiles(MaxPoolLayer, AvgPoolLayer)
def _pool(b: _Builder, layer: MaxPoolLayer | AvgPoolLayer) -> None:
    """One VECTOR over the input; a padded or ``ceil_mode`` max pool reads a zero-padded
    copy instead (:func:`_pad_copy`)."""
    source = b.model.layer(layer.inputs[0])
    _, h, w = _chw(source.shape)
    base = b.region(source.name).base
    if isinstance(layer, MaxPoolLayer) and not layer.plain:
        (h, w), base = _pad_copy(b, layer), b.region(padded_name(layer)).base
    k = layer.kernel
    terms = [(kh * w + kw, 0) for kh in range(k) for kw in range(k)]
    if isinstance(layer, AvgPoolLayer):
        reduce, shift = REDUCE_SUM, layer.shift
    else:
        reduce, shift = REDUCE_MAX, 0
    _vector(
        b,
        layer,
        reduce=reduce,
        terms=terms,
        in_base=base,
        in_hw=(h, w),
        stride=layer.stride,
        requant=_requant(shift, False, layer.out, b.config.acc_bits),
    )


def padded_name(layer: MaxPoolLayer) -> str:
    """The scratch region a padded max pool reads: its input with the padding written."""
    return f"{layer.name}:padded"


def padded_shape(model: IntModel, layer: MaxPoolLayer) -> tuple[int, int, int]:
    """``(C, Hp, Wp)`` of a padded max pool's scratch: every row and column its windows
    read, ``padding`` before the input and what ``ceil_mode`` needs after it."""
    channels, _, _ = _chw(model.layer(layer.inputs[0]).shape)
    _, ho, wo = layer.shape
    k, s = layer.kernel, layer.stride
    return channels, (ho - 1) * s + k, (wo - 1) * s + k


def _pad_copy(b: _Builder, layer: MaxPoolLayer) -> tuple[int, int]:
    """Copy the pool's input into its scratch region with the padding as zeros; return
    the scratch's ``(Hp, Wp)``.

    The copy is a depthwise 1x1 MATMUL with weight 1 (a shift by 0; 1 on the multiplier
    twin), zero bias and no requantising shift: the MATMUL's address generator reads taps
    outside the input as zero. The input is unsigned (checked by :func:`_check_layers`),
    so zero is the format's minimum, the value the golden model pads with: the pool's
    maxima are exactly the golden ones.
    """
    source = b.model.layer(layer.inputs[0])
    channels, h, w = _chw(source.shape)
    _, hp, wp = padded_shape(b.model, layer)
    one = code_of_weight(1, b.config.weight_bits) if b.weights == "po2" else 1
    dot = _Dot(
        source=source.name,
        target=padded_name(layer),
        lanes=np.full((channels, 1), one, dtype=np.int64),
        bias=np.zeros(channels, dtype=np.int64),
        shift=0,
        relu=False,
        out=source.out,
    )
    for group in range(channels):
        _matmul(
            b,
            layer,
            dot,
            cin=1,
            in_hw=(h, w),
            kernel=1,
            stride=1,
            padding=layer.padding or 0,
            out_hw=(hp, wp),
            group=group,
            groups=channels,
        )
    return hp, wp


@_compiles(ReLULayer, AddLayer)
def _elementwise(b: _Builder, layer: ReLULayer | AddLayer) -> None:
    _, h, w = _chw(layer.shape)
    if isinstance(layer, AddLayer):
        align, shift, relu = layer.align, layer.shift, layer.relu
    else:
        align, shift, relu = (0,), 0, True
    terms = [(b.region(name).base, a) for name, a in zip(layer.inputs, align, strict=True)]
    _vector(
        b,
        layer,
        reduce=REDUCE_SUM,
        terms=terms,
        in_base=0,
        in_hw=(h, w),
        stride=1,
        requant=_requant(shift, relu, layer.out, b.config.acc_bits),
    )


@_compiles(MeanPoolLayer)
def _meanpool(b: _Builder, layer: MeanPoolLayer) -> None:
    """Window sum times the constant: one term per window tap and set bit of the
    multiplier (a shifted add each), then the rounding shift."""
    source = b.model.layer(layer.inputs[0])
    _, h, w = _chw(source.shape)
    bits = constant_shifts(layer.multiplier)
    terms = [
        (kh * w + kw, j)
        for kh in range(layer.kernel_h)
        for kw in range(layer.kernel_w)
        for j in bits
    ]
    _vector(
        b,
        layer,
        reduce=REDUCE_SUM,
        terms=terms,
        in_base=b.region(source.name).base,
        in_hw=(h, w),
        stride=layer.stride_h,
        requant=_requant(layer.shift, False, layer.out, b.config.acc_bits),
    )


@_compiles(ClampLayer)
def _clamp(b: _Builder, layer: ClampLayer) -> None:
    """A copy whose requantiser bounds are the clamp's."""
    _, h, w = _chw(layer.shape)
    _vector(
        b,
        layer,
        reduce=REDUCE_SUM,
        terms=[(b.region(layer.inputs[0]).base, 0)],
        in_base=0,
        in_hw=(h, w),
        stride=1,
        requant={
            **_requant(0, False, layer.out, b.config.acc_bits),
            "lo": layer.lo,
            "hi": layer.hi,
        },
    )


@_compiles(ConcatLayer)
def _concat(b: _Builder, layer: ConcatLayer) -> None:
    """One requantising copy per operand into its channel range of the output."""
    offset = 0
    for name, shift in zip(layer.inputs, layer.shifts, strict=True):
        source = b.model.layer(name)
        _, h, w = _chw(source.shape)
        _vector(
            b,
            layer,
            reduce=REDUCE_SUM,
            terms=[(b.region(name).base, 0)],
            in_base=0,
            in_hw=(h, w),
            stride=1,
            requant=_requant(shift, False, layer.out, b.config.acc_bits),
            shape=source.shape,
            out_offset=offset,
        )
        offset += math.prod(source.shape)


@_compiles(InputLayer, FlattenLayer)
def _no_instruction(b: _Builder, layer: Layer) -> None:
    """The input is written by the host; Flatten aliases its input's region."""


# --- checks and the memory map -------------------------------------------------------------


def _fail(message: str) -> ProgramError:
    return ProgramError(message)


def _check_layers(model: IntModel, config: ArrayConfig, weights: str) -> None:
    """Errors for what the array cannot run, before anything is built."""
    for layer in model.layers:
        if type(layer) not in _HANDLERS:
            raise _fail(f"Layer {layer.name!r} ({layer.kind}) cannot run on the PE array")
        reason = _unsupported_option(model, layer)
        if reason:
            raise _fail(f"Layer {layer.name!r} ({layer.kind}) cannot run on the PE array: {reason}")
        need = layer.out.bits + (0 if layer.out.signed else 1)
        if need > config.act_bits:
            raise _fail(
                f"Layer {layer.name!r}: its {layer.out.bits}-bit "
                f"{'signed' if layer.out.signed else 'unsigned'} output needs {need}-bit "
                f"activation words, but the array has {config.act_bits}"
            )
        need_acc = _acc_need(model, layer, weights)
        if need_acc > config.acc_bits:
            raise _fail(
                f"Layer {layer.name!r}: accumulator too narrow: the worst case needs "
                f"{need_acc} bits, but the array has {config.acc_bits}"
            )
        _check_shifts(layer, config, weights)
        if isinstance(layer, WeightLayer):
            _check_lanes(layer, config)


def _check_lanes(layer: WeightLayer, config: ArrayConfig) -> None:
    """The layer's weights fit the array's lanes: its code width, or (the twin) the
    uniform range of the ``weight_bits``-bit signed multiplier lanes."""
    if config.pe == "shift":
        if layer.bits != config.weight_bits:
            raise _fail(
                f"Layer {layer.name!r} has {layer.bits}-bit weight codes, but the array "
                f"holds {config.weight_bits}-bit codes"
            )
        return
    top = uniform_max(config.weight_bits)
    weights = layer.baseline_weights_int().ravel()
    worst = int(weights[np.argmax(np.abs(weights))]) if weights.size else 0
    if abs(worst) > top:
        raise _fail(
            f"Layer {layer.name!r}: twin weight {worst} does not fit the array's "
            f"{config.weight_bits}-bit multiplier lanes (uniform, |w| <= {top})"
        )


def _unsupported_option(model: IntModel, layer: Layer) -> str | None:
    """Why the controller cannot run this layer's options, or ``None``."""
    if isinstance(layer, Conv2dLayer):
        g = layer.geometry()
        if g.kernel[0] != g.kernel[1] or g.stride[0] != g.stride[1] or g.padding[0] != g.padding[1]:
            return (
                f"its address generator walks square kernels with one stride and padding, "
                f"not kernel {g.kernel}, stride {g.stride}, padding {g.padding}"
            )
        if g.dilation != (1, 1):
            return f"its address generator steps taps by 1, not dilation {g.dilation}"
    padded = isinstance(layer, MaxPoolLayer) and not layer.plain
    if padded and model.layer(layer.inputs[0]).out.signed:
        assert isinstance(layer, MaxPoolLayer)
        return (
            f"padding {layer.padding or 0} / ceil_mode {bool(layer.ceil_mode)} is "
            "written as zeros, the minimum of an unsigned input only, and this input "
            "is signed (pool after a ReLU)"
        )
    if isinstance(layer, MeanPoolLayer) and layer.stride_h != layer.stride_w:
        return f"the vector unit has one stride, not {(layer.stride_h, layer.stride_w)}"
    return None


def _check_shifts(layer: Layer, config: ArrayConfig, weights: str) -> None:
    shift = None
    if isinstance(layer, WeightLayer):
        shift = _arith(layer, weights)[0]
    elif isinstance(layer, AddLayer):
        shift = layer.shift
        if max(layer.align) > config.max_align:
            raise _fail(
                f"Layer {layer.name!r}: alignment {max(layer.align)} exceeds the array's "
                f"largest, {config.max_align}"
            )
    elif isinstance(layer, ConcatLayer):
        shift = min(layer.shifts)
    if shift is not None and -shift > config.max_lshift:
        raise _fail(
            f"Layer {layer.name!r}: left shift {-shift} exceeds the requantiser's largest, "
            f"{config.max_lshift}"
        )


def _acc_need(model: IntModel, layer: Layer, weights: str) -> int:
    """Accumulator bits a layer needs on the array (0 for none)."""
    if isinstance(layer, WeightLayer):
        return _arith(layer, weights)[1]
    if isinstance(layer, AddLayer):
        return layer.acc_bits
    if isinstance(layer, AvgPoolLayer):
        source = model.layer(layer.inputs[0])
        return signed_bits(source.out.max_abs * layer.kernel * layer.kernel)
    if isinstance(layer, MeanPoolLayer):
        source = model.layer(layer.inputs[0])
        count = layer.kernel_h * layer.kernel_w
        return signed_bits(source.out.max_abs * count * layer.multiplier)
    if isinstance(layer, ConcatLayer | ClampLayer):
        return max(signed_bits(model.layer(name).out.max_abs) for name in layer.inputs)
    return 0


def _weights_kind(model: IntModel, pe: str) -> str:
    if pe == "shift":
        return "po2"
    lacking = [layer.name for layer in model.weight_layers() if not layer.has_baseline]
    if lacking:
        raise _fail(
            f"The multiplier twin runs the uniform baseline, which the package lacks for "
            f"layer(s) {lacking} (lowered without its FP32 source?)"
        )
    return "baseline"


def _last_reads(model: IntModel) -> dict[str, int]:
    """Index of the last layer reading each tensor (Flatten extends its input's life)."""
    last: dict[str, int] = {}
    owner: dict[str, str] = {}
    for index, layer in enumerate(model.layers):
        owner[layer.name] = (
            owner[layer.inputs[0]] if isinstance(layer, FlattenLayer) else layer.name
        )
        for name in layer.inputs:
            last[owner[name]] = index
    last[owner[model.output]] = len(model.layers)
    return last


def allocate(model: IntModel) -> tuple[dict[str, Region], int]:
    """First-fit activation memory map with reuse after a tensor's last reader.

    A layer's output never overlaps its inputs (they are still live while it runs); a
    padded max pool's scratch (:func:`padded_name`) overlaps none of them and is free
    once the pool has run. Returns the regions by layer name and the words needed.
    """
    last = _last_reads(model)
    live: dict[str, Region] = {}
    regions: dict[str, Region] = {}
    peak = 0
    for index, layer in enumerate(model.layers):
        if isinstance(layer, FlattenLayer):
            source = regions[layer.inputs[0]]
            regions[layer.name] = Region(layer.name, source.base, source.size, layer.out)
            continue
        size = math.prod(layer.shape)
        base = _first_fit(sorted(live.values(), key=lambda r: r.base), size)
        region = Region(layer.name, base, size, layer.out)
        regions[layer.name] = live[layer.name] = region
        peak = max(peak, base + size)
        if isinstance(layer, MaxPoolLayer) and not layer.plain:  # scratch, while it runs
            size = math.prod(padded_shape(model, layer))
            base = _first_fit(sorted(live.values(), key=lambda r: r.base), size)
            name = padded_name(layer)
            regions[name] = Region(name, base, size, layer.out)
            peak = max(peak, base + size)
        for name in [n for n in live if last.get(n, -1) <= index and n != layer.name]:
            del live[name]
        if last.get(layer.name, -1) <= index:
            del live[layer.name]
    return regions, peak


def _first_fit(occupied: list[Region], size: int) -> int:
    base = 0
    for region in occupied:
        if base + size <= region.base:
            return base
        base = max(base, region.base + region.size)
    return base


_MEMORY_NAMES = {
    "act_depth": "activation",
    "weight_depth": "weight",
    "bias_depth": "bias",
    "program_depth": "program",
    "term_depth": "term table",
}


def _check_fits(program: Program) -> None:
    cfg = program.config
    for name, need in program.requirements().items():
        have = getattr(cfg, name)
        if need > have:
            what = _MEMORY_NAMES[name]
            raise _fail(
                f"The {what} memory is too small for the package: it needs {need} words, "
                f"the array has {have}"
            )
    lo, hi = -(1 << (cfg.field_bits - 1)), (1 << (cfg.field_bits - 1)) - 1
    for instr in program.instructions:
        for name, value in instr.values.items():
            if not lo <= value <= hi:
                raise _fail(
                    f"Layer {instr.layer!r}: field {name} = {value} does not fit the "
                    f"{cfg.field_bits}-bit instruction field"
                )
    for offset, align in program.terms:
        if not lo <= offset <= hi:
            raise _fail(f"Term offset {offset} does not fit the {cfg.field_bits}-bit field")
        assert 0 <= align <= cfg.max_align


def compile_program(model: IntModel, config: ArrayConfig) -> Program:
    """Compile ``model`` for an array of ``config``: power-of-two codes for shift PEs, the
    uniform baseline (the twin, ``k``-bit weights) for the multiplier twin.

    Raises
    ------
    ProgramError
        A layer the controller cannot run, an accumulator or activation word too narrow,
        a shift beyond the requantiser, a memory too small, a field too narrow, or (for
        the multiplier twin) a package without uniform baselines or a twin weight beyond
        the uniform range of the ``weight_bits``-bit lanes.
    """
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"config must be an ArrayConfig, not {config!r}")
    weights = _weights_kind(model, config.pe)
    _check_layers(model, config, weights)
    regions, peak = allocate(model)
    builder = _Builder(model, config, weights, regions)
    for layer in model.layers:
        _HANDLERS[type(layer)](builder, layer)
    builder.instructions.append(Instruction("end", "end", {"op": OP_END}))
    program = Program(
        config=config,
        instructions=tuple(builder.instructions),
        weight_words=tuple(builder.weight_words),
        bias=tuple(builder.bias),
        terms=tuple(builder.terms),
        regions=regions,
        input=regions[model.input.name],
        output=regions[model.output],
        act_words=peak,
        weights=weights,
    )
    _check_fits(program)
    return program


def fit_config(model: IntModel, *, rows: int, cols: int, pe: str = "shift") -> ArrayConfig:
    """The smallest array of ``rows × cols`` PEs that runs ``model``: activation word,
    accumulator, weight width (the codes', or the twin's: :func:`twin_bits`) and memories
    sized from the package (memories rounded up to powers of two).

    Raises
    ------
    ProgramError
        As :func:`compile_program`, for what no sizing can fix (a layer kind, a shift).
    """
    if pe not in PE_KINDS:
        raise ValueError(f"PE kind must be one of {PE_KINDS}, not {pe!r}")
    weights = _weights_kind(model, pe)
    act_bits = max(layer.out.bits + (0 if layer.out.signed else 1) for layer in model.layers)
    bits = twin_bits(model) if pe == "mult" else _code_bits(model)
    acc = max(_acc_need(model, layer, weights) for layer in model.layers)
    if pe == "mult":
        acc = max(acc, mult_mac_min_acc_bits(act_bits=act_bits, weight_bits=bits))
    else:
        acc = max(acc, shift_mac_min_acc_bits(act_bits=act_bits, weight_bits=bits))
    lshift = max([0] + [-_layer_shift(layer, weights) for layer in model.layers])
    roomy = ArrayConfig(
        rows=rows,
        cols=cols,
        pe=pe,
        act_bits=act_bits,
        weight_bits=bits,
        acc_bits=acc,
        act_depth=1 << 24,
        weight_depth=1 << 24,
        bias_depth=1 << 24,
        program_depth=1 << 24,
        term_depth=1 << 24,
        max_lshift=min(max(lshift, 1), 31),
    )
    need = compile_program(model, roomy).requirements()
    sized = {name: 1 << max(words - 1, 1).bit_length() for name, words in need.items()}
    return replace(roomy, **sized)  # type: ignore[arg-type]


def _layer_shift(layer: Layer, weights: str) -> int:
    if isinstance(layer, WeightLayer):
        return _arith(layer, weights)[0]
    if isinstance(layer, AddLayer):
        return layer.shift
    if isinstance(layer, ConcatLayer):
        return min(layer.shifts)
    return 0


def twin_bits(model: IntModel) -> int:
    """Weight width of the multiplier twin's lanes: the widest
    :attr:`~inq_hw.intmodel.layers.WeightLayer.twin_bits` of the weight layers (8 for a
    layer whose ``baseline_bits`` is ``None``, the 8-bit twin)."""
    return max((layer.twin_bits for layer in model.weight_layers()), default=DEFAULT_BASELINE_BITS)


def _code_bits(model: IntModel) -> int:
    widths = {layer.bits for layer in model.weight_layers()}
    if len(widths) != 1:
        raise _fail(f"The array holds one code width, but the package mixes {sorted(widths)}")
    return widths.pop()
