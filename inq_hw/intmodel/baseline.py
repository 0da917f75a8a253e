"""The uniform baseline of a weight layer: the weights of its multiplier twin.

ARCHITECTURE.md, "Baselines": every design has a multiplier twin from the same generator,
with constant 8-bit uniform (non-power-of-two) weights; constant power-of-two weights would
be no baseline, because synthesis folds them to shifts. The twin is derived from the FP32
weights W that the INQ run started from (BatchNorm folded like the INQ model) and their
float bias b, and keeps the po2 layer's input and output formats (``frac_in``,
``frac_out``):

* step ``2**k``, ``k`` the smallest integer with ``max|W| / 2**k <= 127`` (for an all-zero
  W, whose step is arbitrary, ``k`` is the po2 layer's ``n2``);
* ``baseline_weights = clip(round_half_up(W / 2**k), -127, 127)`` as ``int8``; the range is
  symmetric, and the largest magnitude always lies in [64, 127];
* products ``x_int · w`` are in units ``2**(k - frac_in)``, and
  ``baseline_bias = round_half_up(b · 2**(frac_in - k))`` as ``int64``;
* ``baseline_shift = frac_in - k - frac_out``, requantised like every layer (round half up,
  ReLU, saturation; :mod:`~inq_hw.intmodel.arith`);
* ``baseline_acc_bits`` from the worst case ``|bias| + Σ|w| · max|x_int|``
  (:func:`~inq_hw.intmodel.arith.accumulator_bits`).

So the twin is a functional integer layer too: the golden executor runs it with
``run(model, x, weights="baseline")``. All rounding is exact (no float error): the weights
by an exact split into integer and fraction, the bias with fractions.

**Uniform k-bit weights.** The same format at any width ``k`` from 2 to 8 is this module's
second use: the uniform twin at the design's own bit-width, trained by the same incremental
re-training as the power-of-two weights (``INQConfig(weight_format="uniform")``). A layer's
step is ``2**e`` with ``e = uniform_exponent(max|W|, k)``, the smallest integer with
``max|W| / 2**e <= 2**(k-1) - 1``, and a weight is ``clip(round_half_up(w / 2**e),
-(2**(k-1) - 1), 2**(k-1) - 1) · 2**e`` (:func:`uniform_round`): symmetric, a power-of-two
step (the requantisation stays a shift, as in fixed-point ``quantized_bits`` of QKeras /
hls4ml or Brevitas with power-of-two scales), no clipping of the initial weights. The INQ
quantizer (:func:`inq_hw.quant.quantize_uniform`) and the lowering call these two
functions; nothing else rounds a weight to the uniform grid. At ``k = 8`` it is the twin
above; at ``k = 2`` the levels are ``{0, ±2**e}``, the power-of-two format's ternary
levels with another scale rule.
"""

import math
from fractions import Fraction
from typing import Any

import numpy as np

from inq_hw.errors import ConfigError
from inq_hw.intmodel.arith import abs_row_sums, accumulator_bits, bias_int, uniform_max
from inq_hw.intmodel.layers import BASELINE_MAX

__all__ = [
    "BASELINE_BITS",
    "BASELINE_MAX",
    "baseline_exponent",
    "baseline_fields",
    "uniform_exponent",
    "uniform_max",
    "uniform_round",
]

#: Width of the default baseline weight (the 8-bit twin rounded from the FP32 weights).
BASELINE_BITS = 8


def uniform_exponent(max_abs: float, bits: int) -> int:
    """The smallest integer ``e`` with ``max_abs / 2**e <= 2**(bits-1) - 1``, exactly.

    Raises
    ------
    ConfigError
        ``max_abs`` is not a positive finite number, or ``bits`` is not 2 to 8.
    """
    top = uniform_max(bits)
    if not math.isfinite(max_abs) or max_abs <= 0:
        raise ConfigError(
            f"The largest weight magnitude must be positive and finite, not {max_abs}"
        )
    m = Fraction(max_abs)
    # m = f·2**E with f in [0.5, 1) gives m / 2**(E-bits+1) = 2**(bits-1)·f: one off at most.
    e = math.frexp(max_abs)[1] - bits + 1
    while m / Fraction(2) ** e > top:
        e += 1
    while m / Fraction(2) ** (e - 1) <= top:
        e -= 1
    return e


def baseline_exponent(max_abs: float) -> int:
    """The smallest integer ``k`` with ``max_abs / 2**k <= 127``, exactly (the 8-bit
    twin's step: :func:`uniform_exponent` at 8 bits).

    Raises
    ------
    ConfigError
        ``max_abs`` is not a positive finite number.
    """
    return uniform_exponent(max_abs, BASELINE_BITS)


def uniform_round(values: np.ndarray, exponent: int, bits: int) -> np.ndarray:
    """``clip(round_half_up(v / 2**exponent), ±(2**(bits-1) - 1))`` as ``int64``, exact for
    float64 (so also float32) ``values``: the one rounding to the uniform grid."""
    top = uniform_max(bits)
    return np.clip(_round_half_up_scaled(np.asarray(values, np.float64), exponent), -top, top)


def _round_half_up_scaled(values: np.ndarray, exponent: int) -> np.ndarray:
    """``floor(v·2**exponent + 1/2)`` elementwise, exact for float64 ``values``.

    ``ldexp`` is exact (no overflow or underflow in the ranges used here), and so are
    ``floor`` and the subtraction that leaves the fraction, so no sum is ever rounded.
    """
    scaled = np.ldexp(values, -exponent) if exponent else values
    whole = np.floor(scaled)
    return (whole + (scaled - whole >= 0.5)).astype(np.int64)


def baseline_fields(
    weights: np.ndarray,
    bias: np.ndarray | None,
    *,
    frac_in: int,
    frac_out: int,
    input_max_abs: int,
    zero_exp: int,
    bits: int = BASELINE_BITS,
    on_grid: bool = False,
) -> dict[str, Any]:
    """The ``baseline_*`` fields of a weight layer (see the module docstring).

    Args:
        weights: the FP32 weights (or a trained uniform model's), the layer's weight shape.
        bias: the float bias per output (``None``: zero).
        frac_in: fraction bits of the layer's input format.
        frac_out: fraction bits of the layer's output format.
        input_max_abs: largest input magnitude (the input format's ``max_abs``).
        zero_exp: ``k`` for an all-zero ``weights`` (the po2 layer's ``n2``).
        bits: the twin's weight width; ``baseline_bits`` is among the fields when it is
            not 8 (so packages with the 8-bit twin are written as before).
        on_grid: the weights must already lie on the ``bits``-bit uniform grid (a model
            trained with uniform INQ): rounding must not change any of them.

    Returns:
        Keyword arguments for :class:`~inq_hw.intmodel.layers.WeightLayer`.

    Raises:
        ConfigError: a NaN or Inf weight or bias, a weight off the grid with ``on_grid``,
            or an accumulator wider than the executor allows.

    Example usage::

        fields = baseline_fields(w, b, frac_in=4, frac_out=3, input_max_abs=255, zero_exp=-6)
        layer = dataclasses.replace(layer, **fields)
    """
    w = np.asarray(weights, dtype=np.float64)
    b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
    if b.shape != (w.shape[0],):
        raise ConfigError(f"The bias must have one value per output, not shape {b.shape}")
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise ConfigError("The FP32 weights or bias hold a NaN or Inf")
    largest = float(np.abs(w).max(initial=0.0))
    exp = uniform_exponent(largest, bits) if largest > 0 else zero_exp
    q = uniform_round(w, exp, bits).astype(np.int8)
    if on_grid and not np.array_equal(np.ldexp(q.astype(np.float64), exp), w):
        raise ConfigError(
            f"The weights are not on a {bits}-bit uniform grid (not a finished uniform INQ run?)"
        )
    biases = np.array(bias_int(b, frac_in - exp), dtype=object)
    acc_bits = accumulator_bits(abs_row_sums(q), biases, input_max_abs)
    return {
        "baseline_weights": q,
        "baseline_bias": biases.astype(np.int64),
        "baseline_exp": exp,
        "baseline_shift": frac_in - exp - frac_out,
        "baseline_acc_bits": acc_bits,
        **({} if bits == BASELINE_BITS else {"baseline_bits": bits}),
    }
