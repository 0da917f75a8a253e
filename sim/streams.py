"""Packing integers into the flat port vectors of the generated Verilog, and back.

Amaranth flattens an ``ArrayLayout`` port into one vector, element 0 in the low bits; a
negative element is stored as its two's complement in its field.
"""

from typing import Any

import numpy as np

from rtl_gen.fields import decode_fields, encode_fields

__all__ = ["decode_fields", "encode_beats", "encode_fields"]


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
