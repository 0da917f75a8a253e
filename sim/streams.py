"""Packing integers into the flat port vectors of the generated Verilog, and back.

Amaranth flattens an ``ArrayLayout`` port into one vector, element 0 in the low bits; a
negative element is stored as its two's complement in its field.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["decode_fields", "encode_beats", "encode_fields", "pack_words", "unpack_fields"]


def encode_fields(values: Sequence[int], bits: int) -> int:
    """One vector holding ``values``, ``bits`` each, the first in the low bits."""
    mask = (1 << bits) - 1
    word = 0
    for k, value in enumerate(values):
        word |= (int(value) & mask) << (k * bits)
    return word


def decode_fields(word: int, count: int, bits: int, signed: bool) -> list[int]:
    """``count`` integers of ``bits`` from a vector (two's complement when ``signed``)."""
    mask, top = (1 << bits) - 1, 1 << (bits - 1)
    values = []
    for k in range(count):
        v = (word >> (k * bits)) & mask
        values.append(v - (1 << bits) if signed and v & top else v)
    return values


def encode_beats(images: np.ndarray, fmt: dict[str, Any]) -> list[int]:
    """The input beats of ``images``: per image, its pixels in raster order, each the
    vector of its channels (``(N, C, H, W)``), or one beat per vector (``(N, F)``)."""
    if images.ndim == 4:
        n, c, h, w = images.shape
        pixels = images.transpose(0, 2, 3, 1).reshape(n * h * w, c)
    else:
        pixels = images.reshape(images.shape[0], -1)
    if pixels.shape[1] != fmt["elems"]:
        raise ValueError(f"Beats of {pixels.shape[1]} integers, the top takes {fmt['elems']}")
    return [encode_fields(row, fmt["bits"]) for row in pixels.tolist()]


def pack_words(rows: np.ndarray, bits: int) -> np.ndarray:
    """Rows of integers as port vectors, ``bits`` per field, field 0 in the low bits, each
    vector as little-endian 32-bit words (``(N, ceil(F * bits / 32))`` ``uint32``): what
    :func:`encode_fields` computes, vectorised for the compiled harness."""
    rows = np.asarray(rows, dtype=np.int64)
    n, elems = rows.shape
    words = max(1, -(-elems * bits // 32))
    # >> on int64 is arithmetic, so negative values give their two's complement bits
    field_bits = ((rows[:, :, None] >> np.arange(bits)) & 1).astype(np.uint8)
    flat = np.zeros((n, words * 32), dtype=np.uint8)
    flat[:, : elems * bits] = field_bits.reshape(n, elems * bits)
    packed = np.packbits(flat, axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u4").reshape(n, words).astype(np.uint32)


def unpack_fields(
    words: np.ndarray, count: int, bits: int, signed: bool, offset: int = 0
) -> np.ndarray:
    """``count`` fields of ``bits`` from each row of 32-bit words, starting at bit
    ``offset`` (two's complement when ``signed``): :func:`decode_fields`, vectorised."""
    words = np.ascontiguousarray(np.asarray(words, dtype="<u4"))
    flat = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little").astype(np.int64)
    fields = flat[:, offset : offset + count * bits].reshape(len(words), count, bits)
    values = fields @ (np.int64(1) << np.arange(bits, dtype=np.int64))
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values
