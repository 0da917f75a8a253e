"""Cycle-exact control models of the dataflow engines, and the top's latency and interval.

Each model keeps only an engine's control state (counters, ``pending``, the output slot,
a folded dot stage's phase) and steps it one clock cycle at a time by exactly the rules of
:mod:`rtl_gen.engines` and :mod:`rtl_gen.folded`; data never enters. Chained, they give
the cycle of every transfer of the whole top for any pattern of input gaps and output
stalls, in microseconds per image, and so the latency and the initiation interval the
manifest states (the RTL testbenches measure both and compare).

A cycle is evaluated as the hardware does: ``ready`` signals are combinational from the
output back to the input (each engine's ``i.ready`` depends on its state and its
``o.ready``), ``valid`` signals are registers; then every engine steps.

A residual add (:class:`AddTiming`) reads a second stream, from an earlier engine's
output (or the top's input) through a FIFO (:class:`FifoTiming`): that output is
*forked*, one beat going to every reader in the same cycle, so it is ready when every
reader is, and each reader sees it valid only when all the others are ready.
"""

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rtl_gen.engines import conv_tables, pool_tables

__all__ = [
    "UNBOUNDED",
    "AddTiming",
    "ConvTiming",
    "FifoTiming",
    "FoldedDotTiming",
    "LinearTiming",
    "PassTiming",
    "PipeTiming",
    "PipelineTiming",
    "PoolTiming",
    "UnrolledDotTiming",
    "measure",
]


class UnrolledDotTiming:
    """:class:`rtl_gen.engines.UnrolledDot` with ``stages`` pipeline stages: none, ``o.valid
    = i.valid`` and ``i.ready = o.ready``; else a valid bit per stage, all shifting in a
    cycle where the last is clear or taken."""

    def __init__(self, stages: int = 0) -> None:
        self.stages, self.valid = stages, [False] * stages

    def i_ready(self, o_ready: bool) -> bool:
        if not self.stages:
            return o_ready
        return not self.valid[-1] or o_ready

    def o_valid(self, i_valid: bool) -> bool:
        return self.valid[-1] if self.stages else i_valid

    def step(self, i_valid: bool, o_ready: bool) -> None:
        if self.stages and self.i_ready(o_ready):
            self.valid = [i_valid, *self.valid[:-1]]


class FoldedDotTiming:
    """A folded dot stage (:class:`rtl_gen.folded.FoldedDot`): takes a vector when idle,
    works ``cycles`` cycles (``fold + stages``), then holds its result until it is taken."""

    def __init__(self, cycles: int) -> None:
        self.cycles, self.phase, self.done = cycles, 0, False  # phase > 0: busy

    def i_ready(self, o_ready: bool) -> bool:
        return self.phase == 0 and (not self.done or o_ready)

    def o_valid(self, i_valid: bool) -> bool:
        return self.done

    def step(self, i_valid: bool, o_ready: bool) -> None:
        start = i_valid and self.i_ready(o_ready)
        if self.done and o_ready:
            self.done = False
        if start:
            self.phase = 1
        elif self.phase:
            if self.phase == self.cycles:
                self.phase, self.done = 0, True
            else:
                self.phase += 1


DotTiming = UnrolledDotTiming | FoldedDotTiming


class _Slotted:
    """The output slot every engine has (:func:`rtl_gen.engines.output_slot`): the output
    register (``slot``) and its one-beat skid (``skid``); a beat is taken while the skid is
    empty."""

    slot = False
    skid = False

    def out_valid(self) -> bool:
        return self.slot

    def _free(self, out_ready: bool) -> bool:
        return not self.skid

    def _update_slot(self, take: bool, out_ready: bool) -> None:
        if self.skid:
            self.skid = not out_ready  # the skid's beat moves to the output register
        elif not self.slot or out_ready:
            self.slot = take
        else:
            self.skid = take


class _WindowTiming(_Slotted):
    """Common part of the engines that offer a vector to a dot stage."""

    def __init__(self, dot: DotTiming) -> None:
        self.dot, self.pending = dot, False

    def _serve(self, out_ready: bool) -> bool:
        return self.pending and self.dot.i_ready(self._free(out_ready))

    def _step_dot(self, out_ready: bool) -> bool:
        """Step the dot stage and the slot; return ``serve``."""
        free = self._free(out_ready)
        serve = self._serve(out_ready)
        take = self.dot.o_valid(self.pending) and free
        self.dot.step(self.pending, free)
        self._update_slot(take, out_ready)
        return serve


class ConvTiming(_WindowTiming):
    """:class:`rtl_gen.engines.ConvEngine`."""

    def __init__(
        self, dot: DotTiming, size: tuple[int, int], kernel: int, stride: int, padding: int
    ) -> None:
        super().__init__(dot)
        self.pad_r, self.pad_c, self.emit_r, self.emit_c = conv_tables(
            size, kernel, stride, padding
        )
        self.r = self.c = 0

    def _pad(self) -> bool:
        return self.pad_r[self.r] or self.pad_c[self.c]

    def in_ready(self, out_ready: bool) -> bool:
        return not self._pad() and (not self.pending or self._serve(out_ready))

    def step(self, in_valid: bool, out_ready: bool) -> None:
        can = not self.pending or self._serve(out_ready)
        advance = (self._pad() or in_valid) and can
        serve = self._step_dot(out_ready)
        if advance:
            self.pending = self.emit_r[self.r] and self.emit_c[self.c]
            self.c += 1
            if self.c == len(self.pad_c):
                self.c, self.r = 0, (self.r + 1) % len(self.pad_r)
        elif serve:
            self.pending = False


class LinearTiming(_WindowTiming):
    """:class:`rtl_gen.engines.LinearEngine`."""

    def __init__(self, dot: DotTiming, beats: int) -> None:
        super().__init__(dot)
        self.beats, self.count = beats, 0

    def in_ready(self, out_ready: bool) -> bool:
        return not self.pending or self._serve(out_ready)

    def step(self, in_valid: bool, out_ready: bool) -> None:
        advance = in_valid and self.in_ready(out_ready)
        serve = self._step_dot(out_ready)
        if advance:
            self.pending = self.count == self.beats - 1
            self.count = (self.count + 1) % self.beats
        elif serve:
            self.pending = False


class PoolTiming(_Slotted):
    """:class:`rtl_gen.engines.MaxPoolEngine` and :class:`rtl_gen.engines.MeanPoolEngine`
    (``kernel``: one side, or ``(rows, columns)``)."""

    def __init__(self, size: tuple[int, int], kernel: int | tuple[int, int]) -> None:
        self.h, self.w = size
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        _, _, self.row_last, self.row_used = pool_tables(self.h, kh)
        _, _, self.col_last, self.col_used = pool_tables(self.w, kw)
        self.r = self.c = 0

    def in_ready(self, out_ready: bool) -> bool:
        return self._free(out_ready)

    def step(self, in_valid: bool, out_ready: bool) -> None:
        free = self._free(out_ready)
        r, c = self.r, self.c
        fire = in_valid and self.row_used[r] and self.col_used[c]
        fire = fire and self.row_last[r] and self.col_last[c]
        self._update_slot(fire and free, out_ready)
        if in_valid and free:
            self.c = (c + 1) % self.w
            if self.c == 0:
                self.r = (r + 1) % self.h


class PassTiming(_Slotted):
    """An elementwise engine (:class:`rtl_gen.engines.ReLUEngine`)."""

    def in_ready(self, out_ready: bool) -> bool:
        return self._free(out_ready)

    def step(self, in_valid: bool, out_ready: bool) -> None:
        free = self._free(out_ready)
        self._update_slot(in_valid and free, out_ready)


class PipeTiming:
    """Register stages after the last engine (the top's pipelined argmax), all shifting in
    a cycle where the last is clear or taken, as :class:`UnrolledDotTiming`'s."""

    def __init__(self, stages: int) -> None:
        if stages < 1:
            raise ValueError("A pipe has at least one stage")
        self.valid = [False] * stages

    def in_ready(self, out_ready: bool) -> bool:
        return not self.valid[-1] or out_ready

    def out_valid(self) -> bool:
        return self.valid[-1]

    def step(self, in_valid: bool, out_ready: bool) -> None:
        if self.in_ready(out_ready):
            self.valid = [in_valid, *self.valid[:-1]]


#: The depth of a FIFO that never fills (:func:`rtl_gen.dataflow` sizes its FIFOs with
#: it: the deepest any write needs, without stalls).
UNBOUNDED = 1 << 40


class FifoTiming:
    """:class:`rtl_gen.engines.SkipFifo`: ``depth`` words of memory behind a one-beat
    output register. Ready while the memory has room (``count < depth``); a word written
    in one cycle is read into the output register in the next (when it is empty or being
    emptied) and offered the cycle after. ``need`` is the least ``depth`` that would have
    taken every write so far."""

    def __init__(self, depth: int) -> None:
        self.depth, self.count, self.head, self.need = depth, 0, False, 1

    def in_ready(self, out_ready: bool) -> bool:
        return self.count < self.depth

    def out_valid(self) -> bool:
        return self.head

    def step(self, in_valid: bool, out_ready: bool) -> None:
        write = in_valid and self.count < self.depth
        take = not self.head or out_ready
        read = take and self.count > 0
        if write:
            self.need = max(self.need, self.count + 1)
        if take:
            self.head = self.count > 0
        self.count += int(write) - int(read)


class AddTiming(_Slotted):
    """:class:`rtl_gen.engines.AddEngine`: a beat of ``i`` and one of ``skip`` go into the
    slot together, in a cycle where both are valid and the slot is free; each input is
    ready when the other is valid and the slot is free."""

    def in_ready(self, out_ready: bool, skip_valid: bool = False) -> bool:
        return skip_valid and self._free(out_ready)

    def skip_ready(self, out_ready: bool, in_valid: bool) -> bool:
        return in_valid and self._free(out_ready)

    def step(self, in_valid: bool, out_ready: bool, skip_valid: bool = False) -> None:
        self._update_slot(in_valid and skip_valid and self._free(out_ready), out_ready)


EngineTiming = (
    ConvTiming | LinearTiming | PoolTiming | PassTiming | AddTiming | FifoTiming | PipeTiming
)


@dataclass
class PipelineTiming:
    """Engine models in topological order: engine ``n`` reads the output of engine
    ``sources[n]`` (default ``n - 1``, a chain; ``-1``: the top's input), a residual add
    also that of ``skips[n]``; the last engine's output is the top's.
    ``cycle(in_valid, out_ready)`` steps all of them one cycle and returns ``(input
    transfer, output transfer)``. An add's two inputs must each have no other reader (a
    FIFO or an engine between), so its readiness, which depends on their valids, sees
    registers only."""

    engines: Sequence[EngineTiming]
    skips: Mapping[int, int] = field(default_factory=dict)
    sources: Sequence[int] | None = None

    def __post_init__(self) -> None:
        count = len(self.engines)
        self.inputs = list(self.sources) if self.sources is not None else list(range(-1, count - 1))
        # Who reads each output (-1: the top's input): (engine, "i" or "skip").
        self.readers: dict[int, list[tuple[int, str]]] = {n: [] for n in range(-1, count)}
        for n, source in enumerate(self.inputs):
            self.readers[source].append((n, "i"))
        for n, source in sorted(self.skips.items()):
            self.readers[source].append((n, "skip"))
        for n in range(count):
            if not all(-1 <= s < n for s in (self.inputs[n], self.skips.get(n, -1))):
                raise ValueError(f"Engine {n} reads a later engine")
            if n in self.skips and not isinstance(self.engines[n], AddTiming):
                raise ValueError(f"Engine {n} cannot read a second stream")
            if n in self.skips and any(
                len(self.readers[s]) != 1 for s in (self.inputs[n], self.skips[n])
            ):
                raise ValueError(f"The inputs of add {n} must have no other reader")

    def cycle(self, in_valid: bool, out_ready: bool) -> tuple[bool, bool]:
        engines, last = self.engines, len(self.engines) - 1
        valids = {-1: in_valid} | {n: engine.out_valid() for n, engine in enumerate(engines)}
        port_ready: dict[tuple[int, str], bool] = {}
        outs = [False] * len(engines)  # outs[n]: engine n's o.ready
        for n in range(last, -1, -1):
            engine = engines[n]
            outs[n] = out_ready if n == last else all(port_ready[r] for r in self.readers[n])
            if isinstance(engine, AddTiming):
                main, skip = valids[self.inputs[n]], valids[self.skips[n]]
                port_ready[n, "i"] = engine.in_ready(outs[n], skip)
                port_ready[n, "skip"] = engine.skip_ready(outs[n], main)
            else:
                port_ready[n, "i"] = engine.in_ready(outs[n])

        def offered(source: int, port: tuple[int, str]) -> bool:
            """The fork: valid for one reader when every other reader is ready."""
            others = (port_ready[r] for r in self.readers[source] if r != port)
            return valids[source] and all(others)

        for n, engine in enumerate(engines):
            main = offered(self.inputs[n], (n, "i"))
            if isinstance(engine, AddTiming):
                engine.step(main, outs[n], offered(self.skips[n], (n, "skip")))
            else:
                engine.step(main, outs[n])
        took = in_valid and all(port_ready[r] for r in self.readers[-1])
        return took, valids[last] and out_ready


@dataclass(frozen=True)
class Timing:
    """Latency and interval of a top, without stalls.

    ``latency``: cycles from the transfer of an image's first input beat to the transfer
    of its result, pipeline empty before. ``interval``: cycles between the results of
    consecutive images fed back to back (steady state). ``beats``: input beats per image.
    """

    latency: int
    interval: int
    beats: int


def measure(pipeline: PipelineTiming, beats: int, images: int = 6) -> Timing:
    """Run ``images`` back-to-back images without stalls; raise ``RuntimeError`` if the
    intervals have not settled to one value by the last three images."""
    sent, first_in, outputs = 0, None, []
    limit = 1000 + 100 * images * beats * 64
    for cycle in range(limit):
        took, gave = pipeline.cycle(sent < beats * images, True)
        if took:
            first_in = cycle if first_in is None else first_in
            sent += 1
        if gave:
            outputs.append(cycle)
            if len(outputs) == images:
                break
    else:
        raise RuntimeError(f"The pipeline gave {len(outputs)} of {images} results")
    gaps = [b - a for a, b in itertools.pairwise(outputs)]
    if len(set(gaps[-3:])) != 1:
        raise RuntimeError(f"Intervals did not settle: {gaps}")
    assert first_in is not None
    return Timing(latency=outputs[0] - first_in, interval=gaps[-1], beats=beats)
