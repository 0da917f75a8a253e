"""The dataflow top's argmax (a balanced tournament): the first maximum, as ``numpy.argmax``,
for every count of logits and many ties."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from rtl_gen.dataflow import _argmax


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 10, 11])
def test_argmax_is_the_first_maximum(count: int) -> None:
    m = Module()
    values = [Signal(signed(3), name=f"v{n}") for n in range(count)]
    label, _ = _argmax(m, values)
    rng = np.random.default_rng(count)
    vectors = rng.integers(-4, 4, size=(200, count))  # 8 values: ties in most vectors
    vectors[:20] = rng.integers(-4, -2, size=(20, count))  # mostly ties
    vectors[20] = -4  # all equal
    seen: list[int] = []

    async def bench(ctx: object) -> None:
        for vector in vectors:
            for signal, value in zip(values, vector, strict=True):
                ctx.set(signal, int(value))  # type: ignore[attr-defined]
            seen.append(ctx.get(label))  # type: ignore[attr-defined]

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == vectors.argmax(axis=1).tolist()
