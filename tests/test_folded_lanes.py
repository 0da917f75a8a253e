"""Folded shift-add lanes: negative terms inverted (their count in the ROM's bias), the
pipeline registers spread over the decode and the tree, bit-exact on extreme inputs."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from inq_hw.intmodel.arith import ActFormat, requantize
from rtl_gen.arith import tree_register_levels
from rtl_gen.folded import FoldedDot
from rtl_gen.units import Requant

UNSIGNED = ActFormat(bits=8, signed=False, frac=4)
SIGNED = ActFormat(bits=8, signed=True, frac=4)
OUT = ActFormat(bits=10, signed=True, frac=2)


def _weights() -> np.ndarray:
    """Rows all negative at the largest shift, all positive, mixed, and all zero."""
    return np.array(
        [
            [-8, -8, -8, -8, -8],
            [8, 8, 8, 8, 8],
            [-1, 2, 0, -4, 8],
            [0, 0, 0, 0, 0],
            [-2, -1, -8, 0, -4],
        ],
        dtype=np.int64,
    )


def _run(dot: FoldedDot, vectors: list[list[int]]) -> list[list[int]]:
    seen: list[list[int]] = []

    async def bench(ctx) -> None:
        ctx.set(dut.o.ready, 1)
        for vector in vectors:
            ctx.set(dut.i.payload, vector)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            await ctx.tick().until(dut.o.valid)
            seen.append([int(v) for v in ctx.get(dut.o.payload)])

    dut = dot
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("stages", [0, 1, 2, 4, 5])
@pytest.mark.parametrize("fmt", [UNSIGNED, SIGNED], ids=["unsigned", "signed"])
def test_inverted_terms_are_bit_exact_on_extreme_inputs(stages: int, fmt: ActFormat) -> None:
    weights, bias = _weights(), np.array([3, -7, 0, 5, -1], dtype=np.int64)
    requant = Requant(shift=2, relu=False, out=OUT)
    dot = FoldedDot(
        weights=weights,
        bias=bias,
        in_format=fmt,
        mode="shift-add",
        requant=requant,
        fold=3,
        stages=stages,
    )
    rng = np.random.default_rng(stages)
    vectors = [[fmt.lo] * 5, [fmt.hi] * 5, [fmt.lo, fmt.hi] * 2 + [fmt.lo]]
    vectors += rng.integers(fmt.lo, fmt.hi + 1, size=(3, 5)).tolist()
    expected = requantize(
        np.array(vectors) @ weights.T + bias, shift=2, relu=False, out=OUT
    ).tolist()
    assert _run(dot, vectors) == expected


def test_each_rom_bias_holds_its_lanes_negative_weight_count() -> None:
    weights, bias = _weights(), np.zeros(5, dtype=np.int64)
    dot = FoldedDot(
        weights=weights,
        bias=bias,
        in_format=UNSIGNED,
        mode="shift-add",
        requant=Requant(shift=0, relu=False, out=OUT),
        fold=5,
    )
    field = dot.lanes * dot.n_in * dot.code_bits
    constants = [word >> field for word in dot.words]  # one lane: its bias field
    assert constants == [5, 0, 2, 0, 4]
    assert dot.elaborate(None).submodules.rom.init[0] == dot.words[0]


def test_registers_are_spread_over_the_decode_and_the_tree() -> None:
    # 9 levels and a decode, 4 stages: after levels 1, 4, 7 and the root (9)
    assert tree_register_levels(9, 4, 1) == {1, 4, 7, 9}
    # as many stages as levels and decode: the leaves too, behind the decode
    assert tree_register_levels(3, 4, 1) == {0, 1, 2, 3}
    assert tree_register_levels(3, 2, 0) == {2, 3}  # no lead: the tree's own spread
