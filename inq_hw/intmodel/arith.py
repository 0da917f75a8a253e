"""The integer arithmetic of the datapath: the one description the golden executor and the
hardware generators share.

Number formats (ARCHITECTURE.md, "Number formats"):

* An activation is an integer ``x_int`` of ``bits`` bits (unsigned after ReLU, signed
  otherwise) with a power-of-two scale: ``x = x_int · 2**-frac``.
* A weight is ``0`` or ``±2**e`` with ``n2 <= e <= n1``; as an integer it is
  ``w_int = ±2**(e - n2)`` in units of ``2**n2``.
* A product ``x_int · w_int`` is ``x_int << (e - n2)`` in units of ``2**(n2 - frac_in)``;
  the bias is an integer in the same units; the accumulator sums them exactly.
* Requantisation: ``shift = frac_in - n2 - frac_out``. For ``shift > 0`` the accumulator is
  shifted right with **round half up** (add ``2**(shift-1)``, then an arithmetic shift
  right, i.e. floor); for ``shift <= 0`` it is shifted left (exact). Then ReLU (clamp at 0)
  if the layer has one, then saturation to the output format's range.

This module is the one place that says so: :func:`rounding_constant` (the ``2**(s-1)``
of round half up; the shift direction with it), :func:`output_bounds` (ReLU and
saturation) and :func:`worst_case` (the accumulator bound). The executor, validation,
lowering, the cost model and the generators call them; to change the rounding rule, edit
:func:`rounding_constant` and :func:`round_shift` here (hardware: ``rtl_gen.arith``
builds its shifts from the same constant).
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from inq_hw.errors import ConfigError

__all__ = [
    "MAX_ACCUMULATOR_BITS",
    "MEAN_PRECISION_BITS",
    "ActFormat",
    "abs_row_sums",
    "accumulator_bits",
    "adaptive_window",
    "bias_int",
    "constant_shifts",
    "folded_mean",
    "mean_constant",
    "output_bounds",
    "quantize_input",
    "requantize",
    "round_shift",
    "rounding_constant",
    "signed_bits",
    "uniform_max",
    "worst_case",
]

#: The executor computes in int64; wider accumulators are refused.
MAX_ACCUMULATOR_BITS = 62
#: Significant bits of the constant ``1/N`` of an average over a non-power-of-two window.
MEAN_PRECISION_BITS = 14


@dataclass(frozen=True)
class ActFormat:
    """Integer format of an activation tensor: ``value = int · 2**-frac``.

    Members
    -------
    bits : int
        Width, 2 to 32.
    signed : bool
        Two's complement when True, unsigned otherwise.
    frac : int
        Fraction bits (may be negative for large values).
    """

    bits: int
    signed: bool
    frac: int

    def __post_init__(self) -> None:
        if (
            isinstance(self.bits, bool)
            or not isinstance(self.bits, int)
            or not 2 <= self.bits <= 32
        ):
            raise ConfigError(
                f"Activation width must be an integer from 2 to 32, not {self.bits!r}"
            )
        if not isinstance(self.signed, bool):
            raise ConfigError(f"Activation signedness must be a bool, not {self.signed!r}")
        if isinstance(self.frac, bool) or not isinstance(self.frac, int):
            raise ConfigError(f"Activation fraction bits must be an integer, not {self.frac!r}")

    @property
    def lo(self) -> int:
        """Smallest representable integer."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        """Largest representable integer."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def max_abs(self) -> int:
        """Largest magnitude an integer of this format can have."""
        return max(-self.lo, self.hi)

    def to_dict(self) -> dict[str, object]:
        return {"bits": self.bits, "signed": self.signed, "frac": self.frac}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "ActFormat":
        return cls(bits=data["bits"], signed=data["signed"], frac=data["frac"])  # type: ignore[arg-type]


def rounding_constant(shift: int) -> int:
    """The constant added before a right shift by ``shift`` so that it rounds half up:
    ``2**(shift-1)`` for ``shift > 0``, 0 for a left shift (``shift <= 0``, exact)."""
    return 1 << (shift - 1) if shift > 0 else 0


def output_bounds(out: ActFormat, relu: bool) -> tuple[int, int]:
    """``(lo, hi)`` a requantised output saturates to: ``out``'s range, clamped at 0 by ReLU."""
    return (max(out.lo, 0) if relu else out.lo), out.hi


def round_shift(acc: np.ndarray, shift: int) -> np.ndarray:
    """``acc · 2**-shift`` rounded half up (``shift > 0``), or shifted left (``shift <= 0``).

    ``acc`` must fit :data:`MAX_ACCUMULATOR_BITS` bits. A right shift of 63 or more gives 0
    (``|acc| < 2**(shift-1)``); a left shift saturates at ±2**62 instead of wrapping,
    which leaves every later saturation to an activation format exact.
    """
    acc = np.asarray(acc, dtype=np.int64)
    if shift >= MAX_ACCUMULATOR_BITS + 1:
        return np.zeros_like(acc)
    if shift > 0:
        return (acc + np.int64(rounding_constant(shift))) >> np.int64(shift)
    if -shift >= MAX_ACCUMULATOR_BITS:
        return np.sign(acc) << np.int64(MAX_ACCUMULATOR_BITS)
    limit = (1 << (MAX_ACCUMULATOR_BITS - -shift)) - 1
    return np.clip(acc, -limit, limit) << np.int64(-shift)


def requantize(acc: np.ndarray, *, shift: int, relu: bool, out: ActFormat) -> np.ndarray:
    """Accumulator → output integer: round-half-up shift, optional ReLU, saturation."""
    y = round_shift(acc, shift)
    lo, hi = output_bounds(out, relu)
    return np.clip(y, lo, hi)


def quantize_input(x: np.ndarray, fmt: ActFormat) -> np.ndarray:
    """Float input → integer of ``fmt`` (round half up, saturate): the host-side step."""
    scaled = np.floor(np.asarray(x, dtype=np.float64) * 2.0**fmt.frac + 0.5)
    return np.clip(scaled, fmt.lo, fmt.hi).astype(np.int64)


def uniform_max(bits: int) -> int:
    """Largest magnitude of a ``bits``-bit symmetric uniform weight: ``2**(bits-1) - 1``.

    Raises
    ------
    ConfigError
        ``bits`` is not an integer from 2 to 8.
    """
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 2 <= bits <= 8:
        raise ConfigError(f"A uniform weight has 2 to 8 bits, not {bits!r}")
    return (1 << (int(bits) - 1)) - 1


def signed_bits(max_abs: int) -> int:
    """Bits of a two's-complement integer holding every value in ``[-max_abs, max_abs]``."""
    return int(max_abs).bit_length() + 1


def bias_int(values: Iterable[float], exponent: int) -> list[int]:
    """``round_half_up(b · 2**exponent)`` of each float bias, exact (``Fraction``): the
    bias as an integer in accumulator units. The values must be finite."""
    scale = Fraction(2) ** exponent
    return [math.floor(Fraction(float(v)) * scale + Fraction(1, 2)) for v in values]


def abs_row_sums(weights: np.ndarray) -> list[int]:
    """``Σ|w|`` over the inputs of each output (first axis) of integer weights, exact."""
    rows = np.asarray(weights, dtype=object).reshape(np.shape(weights)[0], -1)
    return [sum(abs(int(w)) for w in row) for row in rows]


def worst_case(
    weight_abs_sums: np.ndarray | Sequence[int], bias: np.ndarray, input_max_abs: int
) -> int:
    """The accumulator bound ``max_o |bias_o| + Σ|w_int| · max|x_int|`` (0 without outputs).

    ``weight_abs_sums[o]`` is ``Σ|w_int|`` over the inputs of output ``o``
    (:func:`inq_hw.intmodel.codes.weight_abs_sums` from codes, :func:`abs_row_sums` from
    integers). Every partial sum is bounded by the same figure.
    """
    return max(
        (
            abs(int(b)) + int(s) * int(input_max_abs)
            for s, b in zip(weight_abs_sums, bias, strict=True)
        ),
        default=0,
    )


def accumulator_bits(
    weight_abs_sums: np.ndarray | Sequence[int], bias: np.ndarray, input_max_abs: int
) -> int:
    """Accumulator width from the worst case ``|bias| + Σ|w_int| · max|x_int|``
    (:func:`worst_case`), so an accumulator of this width never overflows.

    Raises
    ------
    ConfigError
        If the width exceeds :data:`MAX_ACCUMULATOR_BITS`.
    """
    width = signed_bits(worst_case(weight_abs_sums, bias, input_max_abs))
    if width > MAX_ACCUMULATOR_BITS:
        raise ConfigError(f"Accumulator would need {width} bits, more than {MAX_ACCUMULATOR_BITS}")
    return width


def folded_mean(count: int) -> tuple[int, Fraction]:
    """``(shift, scale)`` of a mean of ``count`` integers whose ``1/count`` is split in two
    (mode ``"folded"``): the pooling layer sums and shifts right by
    ``shift = ceil(log2 count)`` (round half up, exact as a power-of-two window's), and the
    weight layer after it is multiplied by ``scale = 2**shift / count`` (in ``[1, 2)``)
    before INQ, so the non-power-of-two part costs no hardware.

    Raises
    ------
    ConfigError
        If ``count`` is not a positive integer.
    """
    mean_constant(count)  # the same check
    shift = (count - 1).bit_length()
    return shift, Fraction(1 << shift, count)


def adaptive_window(extent: int, out: int) -> tuple[int, int] | None:
    """``(kernel, stride)`` along one axis of an adaptive average pool from ``extent`` to
    ``out`` when its windows all hold the same number of elements: side by side when
    ``out`` divides ``extent``, one pixel repeated (stride 0) when ``extent`` is 1;
    ``None`` otherwise (windows of different sizes)."""
    if extent % out == 0:
        return extent // out, extent // out
    if extent == 1:
        return 1, 0
    return None


def mean_constant(count: int) -> tuple[int, int, str]:
    """``(multiplier, shift, mode)`` that turn a sum of ``count`` integers into their mean.

    A power-of-two ``count`` is a right shift (``multiplier == 1``, mode ``"shift"``,
    exact). Otherwise ``shift = ceil(log2 count) + MEAN_PRECISION_BITS`` and
    ``multiplier = round_half_up(2**shift / count)``, which lies in
    ``(2**MEAN_PRECISION_BITS, 2**(MEAN_PRECISION_BITS+1))``, so its relative error is below
    ``2**-(MEAN_PRECISION_BITS+1)`` (mode ``"shift_add"``: hardware multiplies by the constant
    with one shifted add per set bit). The product is then requantised like every other
    accumulator (:func:`round_shift`, round half up).

    Raises
    ------
    ConfigError
        If ``count`` is not a positive integer.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"A mean needs a positive element count, not {count!r}")
    if count & (count - 1) == 0:
        return 1, count.bit_length() - 1, "shift"
    shift = (count - 1).bit_length() + MEAN_PRECISION_BITS
    return ((1 << (shift + 1)) + count) // (2 * count), shift, "shift_add"


def constant_shifts(constant: int) -> list[int]:
    """The shifts ``j`` with ``constant == sum(2**j)``: a multiplication by a positive
    constant as shifted adds, one per set bit (a mean's ``multiplier``, in hardware).

    Raises
    ------
    ConfigError
        If ``constant`` is not a positive integer.
    """
    if isinstance(constant, bool) or not isinstance(constant, int) or constant < 1:
        raise ConfigError(f"A constant multiplication needs a positive integer, not {constant!r}")
    return [j for j in range(constant.bit_length()) if constant >> j & 1]
