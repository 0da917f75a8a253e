"""Streaming layer engines of the dataflow top, joined by valid/ready streams.

Every engine has an input stream ``i`` and an output stream ``o``
(:class:`amaranth.lib.stream.Signature`; a transfer happens in a cycle where ``valid`` and
``ready`` are both high). A *beat* is one pixel with all its channels (feature maps, in
raster order) or a whole vector (after a Linear layer). Every engine registers its output
in a *slot* (:func:`output_slot`): an output register and a one-beat skid behind it, so
``o.valid`` comes from a register and never depends on ready, and the slot takes a new
beat whenever its skid is empty, a register too, so ``i.ready`` never depends on the
consumer's ready either: no ready chain runs through an engine into the next. A stall
downstream fills the skid, then holds every engine upstream in place, beat for beat:
nothing is lost or duplicated, whatever the stall pattern.

The dot products (convolution windows, Linear layers) go through a *dot stage* with a
stream on each side: :class:`UnrolledDot` (a constant-weight unit, one result per cycle,
combinational from ``i`` to ``o`` or pipelined) or a folded one (:mod:`rtl_gen.folded`,
several cycles per result). An engine offers a window to its dot stage with ``pending``;
the dot stage's result goes into the engine's slot.

A pipelined :class:`UnrolledDot` (a unit with ``stages = N``) stalls as one piece: every
register of its adder trees and its valid shift register advance together, in a cycle
where the last stage is empty or its result is being taken (``i.ready``). A beat in
flight is therefore held, never dropped or repeated, and bubbles between beats stay
bubbles; without stalls it takes one window per cycle and adds ``N`` cycles of latency.

:mod:`rtl_gen.timing` mirrors each engine's control cycle for cycle; the manifest's
latency and interval come from it, and the RTL tests check them.
"""

import itertools
from collections.abc import Callable, Sequence

from amaranth.hdl import Array, Const, EnableInserter, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from inq_hw.errors import ConfigError
from inq_hw.intmodel.arith import ActFormat, constant_shifts
from rtl_gen.arith import Term, act_shape, add_terms, adder_tree, materialise, requantize
from rtl_gen.units import ConstDotUnit

__all__ = [
    "DEFAULT_LINE_BUFFER",
    "LINE_BUFFERS",
    "AddEngine",
    "ConvEngine",
    "LinearEngine",
    "MaxPoolEngine",
    "MeanPoolEngine",
    "ReLUEngine",
    "SkipFifo",
    "UnrolledDot",
    "beat_signature",
    "line_buffer_in_memory",
    "window_order",
]

#: Where a convolution keeps the rows of its line buffers: ``"bram"`` in a memory (one
#: synchronous write and read port, so Yosys maps it to block RAM), ``"regs"`` in a shift
#: chain of registers, ``"auto"`` by depth (:func:`line_buffer_in_memory`).
LINE_BUFFERS = ("auto", "bram", "regs")

#: ``"auto"`` puts a line buffer in memory from this many words per row delay. At the
#: digits-cnn widths (delays of 3 and 7 words) the registers are the better choice: a
#: 16-bit-wide SB_RAM40_4K would hold at most 7 of its 256 words, so the buffers of the
#: 2-bit top need more block RAMs than an iCE40 UP5K has, and ECP5 maps memories of up
#: to 32 words to distributed RAM (LUTs) rather than DP16KD.
AUTO_MEMORY_DEPTH = 5

#: What :func:`rtl_gen.dataflow.build_dataflow` and ``inq-hw generate`` use unless told.
DEFAULT_LINE_BUFFER = "auto"


def beat_signature(fmt: ActFormat, elems: int) -> stream.Signature:
    """A stream of beats of ``elems`` integers of format ``fmt``."""
    return stream.Signature(data.ArrayLayout(act_shape(fmt), elems))


def output_slot(m: Module, o: stream.Interface, offer_valid: Value, offer: Value) -> Value:
    """The output register and its one-beat skid; returns ``free``, whether a beat offered
    this cycle is taken: the skid is empty (a register, never ``o.ready``).

    ``offer`` is taken when ``offer_valid`` and ``free``: into the output register when it
    is empty or being emptied, else into the skid, which moves to the output register in
    the cycle ``o.ready`` empties it. So no engine's ready depends on its consumer's
    (modelled by :mod:`rtl_gen.timing`).
    """
    skid_valid = Signal()
    skid = Signal(len(Value.cast(offer)))
    free = Signal()
    m.d.comb += free.eq(~skid_valid)
    with m.If(skid_valid), m.If(o.ready):
        m.d.sync += [o.payload.eq(skid), skid_valid.eq(0)]
    with m.Elif(~o.valid | o.ready):
        m.d.sync += o.valid.eq(offer_valid)
        with m.If(offer_valid):
            m.d.sync += o.payload.eq(offer)
    with m.Elif(offer_valid):
        m.d.sync += [skid.eq(offer), skid_valid.eq(1)]
    return free


def _flag_table(flags: Sequence[bool]) -> Array:
    return Array(Const(int(f), 1) for f in flags)


class UnrolledDot(wiring.Component):
    """A constant-weight unit as a dot stage: one result per cycle, no state but the
    unit's pipeline registers.

    Parameters
    ----------
    unit : ConstDotUnit
        With requantisation; ``unit.stages`` pipeline stages (0: combinational).

    Members
    -------
    i : In(stream of the unit's inputs, one vector per beat)
    o : Out(stream of the unit's outputs). Combinational unit: ``o.valid = i.valid``,
        ``i.ready = o.ready``. Pipelined: ``o.valid`` is the last stage's valid bit and
        ``i.ready = ~o.valid | o.ready`` (the whole pipeline advances or holds).
    """

    def __init__(self, unit: ConstDotUnit) -> None:
        if unit.requant is None:
            raise ValueError("A dot stage needs a unit with requantisation")
        self.unit = unit
        n_out, n_in = unit.weights.shape
        super().__init__(
            {
                "i": In(beat_signature(unit.in_format, n_in)),
                "o": Out(beat_signature(unit.requant.out, n_out)),
            }
        )

    @property
    def stages(self) -> int:
        """Pipeline stages (cycles from ``i`` to ``o`` without stalls)."""
        return self.unit.stages

    def elaborate(self, platform: object) -> Module:
        m = Module()
        unit = self.unit
        advance = Signal()
        if unit.stages:
            m.submodules.unit = EnableInserter({"sync": advance})(unit)
            m.d.comb += [advance.eq(~unit.o_valid | self.o.ready), self.o.valid.eq(unit.o_valid)]
        else:
            m.submodules.unit = unit
            m.d.comb += [advance.eq(self.o.ready), self.o.valid.eq(self.i.valid)]
        m.d.comb += [
            unit.i_data.eq(self.i.payload),
            unit.i_valid.eq(self.i.valid),
            self.o.payload.eq(unit.o_data),
            self.i.ready.eq(advance),
        ]
        return m


def window_order(channels: int, kernel: int, padded_width: int) -> list[tuple[int, int]]:
    """``(tap, channel)`` of each window input in ``(C, kh, kw)`` order (im2col's): tap 0
    is the newest pixel, the window's bottom-right corner."""
    return [
        ((kernel - 1 - kh) * padded_width + (kernel - 1 - kw), ci)
        for ci in range(channels)
        for kh in range(kernel)
        for kw in range(kernel)
    ]


def line_buffer_in_memory(depth: int, line_buffer: str) -> bool:
    """Whether a convolution's row delays of ``depth`` words go in a memory: the one rule
    for ``line_buffer`` (:data:`LINE_BUFFERS`). A delay of fewer than two words stays a
    register (the memory is read one word ahead, which needs two).

    Raises:
        ConfigError: ``line_buffer`` not one of :data:`LINE_BUFFERS`.
    """
    if line_buffer not in LINE_BUFFERS:
        raise ConfigError(f"Line buffer must be one of {LINE_BUFFERS}, not {line_buffer!r}")
    if depth < 2:
        return False
    return line_buffer == "bram" or (line_buffer == "auto" and depth >= AUTO_MEMORY_DEPTH)


def conv_tables(
    size: tuple[int, int], kernel: int, stride: int, padding: int
) -> tuple[list[bool], list[bool], list[bool], list[bool]]:
    """Per padded row and column: is it padding, does a window end there."""
    (h, w), k, s, p = size, kernel, stride, padding
    pad_r = [r < p or r >= h + p for r in range(h + 2 * p)]
    pad_c = [c < p or c >= w + p for c in range(w + 2 * p)]
    emit_r = [r >= k - 1 and (r - k + 1) % s == 0 for r in range(h + 2 * p)]
    emit_c = [c >= k - 1 and (c - k + 1) % s == 0 for c in range(w + 2 * p)]
    return pad_r, pad_c, emit_r, emit_c


class ConvEngine(wiring.Component):
    """A convolution: line buffers, a sliding window with zero padding, a dot stage.

    The engine walks the padded image in raster order, one position per cycle: a padding
    position shifts a zero into the window without reading the input; an image position
    takes one input beat. Once a window is complete it is offered to the dot stage, and
    the walk continues while the dot stage takes it.

    The window's ``k`` rows of ``k`` taps are registers; between two rows a *row delay*
    of ``padded width - k`` words holds the rest of the image row. The delays are a
    register chain, or (``line_buffer``, :func:`line_buffer_in_memory`) one memory of
    ``k - 1`` pixels per word, a ring written at ``ptr`` and read synchronously at the
    next address in every cycle the window advances: the word the next advance needs is
    in the read register by then, so the engine's timing is the same in both cases.

    Parameters
    ----------
    dot : wiring.Component
        The dot stage (``Cin·k·k`` inputs in (C, kh, kw) order, ``Cout`` outputs).
    in_format : ActFormat
    channels : int
        ``Cin``.
    size : (int, int)
        Input height and width.
    kernel, stride, padding : int
    line_buffer : str
        ``"regs"`` (default), ``"bram"`` or ``"auto"`` (:data:`LINE_BUFFERS`).

    Members
    -------
    i : In(stream of pixels, Cin integers each)
    o : Out(stream of output pixels, Cout integers each)

    Raises
    ------
    ConfigError
        An unknown ``line_buffer``.
    """

    def __init__(
        self,
        *,
        dot: wiring.Component,
        in_format: ActFormat,
        channels: int,
        size: tuple[int, int],
        kernel: int,
        stride: int,
        padding: int,
        line_buffer: str = "regs",
    ) -> None:
        self.dot, self.channels, self.size = dot, channels, size
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.padded = (size[0] + 2 * padding, size[1] + 2 * padding)
        #: Words of each row delay (none for a 1x1 kernel), and whether they are a memory.
        self.line_depth = self.padded[1] - kernel if kernel > 1 else 0
        self.line_memory = line_buffer_in_memory(self.line_depth, line_buffer)
        dot_in = dot.signature.members["i"].signature.members["payload"].shape
        if dot_in.length != channels * kernel * kernel:
            raise ValueError(f"Dot stage takes {dot_in.length} inputs, not Cin·k·k")
        super().__init__(
            {
                "i": In(beat_signature(in_format, channels)),
                "o": Out(dot.signature.members["o"].signature),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.dot = dot = self.dot
        (hp, wp), k = self.padded, self.kernel
        pad_r, pad_c, emit_r, emit_c = conv_tables(self.size, k, self.stride, self.padding)
        r, c = Signal(range(max(hp, 2))), Signal(range(max(wp, 2)))
        r_next, c_next = Signal.like(r), Signal.like(c)
        last_c = c == wp - 1
        m.d.comb += [
            c_next.eq(Mux(last_c, 0, c + 1)),
            r_next.eq(Mux(last_c, Mux(r == hp - 1, 0, r + 1), r)),
        ]
        # Whether the position is padding is a register, set from the tables for the
        # position that comes next (as the pooling engines' flags): ``advance``, which
        # enables every tap of the window, is then one gate from registers.
        pad = Signal(init=int(pad_r[0] or pad_c[0]))
        layout = self.i.payload.shape()
        if self.line_memory:
            window = [[Signal(layout, name=f"tap{g * wp + j}") for j in range(k)] for g in range(k)]
            taps = {g * wp + j: tap for g, row in enumerate(window) for j, tap in enumerate(row)}
        else:
            taps = {j: Signal(layout, name=f"tap{j}") for j in range((k - 1) * wp + k)}
        pending = Signal()
        serve, advance = Signal(), Signal()
        m.d.comb += [
            serve.eq(pending & dot.i.ready),
            advance.eq((pad | self.i.valid) & (~pending | serve)),
            self.i.ready.eq(~pad & (~pending | serve)),
            dot.i.valid.eq(pending),
        ]
        for n, (tap, ci) in enumerate(window_order(self.channels, k, wp)):
            m.d.comb += dot.i.payload[n].eq(taps[tap][ci])
        pixel = Mux(pad, 0, self.i.payload.as_value())
        if self.line_memory:
            _row_delays(m, window, advance, pixel, self.line_depth)
        with m.If(advance):
            if not self.line_memory:
                m.d.sync += taps[0].eq(pixel)
                m.d.sync += [taps[j].eq(taps[j - 1]) for j in range(1, len(taps))]
            m.d.sync += [
                pending.eq(_flag_table(emit_r)[r] & _flag_table(emit_c)[c]),
                c.eq(c_next),
                r.eq(r_next),
                pad.eq(_flag_table(pad_r)[r_next] | _flag_table(pad_c)[c_next]),
            ]
        with m.Elif(serve):
            m.d.sync += pending.eq(0)
        m.d.comb += dot.o.ready.eq(output_slot(m, self.o, dot.o.valid, dot.o.payload.as_value()))
        return m


def _row_delays(
    m: Module, window: list[list[Signal]], advance: Value, pixel: Value, depth: int
) -> None:
    """The window rows' shifts in a cycle of ``advance``, with the row delays between them
    in one ring memory of ``depth`` words: an advance writes each row's oldest tap at
    ``ptr`` and takes the next row's newest from the read register, which holds the word
    at ``ptr`` (read in the previous advance at what was then the next address, ``ahead``;
    the two addresses differ, as ``depth >= 2``, so the read sees no write)."""
    k = len(window)
    layout = data.ArrayLayout(window[0][0].shape(), k - 1)
    m.submodules.line_buffer = memory = Memory(shape=layout, depth=depth, init=[])
    write, read = memory.write_port(), memory.read_port(domain="sync")
    ptr, ahead = Signal(range(depth)), Signal(range(depth), init=1)
    m.d.comb += [write.addr.eq(ptr), write.en.eq(advance), read.addr.eq(ahead), read.en.eq(advance)]
    for g in range(1, k):
        m.d.comb += write.data[g - 1].eq(window[g - 1][-1])
    with m.If(advance):
        for g, row in enumerate(window):
            m.d.sync += row[0].eq(pixel if g == 0 else read.data[g - 1])
            m.d.sync += [row[j].eq(row[j - 1]) for j in range(1, k)]
        m.d.sync += [ptr.eq(ahead), ahead.eq(Mux(ahead == depth - 1, 0, ahead + 1))]


class LinearEngine(wiring.Component):
    """A Linear layer: collects the beats of one input vector, then a dot stage.

    The input arrives as ``beats`` beats of ``elems`` integers (a flattened ``(C, H, W)``
    feature map is ``H·W`` pixels of ``C``); the engine wires them to the dot stage in
    flatten order, input ``c·beats + p`` being element ``c`` of beat ``p``.

    Members
    -------
    i : In(stream of ``elems`` integers)
    o : Out(stream of one output vector per image)
    """

    def __init__(
        self, *, dot: wiring.Component, in_format: ActFormat, beats: int, elems: int
    ) -> None:
        dot_in = dot.signature.members["i"].signature.members["payload"].shape
        if dot_in.length != beats * elems:
            raise ValueError(f"Dot stage takes {dot_in.length} inputs, not {beats}·{elems}")
        self.dot, self.beats, self.elems = dot, beats, elems
        super().__init__(
            {
                "i": In(beat_signature(in_format, elems)),
                "o": Out(dot.signature.members["o"].signature),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.dot = dot = self.dot
        layout = self.i.payload.shape()
        buffer = [Signal(layout, name=f"beat{p}") for p in range(self.beats)]
        count = Signal(range(max(self.beats, 2)))
        pending, serve, advance = Signal(), Signal(), Signal()
        m.d.comb += [
            serve.eq(pending & dot.i.ready),
            advance.eq(self.i.valid & (~pending | serve)),
            self.i.ready.eq(~pending | serve),
            dot.i.valid.eq(pending),
        ]
        for c in range(self.elems):
            for p in range(self.beats):
                m.d.comb += dot.i.payload[c * self.beats + p].eq(buffer[p][c])
        with m.If(advance):
            m.d.sync += buffer[-1].eq(self.i.payload)
            m.d.sync += [buffer[p].eq(buffer[p + 1]) for p in range(self.beats - 1)]
            m.d.sync += pending.eq(count == self.beats - 1)
            m.d.sync += count.eq(Mux(count == self.beats - 1, 0, count + 1))
        with m.Elif(serve):
            m.d.sync += pending.eq(0)
        m.d.comb += dot.o.ready.eq(output_slot(m, self.o, dot.o.valid, dot.o.payload.as_value()))
        return m


def pool_tables(size: int, kernel: int) -> tuple[list[int], list[bool], list[bool], list[bool]]:
    """Per input row (or column): output index, first and last of its window, in range."""
    out = size // kernel
    index = [min(x // kernel, max(out - 1, 0)) for x in range(size)]
    first = [x % kernel == 0 for x in range(size)]
    last = [x % kernel == kernel - 1 for x in range(size)]
    used = [x < out * kernel for x in range(size)]
    return index, first, last, used


class MaxPoolEngine(wiring.Component):
    """Max pooling with ``kernel == stride`` and no padding; rows and columns beyond the
    last whole window are read and dropped (PyTorch's floor).

    One partial maximum per output column is kept while the rows of a window go by.

    Members
    -------
    i : In(stream of pixels, C integers)
    o : Out(stream of pooled pixels, C integers, the same format)
    """

    def __init__(
        self, *, fmt: ActFormat, channels: int, size: tuple[int, int], kernel: int
    ) -> None:
        if size[0] < kernel or size[1] < kernel:
            raise ValueError(f"A {kernel}x{kernel} pool needs at least {kernel} rows and columns")
        self.fmt, self.channels, self.size, self.kernel = fmt, channels, size, kernel
        super().__init__(
            {"i": In(beat_signature(fmt, channels)), "o": Out(beat_signature(fmt, channels))}
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()

        def step(first: Value, x: Value, p: Value) -> Value:
            return Mux(first | (x > p), x, p)

        _pool_windows(m, self, (self.kernel, self.kernel), self.i.payload.shape(), step, None)
        return m


def _pool_windows(
    m: Module,
    engine: "MaxPoolEngine | MeanPoolEngine",
    kernel: tuple[int, int],
    partial_layout: data.ArrayLayout,
    step: Callable[[Value, Value, Value], Value],
    offer: Callable[[Value], Value] | None,
) -> None:
    """The control both pooling engines share: windows side by side, one partial result
    per output column (of ``partial_layout``) while the rows of a window go by, rows and
    columns past the last whole window read and dropped. Per channel, the new partial is
    ``step(first, x, partial)`` (``first``: the window's first element); at the window's
    last element ``offer(new partials)`` (default: the partials) goes into the slot."""
    (h, w), (kh, kw) = engine.size, kernel
    r, c = Signal(range(max(h, 2))), Signal(range(max(w, 2)))
    _, col_first, col_last, col_used = pool_tables(w, kw)
    _, row_first, row_last, row_used = pool_tables(h, kh)
    partial = [Signal(partial_layout, name=f"partial{x}") for x in range(w // kw)]
    # The partials rotate: the current window's is always partial[0], and the window's last
    # column moves it to the back, so a row's windows come round in order and nothing
    # selects by column. The position's flags are registers, set from the tables for the
    # position that comes next: the path into the partials is one comparison.
    used, first, last, turn = (
        Signal(init=int(rows[0] and cols[0]), name=name)
        for rows, cols, name in (
            (row_used, col_used, "used"),
            (row_first, col_first, "first"),
            (row_last, col_last, "last"),
            ([True] * h, col_last, "turn"),
        )
    )
    current = partial[0]
    new = Signal(partial_layout)
    for ch in range(engine.channels):
        m.d.comb += new[ch].eq(step(first, engine.i.payload[ch], current[ch]))
    fire = engine.i.valid & used & last
    free = output_slot(m, engine.o, fire, (offer(new) if offer else new).as_value())
    m.d.comb += engine.i.ready.eq(free)
    c_next, r_next = Signal.like(c), Signal.like(r)
    m.d.comb += [
        c_next.eq(Mux(c == w - 1, 0, c + 1)),
        r_next.eq(Mux(c == w - 1, Mux(r == h - 1, 0, r + 1), r)),
    ]
    with m.If(engine.i.valid & free):
        with m.If(used & turn):
            m.d.sync += [a.eq(b) for a, b in itertools.pairwise(partial)]
            m.d.sync += partial[-1].eq(new)
        with m.Elif(used):
            m.d.sync += partial[0].eq(new)
        m.d.sync += [
            c.eq(c_next),
            r.eq(r_next),
            used.eq(_flag_table(row_used)[r_next] & _flag_table(col_used)[c_next]),
            first.eq(_flag_table(row_first)[r_next] & _flag_table(col_first)[c_next]),
            last.eq(_flag_table(row_last)[r_next] & _flag_table(col_last)[c_next]),
            turn.eq(_flag_table(col_last)[c_next]),
        ]


class ReLUEngine(wiring.Component):
    """Elementwise ``clip(x, 0, out.hi)`` (a stand-alone ReLU layer), one beat per cycle.

    Members
    -------
    i : In(stream of ``elems`` integers of ``in_format``)
    o : Out(stream of ``elems`` integers of ``out``)
    """

    def __init__(self, *, in_format: ActFormat, out: ActFormat, elems: int) -> None:
        self.out_format = out
        super().__init__(
            {"i": In(beat_signature(in_format, elems)), "o": Out(beat_signature(out, elems))}
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        hi = self.out_format.hi
        result = Signal(self.o.payload.shape())
        for n in range(len(result)):
            x = self.i.payload[n]
            m.d.comb += result[n].eq(Mux(x < 0, 0, Mux(x > hi, hi, x)))
        free = output_slot(m, self.o, self.i.valid, result.as_value())
        m.d.comb += self.i.ready.eq(free)
        return m


class MeanPoolEngine(wiring.Component):
    """Average pooling with windows side by side (``kernel == stride`` on each axis, no
    padding; rows and columns beyond the last whole window are dropped, PyTorch's floor):
    per channel, the window's sum times ``multiplier`` (one shifted add per set bit,
    :func:`~inq_hw.intmodel.arith.constant_shifts`), requantised by ``shift`` (round half
    up, saturated to ``out``), as :class:`~inq_hw.intmodel.layers.MeanPoolLayer` says.
    A global pool is the window of the whole map: one beat per image.

    One partial sum per output column is kept while the rows of a window go by.

    Members
    -------
    i : In(stream of pixels, C integers of ``fmt``)
    o : Out(stream of pooled pixels, C integers of ``out``)
    """

    def __init__(
        self,
        *,
        fmt: ActFormat,
        out: ActFormat,
        channels: int,
        size: tuple[int, int],
        kernel: tuple[int, int],
        multiplier: int,
        shift: int,
    ) -> None:
        if size[0] < kernel[0] or size[1] < kernel[1]:
            raise ValueError(f"A {kernel[0]}x{kernel[1]} pool needs a map at least that large")
        self.fmt, self.out_format, self.channels = fmt, out, channels
        self.size, self.kernel, self.multiplier, self.shift = size, kernel, multiplier, shift
        super().__init__(
            {"i": In(beat_signature(fmt, channels)), "o": Out(beat_signature(out, channels))}
        )

    @property
    def window(self) -> int:
        """Elements per window."""
        return self.kernel[0] * self.kernel[1]

    def elaborate(self, platform: object) -> Module:
        m = Module()
        lo, hi = self.fmt.lo * self.window, self.fmt.hi * self.window
        sums = data.ArrayLayout(range(lo, hi + 1) if lo < hi else range(lo, lo + 2), self.channels)

        def step(first: Value, x: Value, p: Value) -> Value:
            return Mux(first, x, p + x)

        def offer(total: Value) -> Value:
            result = Signal(self.o.payload.shape())
            for ch in range(self.channels):
                terms = [Term(total[ch], lo, hi, j) for j in constant_shifts(self.multiplier)]
                product = adder_tree(m, terms)
                width = max(abs(product.lo), abs(product.hi)).bit_length() + product.shift + 2
                q = requantize(
                    m,
                    materialise(m, product, width),
                    shift=self.shift,
                    relu=False,
                    out=self.out_format,
                )
                m.d.comb += result[ch].eq(q)
            return result

        _pool_windows(m, self, self.kernel, sums, step, offer)
        return m


class SkipFifo(wiring.Component):
    """A first-in first-out buffer of ``depth`` beats in a memory (one synchronous write
    and one synchronous read port, so it maps to block RAM) behind a one-beat output
    register: in the dataflow top, the branch of a residual add that is ahead waits here
    while the other computes. ``i.ready`` is ``count < depth``, a register: it never depends on
    ``i.valid`` or ``o.ready``. A beat written in one cycle is read into the output
    register in the next and offered from the one after (:class:`rtl_gen.timing.FifoTiming`).

    Members
    -------
    i : In(stream of ``layout`` beats)
    o : Out(stream of ``layout`` beats)
    """

    def __init__(self, layout: data.Layout, depth: int) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"A FIFO needs a positive depth, not {depth!r}")
        self.layout, self.depth = layout, depth
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        depth = self.depth
        m.submodules.memory = memory = Memory(shape=self.layout, depth=depth, init=[])
        write_port, read_port = memory.write_port(), memory.read_port()
        count = Signal(range(depth + 1))
        head, wr, rd = Signal(), Signal(range(depth)), Signal(range(depth))
        write, take, read = Signal(), Signal(), Signal()
        m.d.comb += [
            self.i.ready.eq(count < depth),
            write.eq(self.i.valid & (count < depth)),
            take.eq(~head | self.o.ready),
            read.eq(take & (count != 0)),
            write_port.addr.eq(wr),
            write_port.data.eq(self.i.payload),
            write_port.en.eq(write),
            read_port.addr.eq(rd),
            read_port.en.eq(read),
            self.o.payload.eq(read_port.data),
            self.o.valid.eq(head),
        ]
        with m.If(take):
            m.d.sync += head.eq(count != 0)
        m.d.sync += count.eq(count + write - read)
        with m.If(write):
            m.d.sync += wr.eq(Mux(wr == depth - 1, 0, wr + 1))
        with m.If(read):
            m.d.sync += rd.eq(Mux(rd == depth - 1, 0, rd + 1))
        return m


class AddEngine(wiring.Component):
    """A residual add (:class:`~inq_hw.intmodel.layers.AddLayer`) of two streams of
    ``elems`` integers, ``i`` and ``skip`` (in the dataflow top one of them comes through
    a :class:`SkipFifo`). Each operand is shifted left by its alignment (wiring), the two
    are added in one exact-width adder, and the sum is requantised (round half up,
    optional ReLU, saturated).

    The add fires in a cycle where both inputs offer a beat and the slot is free: each
    input's ``ready`` is the other's ``valid`` and the slot's ``free``, so a stall holds
    both operands in place; the inputs' valids must come from registers (an engine's slot
    or a FIFO's output), so no ready depends on itself.

    Members
    -------
    i : In(stream of ``elems`` integers of ``formats[0]``)
    skip : In(stream of ``elems`` integers of ``formats[1]``)
    o : Out(stream of ``elems`` integers of ``out``)
    """

    def __init__(
        self,
        *,
        formats: tuple[ActFormat, ActFormat],
        align: tuple[int, int],
        shift: int,
        relu: bool,
        out: ActFormat,
        elems: int,
    ) -> None:
        self.formats, self.align, self.shift, self.relu = formats, align, shift, relu
        self.out_format, self.elems = out, elems
        super().__init__(
            {
                "i": In(beat_signature(formats[0], elems)),
                "skip": In(beat_signature(formats[1], elems)),
                "o": Out(beat_signature(out, elems)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        result = Signal(self.o.payload.shape())
        operands = (self.i.payload, self.skip.payload)
        for n in range(self.elems):
            a, b = (
                Term(ops[n], fmt.lo, fmt.hi, shift)
                for ops, fmt, shift in zip(operands, self.formats, self.align, strict=True)
            )
            total = add_terms(m, a, b)
            width = max(abs(total.lo), abs(total.hi)).bit_length() + total.shift + 2
            q = requantize(
                m,
                materialise(m, total, width),
                shift=self.shift,
                relu=self.relu,
                out=self.out_format,
            )
            m.d.comb += result[n].eq(q)
        both = Signal()
        m.d.comb += both.eq(self.i.valid & self.skip.valid)
        free = output_slot(m, self.o, both, result.as_value())
        m.d.comb += [
            self.i.ready.eq(self.skip.valid & free),
            self.skip.ready.eq(self.i.valid & free),
        ]
        return m
