"""The power-of-two weight quantizer of INQ and its hardware codes (and the uniform one).

This module is the one place where a weight becomes a power of two. Every other stage
(the INQ driver, lowering, the cost model) calls :func:`quantize_po2` or
:func:`po2_codes`. :func:`quantize_uniform` is the tensor side of the uniform k-bit format
of the multiplier twin (:mod:`inq_hw.intmodel.baseline`, which owns its arithmetic).

The arithmetic (Zhou et al., ICLR 2017, arXiv 1702.03044, Sec. 2.2, Eqs. 2-4):

* ``s = max|W|`` of the layer *before INQ starts*; it is fixed for the whole run, so
  callers pass ``n1`` explicitly after the first step.
* ``n1 = floor(log2(4s/3))``, computed exactly from the binary exponent and mantissa of
  ``s`` (a float logarithm is off by one when ``4s/3`` is an exact power of two).
* ``n2 = n1 + 1 - 2**(b-2)``; the levels are ``0`` and ``±2**e`` for ``n2 <= e <= n1``.
* Eq. 4: ``ŵ = β·sgn(w)`` if ``(α+β)/2 <= |w| < 3β/2`` with α the next level below β
  (α = 0 below ``2**n2``), else 0. So ``|w| < 2**(n2-1)`` becomes 0, a tie at a lower
  threshold goes to the larger level.
* Clipping (a documented departure from the literal equation, as the authors' released
  code does): a weight that has grown past ``3·2**n1/2`` during re-training becomes
  ``±2**n1``; Eq. 4 read literally would zero the largest weights of the layer.

Hardware code of a weight, ``b`` bits: a zero flag, a sign bit (1 = negative) and a
``(b-2)``-bit exponent index ``n1 - e``. Packed as ``zero << (b-1) | sign << (b-2) | index``;
a zero weight is always packed as ``1 << (b-1)`` (sign and index 0). The format itself is
:mod:`inq_hw.intmodel.codes` (numpy only); :func:`pack_codes` and :func:`unpack_codes` are its
tensor API.
"""

import math
from dataclasses import dataclass

import torch

from inq_hw.errors import ConfigError
from inq_hw.intmodel import codes as _codes
from inq_hw.intmodel.baseline import uniform_exponent, uniform_round
from inq_hw.intmodel.codes import MAX_BITS, MIN_BITS, check_bits, compute_n2

__all__ = [
    "MAX_BITS",
    "MIN_BITS",
    "Po2Codes",
    "check_bits",
    "compute_n1",
    "compute_n2",
    "decode_codes",
    "is_po2_grid",
    "is_uniform_grid",
    "pack_codes",
    "po2_codes",
    "quantize_po2",
    "quantize_uniform",
    "uniform_exponent",
    "unpack_codes",
]


def compute_n1(s: float) -> int:
    """Exact ``floor(log2(4s/3))`` for a positive finite ``s``.

    With ``s = m·2**E`` (``0.5 <= m < 1``), ``4s/3 >= 2**E`` exactly when ``m >= 3/4``,
    a comparison that is exact in binary floating point.

    Raises
    ------
    ConfigError
        If ``s`` is not a positive finite number.
    """
    s = float(s)
    if not math.isfinite(s) or s <= 0.0:
        raise ConfigError(f"The largest weight magnitude must be positive and finite, not {s!r}")
    mantissa, exponent = math.frexp(s)
    return exponent if mantissa >= 0.75 else exponent - 1


@dataclass(frozen=True)
class Po2Codes:
    """Integer codes of a power-of-two tensor.

    Members
    -------
    zero : torch.Tensor
        ``bool``, True where the weight is 0.
    sign : torch.Tensor
        ``bool``, True where the weight is negative (False where zero).
    index : torch.Tensor
        ``int64``, exponent index ``n1 - e`` in ``[0, 2**(bits-2))`` (0 where zero).
    n1, n2 : int
        Largest and smallest exponent.
    bits : int
        Bit-width of the code.
    """

    zero: torch.Tensor
    sign: torch.Tensor
    index: torch.Tensor
    n1: int
    n2: int
    bits: int

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.n2 != compute_n2(self.n1, self.bits):
            expected = compute_n2(self.n1, self.bits)
            raise ConfigError(f"n2 must be n1 + 1 - 2**(bits-2) = {expected}, not {self.n2!r}")
        if not (self.zero.shape == self.sign.shape == self.index.shape):
            shapes = (tuple(self.zero.shape), tuple(self.sign.shape), tuple(self.index.shape))
            raise ConfigError(f"Code tensors must share one shape, not {shapes}")

    @property
    def exponent(self) -> torch.Tensor:
        """Exponent ``e = n1 - index`` of each weight (meaningless where ``zero``)."""
        return self.n1 - self.index


@dataclass(frozen=True)
class _FloatFormat:
    int_dtype: torch.dtype
    mantissa_bits: int
    bias: int


_FORMATS = {
    torch.float32: _FloatFormat(torch.int32, 23, 127),
    torch.float64: _FloatFormat(torch.int64, 52, 1023),
}


def _working_dtype(weights: torch.Tensor, lowest: int, highest: int) -> torch.dtype:
    """float32 or float64, whichever holds ``2**lowest .. 2**highest`` as normal numbers."""
    if weights.dtype == torch.float32 and lowest >= -126 and highest <= 127:
        return torch.float32
    if weights.dtype in (torch.float16, torch.bfloat16) and lowest >= -126 and highest <= 127:
        return torch.float32  # too few exponent bits for the low levels of 8-bit codes
    if lowest >= -1022 and highest <= 1023:
        return torch.float64
    raise ConfigError(f"Exponents from {lowest} to {highest} are out of floating-point range")


def _working_copy(weights: torch.Tensor, lowest: int, highest: int) -> torch.Tensor:
    """Detached, contiguous float32/float64 copy of ``weights`` that represents the levels."""
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"Weights must be a torch.Tensor, not {type(weights).__name__}")
    if not weights.is_floating_point():
        raise TypeError(f"Weights must be a floating-point tensor, not {weights.dtype}")
    w = weights.detach().to(_working_dtype(weights, lowest, highest))
    if not bool(torch.isfinite(w).all()):
        bad = int((~torch.isfinite(w)).sum())
        raise ConfigError(f"Weights must be finite; found {bad} NaN/Inf values")
    return w.contiguous()


def _resolve_n1(weights: torch.Tensor, n1: int | None) -> int | None:
    if n1 is not None:
        if isinstance(n1, bool) or not isinstance(n1, int):
            raise TypeError(f"n1 must be an int, not {type(n1).__name__}")
        return n1
    if not isinstance(weights, torch.Tensor) or weights.numel() == 0:
        return None
    s = float(weights.detach().abs().max())
    if math.isnan(s) or math.isinf(s):
        raise ConfigError(f"Weights must be finite; the largest magnitude is {s!r}")
    return compute_n1(s) if s > 0.0 else None


def _quantize_bits(
    weights: torch.Tensor, bits: int, n1: int | None
) -> tuple[torch.Tensor, int, int]:
    """Core of Eq. 4 on the IEEE-754 bit pattern, exact and branch-free.

    For ``|w| = 1.m·2**E``, the level exponent ``e`` with ``3·2**(e-2) <= |w| < 3·2**(e-1)``
    is ``E`` plus the top mantissa bit, i.e. the biased exponent field of the integer
    ``bits(|w|) + half a mantissa``. Returns the bit pattern of the quantized values
    (as the float's integer dtype), ``n1`` and ``n2``.
    """
    check_bits(bits)
    resolved = _resolve_n1(weights, n1)
    top = 0 if resolved is None else resolved
    n2 = compute_n2(top, bits)
    w = _working_copy(weights, n2 - 1, top)
    fmt = _FORMATS[w.dtype]
    raw = w.view(fmt.int_dtype)
    sign_bit = raw & torch.iinfo(fmt.int_dtype).min
    magnitude = raw & torch.iinfo(fmt.int_dtype).max
    biased = (magnitude + (1 << (fmt.mantissa_bits - 1))) >> fmt.mantissa_bits
    # Clamping at n1 is the documented clipping of weights past 3·2**n1/2.
    biased.clamp_(min=n2 + fmt.bias, max=top + fmt.bias)
    pattern = (biased << fmt.mantissa_bits) | sign_bit
    # Below 2**(n2-1) Eq. 4 gives 0: the lower threshold of the smallest level.
    threshold = (n2 - 1 + fmt.bias) << fmt.mantissa_bits
    zero = magnitude < threshold if resolved is not None else torch.ones_like(raw, dtype=torch.bool)
    return pattern.masked_fill_(zero, 0), top, n2


def po2_codes(weights: torch.Tensor, bits: int, *, n1: int | None = None) -> Po2Codes:
    """Quantize ``weights`` (any shape) to ``bits``-bit power-of-two codes (Eq. 4, clipped).

    Parameters
    ----------
    weights : torch.Tensor
        Floating-point, finite.
    bits : int
        2 (ternary) to 8.
    n1 : int, optional
        Largest exponent. Computed from ``max|weights|`` when omitted; INQ passes the value
        fixed at the start of the run. An all-zero tensor gives all-zero codes (and n1 = 0).

    Raises
    ------
    ConfigError
        Bad bit-width, NaN/Inf weights.
    TypeError
        Not a floating-point tensor, or ``n1`` not an int.
    """
    pattern, top, n2 = _quantize_bits(weights, bits, n1)
    fmt = _FORMATS[torch.float32 if pattern.dtype == torch.int32 else torch.float64]
    zero = pattern == 0
    sign = pattern < 0
    exponent = ((pattern & torch.iinfo(pattern.dtype).max) >> fmt.mantissa_bits).to(torch.int64)
    index = (top + fmt.bias - exponent).masked_fill_(zero, 0)
    return Po2Codes(zero=zero, sign=sign, index=index, n1=top, n2=n2, bits=bits)


def decode_codes(codes: Po2Codes, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values ``0`` / ``±2**(n1 - index)`` of ``codes`` as a ``dtype`` tensor (exact)."""
    fmt = _FORMATS[torch.float64]
    biased = (codes.exponent + fmt.bias) << fmt.mantissa_bits
    pattern = biased | (codes.sign.to(torch.int64) << 63)
    return pattern.masked_fill_(codes.zero, 0).view(torch.float64).to(dtype)


def quantize_po2(weights: torch.Tensor, bits: int, *, n1: int | None = None) -> torch.Tensor:
    """Quantize ``weights`` to 0 and ±2^e, ``n2 <= e <= n1`` (INQ Eq. 4, clipped at 2^n1).

    Returns a new tensor of the same shape, dtype and device. See :func:`po2_codes`.

    Example usage::

        >>> quantize_po2(torch.tensor([0.3, -0.05, 0.0, 0.9]), bits=4)
        tensor([0.2500, 0.0000, 0.0000, 1.0000])
    """
    pattern, _, _ = _quantize_bits(weights, bits, n1)
    values = pattern.view(torch.float32 if pattern.dtype == torch.int32 else torch.float64)
    return values.to(dtype=weights.dtype, device=weights.device).reshape(weights.shape)


def pack_codes(codes: Po2Codes) -> torch.Tensor:
    """Pack codes into ``bits``-bit integers: ``zero << (b-1) | sign << (b-2) | index``
    (:func:`inq_hw.intmodel.codes.encode`)."""
    packed = _codes.encode(
        codes.zero.cpu().numpy(), codes.sign.cpu().numpy(), codes.index.cpu().numpy(), codes.bits
    )
    return torch.from_numpy(packed)


def unpack_codes(packed: torch.Tensor, *, bits: int, n1: int) -> Po2Codes:
    """Inverse of :func:`pack_codes` (:func:`inq_hw.intmodel.codes.unpack`).

    Raises
    ------
    ConfigError
        If a value does not fit ``bits`` bits or a zero code has sign or index bits set.
    """
    fields = _codes.unpack(packed.to(torch.int64).cpu().numpy(), bits)
    return Po2Codes(
        zero=torch.from_numpy(fields.zero),
        sign=torch.from_numpy(fields.sign),
        index=torch.from_numpy(fields.index),
        n1=n1,
        n2=compute_n2(n1, bits),
        bits=bits,
    )


def is_po2_grid(values: torch.Tensor, bits: int, n1: int) -> bool:
    """True when every element is exactly 0 or ±2^e with ``n2 <= e <= n1``."""
    n2 = compute_n2(n1, bits)
    w = _working_copy(values, n2, n1)
    magnitude = w.abs()
    nonzero = magnitude > 0
    mantissa, exponent = torch.frexp(magnitude)
    exact = (mantissa == 0.5) & (exponent - 1 >= n2) & (exponent - 1 <= n1)
    return bool((exact | ~nonzero).all())


def quantize_uniform(weights: torch.Tensor, bits: int, exponent: int) -> torch.Tensor:
    """Quantize ``weights`` to ``m·2**exponent``, ``|m| <= 2**(bits-1) - 1``, rounding half
    up (:func:`inq_hw.intmodel.baseline.uniform_round`, exact); same shape, dtype, device.

    Example usage::

        >>> quantize_uniform(torch.tensor([0.3, -0.05, 0.0, 0.9]), bits=3, exponent=-2)
        tensor([0.2500, 0.0000, 0.0000, 0.7500])
    """
    ints = uniform_round(weights.detach().cpu().double().numpy(), exponent, bits)
    values = torch.from_numpy(ints.astype("float64") * 2.0**exponent)
    return values.to(dtype=weights.dtype, device=weights.device).reshape(weights.shape)


def is_uniform_grid(values: torch.Tensor, bits: int, exponent: int) -> bool:
    """True when every element is exactly ``m·2**exponent`` with ``|m| <= 2**(bits-1) - 1``."""
    v = values.detach().cpu().double().numpy()
    return bool((uniform_round(v, exponent, bits) * 2.0**exponent == v).all())
