"""The b-bit power-of-two weight code: the one description of its format (numpy only).

ARCHITECTURE.md, "Number formats": a weight ``0`` or ``±2**e`` (``n2 <= e <= n1``,
``n2 = n1 + 1 - 2**(b-2)``) is stored in ``b`` bits as a zero flag, a sign bit
(1 = negative) and a ``(b-2)``-bit exponent index ``n1 - e``, packed as
``zero << (b-1) | sign << (b-2) | index``. A zero weight is always ``1 << (b-1)`` (sign
and index clear). As an integer of the model, ``w_int = ±2**shift`` with
``shift = e - n2 = 2**(b-2) - 1 - index`` (the bitwise complement of the index, so a
barrel shifter needs no subtractor).

Changing the code format means editing this module (and the hardware decode in
:func:`rtl_gen.arith.code_term`, which reads the same three fields). The torch quantizer
(:mod:`inq_hw.quant`), the executor, validation, lowering, the cost model and the
generators all call these functions.
"""

from dataclasses import dataclass

import numpy as np

from inq_hw.errors import ConfigError

__all__ = [
    "MAX_BITS",
    "MIN_BITS",
    "CodeFields",
    "check_bits",
    "code_of_weight",
    "compute_n2",
    "encode",
    "max_shift",
    "unpack",
    "weight_abs_sums",
    "weight_of_code",
    "weights_int",
    "zero_code",
]

MIN_BITS = 2
MAX_BITS = 8


def check_bits(bits: object) -> int:
    """Return ``bits`` if it is a valid code width, else raise.

    Raises
    ------
    ConfigError
        If ``bits`` is not an integer from 2 to 8.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(
            f"Bit-width must be an integer from {MIN_BITS} to {MAX_BITS}, not {bits!r}"
        )
    return bits


def compute_n2(n1: int, bits: int) -> int:
    """Smallest exponent of a ``bits``-bit code: ``n1 + 1 - 2**(bits-2)``."""
    return n1 + 1 - (1 << (check_bits(bits) - 2))


def max_shift(bits: int) -> int:
    """Largest shift ``e - n2`` of a ``bits``-bit code: ``n1 - n2 = 2**(b-2) - 1``."""
    return (1 << (bits - 2)) - 1


def zero_code(bits: int) -> int:
    """The one code of a zero weight: ``1 << (b-1)``."""
    return 1 << (bits - 1)


@dataclass(frozen=True)
class CodeFields:
    """The fields of packed codes: ``zero`` and ``sign`` (bool, sign False where zero) and
    ``index`` (int64, 0 where zero), each of the codes' shape."""

    zero: np.ndarray
    sign: np.ndarray
    index: np.ndarray

    def shift(self, bits: int) -> np.ndarray:
        """Shift ``e - n2 = 2**(b-2) - 1 - index`` of each weight (meaningless where zero)."""
        return max_shift(bits) - self.index


def encode(zero: np.ndarray, sign: np.ndarray, index: np.ndarray, bits: int) -> np.ndarray:
    """Pack fields into ``uint8`` codes: ``zero << (b-1) | sign << (b-2) | index``; a zero
    weight becomes :func:`zero_code` whatever its sign and index."""
    packed = (np.asarray(sign, dtype=np.int64) << (bits - 2)) | np.asarray(index, np.int64)
    return np.where(np.asarray(zero, dtype=bool), zero_code(bits), packed).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int) -> CodeFields:
    """Inverse of :func:`encode`, checking the codes.

    Raises
    ------
    ConfigError
        If a value does not fit ``bits`` bits or a zero code has sign or index bits set.
    """
    check_bits(bits)
    p = np.asarray(packed).astype(np.int64)
    if bool(((p < 0) | (p >= (1 << bits))).any()):
        raise ConfigError(f"Packed codes must lie in [0, {1 << bits}) for {bits}-bit codes")
    zero = (p >> (bits - 1)).astype(bool)
    if bool((zero & (p != zero_code(bits))).any()):
        raise ConfigError("A zero code must have its sign and index bits clear")
    sign = ((p >> (bits - 2)) & 1).astype(bool) & ~zero
    index = p & ((1 << (bits - 2)) - 1)
    return CodeFields(zero, sign, index)


def weights_int(packed: np.ndarray, bits: int) -> np.ndarray:
    """Integer weights ``0`` / ``±2**(e - n2)`` of packed codes, ``int64``, their shape."""
    fields = unpack(packed, bits)
    magnitude = np.left_shift(np.int64(1), fields.shift(bits).astype(np.int64))
    signed = np.where(fields.sign, -magnitude, magnitude)
    return np.where(fields.zero, 0, signed).astype(np.int64)


def weight_abs_sums(packed: np.ndarray, bits: int) -> np.ndarray:
    """``Σ|w_int|`` per output (first axis) as exact Python integers (``object`` array):
    the weights' part of the accumulator bound (:func:`inq_hw.intmodel.arith.worst_case`)."""
    fields = unpack(np.asarray(packed).reshape(np.shape(packed)[0], -1), bits)
    shifts = fields.shift(bits)
    sums = np.zeros(shifts.shape[0], dtype=object)
    for shift in range(max_shift(bits) + 1):
        count = ((shifts == shift) & ~fields.zero).sum(axis=1)
        sums = sums + count.astype(object) * (1 << shift)
    return sums


def code_of_weight(weight: int, bits: int) -> int:
    """The ``bits``-bit code of one integer weight ``0`` or ``±2**k`` (``k = e - n2``).

    Raises
    ------
    ValueError
        The weight is not 0 or ±2**k, or its shift does not fit the code.
    """
    if weight == 0:
        return zero_code(bits)
    k = abs(weight).bit_length() - 1
    top = max_shift(bits)
    if abs(weight) != 1 << k or k > top:
        raise ValueError(f"Weight {weight} is not ±2**k with k <= {top} ({bits}-bit code)")
    return (int(weight < 0) << (bits - 2)) | (top - k)


def weight_of_code(code: int, bits: int) -> int:
    """Integer weight ``w_int`` of one packed code: 0 or ``±2**(2**(b-2) - 1 - index)``.

    Raises
    ------
    ValueError
        If ``code`` does not fit ``bits`` bits.
    """
    if not 0 <= code < 1 << bits:
        raise ValueError(f"A {bits}-bit weight code must lie in [0, {1 << bits}), not {code!r}")
    if code >> (bits - 1):
        return 0
    magnitude = 1 << (max_shift(bits) - (code & ((1 << (bits - 2)) - 1)))
    return -magnitude if (code >> (bits - 2)) & 1 else magnitude
