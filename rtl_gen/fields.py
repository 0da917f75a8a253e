"""Integers in the flat port vectors of the generated Verilog, and back.

Amaranth flattens an ``ArrayLayout`` port into one vector, element 0 in the low bits; a
negative element is stored as its two's complement in its field. The testbenches
(:mod:`sim.streams`) and the IP kit's golden vectors (:mod:`rtl_gen.ipkit`) both pack
through here.
"""

from collections.abc import Sequence

__all__ = ["decode_fields", "encode_fields"]


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
