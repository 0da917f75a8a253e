"""A folded dot stage: a layer's outputs computed a group at a time, weights in a ROM.

With ``fold = F``, the ``N`` outputs are split into ``F`` groups of ``G = ceil(N / F)``
lanes. The stage holds its input vector and, one group per cycle, computes ``G`` full dot
products with weights read from a ROM of ``F`` words: in shift-add mode each weight is its
``b``-bit power-of-two code (``zero << (b-1) | sign << (b-2) | index``, ``inq_hw.intmodel.codes``),
decoded into a barrel shift by ``2**(b-2) - 1 - index`` (the complement of the index, as in
:class:`rtl_gen.pe.ShiftMAC`) and a sign. A negative term is the shifted input inverted,
``~v = -v - 1``, not negated (no carry chain before the tree): each ROM word's bias holds
the lane's count of negative weights, which restores the exact sum. In the multiplier twin
each weight is its ``k``-bit uniform integer (``k`` the twin's width, 8 by default) and the
lane multiplies. Each ROM word also holds the group's biases (with the requantisation's
rounding constant folded in). Requantisation is the golden executor's.

The logic is ``G`` lanes instead of ``N`` (a lane with runtime weights costs more than one
with constant weights, so the saving is less than ``F``-fold); a result takes ``F`` cycles
plus one to hand over.

A lane's results leave it through a shift chain of ``F`` registers, one per group: each
written group moves the chain on by one, so after ``F`` groups group ``g`` sits in slot
``g``. Each lane output drives one register (the chain's head), not ``F`` registers spread
over the chip: on ECP5 that fan-out was the critical path of a pipelined 4-bit
digits-cnn (a 3.9 ns route after the requantisation).

The ROM is read synchronously (its address runs one group ahead, so the register costs no
cycle and maps to block RAM). With ``stages = S`` the lanes carry ``S`` pipeline
registers: from ``S = 2`` on, one after the requantisation
(:func:`rtl_gen.arith.tail_stages`), the others in the adder tree
(:func:`rtl_gen.arith.adder_tree`, spread over the decode and the tree's levels, so that
the first may sit behind the decode); group ``g``'s results are written ``S`` cycles after
it is issued, so a result takes ``F + S`` cycles. The registers run freely: the stage
takes no new vector until every group is written.

Timing (mirrored by :class:`rtl_gen.timing.FoldedDotTiming` with ``cycles = F + S``):
``i.ready`` is high when idle and the previous result is gone or going; a transfer on
``i`` at cycle ``t`` issues the groups at ``t+1 .. t+F``; ``o.valid`` rises at
``t+F+S+1`` and holds until ``o.ready``.
"""

import itertools
from typing import Any

import numpy as np
from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from inq_hw.errors import ConfigError
from inq_hw.intmodel.arith import ActFormat, rounding_constant, signed_bits, uniform_max
from inq_hw.intmodel.codes import code_of_weight, max_shift
from rtl_gen.arith import (
    DECODE_LEVELS,
    Term,
    adder_tree,
    code_term,
    materialise,
    range_shape,
    requantize,
    tail_stages,
)
from rtl_gen.engines import beat_signature
from rtl_gen.units import MODES, Requant, is_power_of_two_matrix

__all__ = ["FoldedDot", "weight_code"]

#: Weight width of a multiplier lane when none is given: the 8-bit uniform twin.
_DEFAULT_TWIN_BITS = 8


def weight_code(weight: int, code_bits: int) -> int:
    """The ``code_bits``-bit code of an integer weight ``0`` or ``±2**k``
    (:func:`inq_hw.intmodel.codes.code_of_weight`).

    Raises:
        ValueError: The weight is not 0 or ±2**k, or its shift does not fit the code.
    """
    return code_of_weight(weight, code_bits)


class FoldedDot(wiring.Component):
    """``N`` requantised dot products of ``K`` inputs over ``fold`` cycles.

    Parameters
    ----------
    weights, bias : numpy.ndarray
        ``(N, K)`` integer weights and ``N`` biases (accumulator units).
    in_format : ActFormat
    mode : str
        ``"shift-add"`` (weights 0 or ±2**k, stored as codes) or ``"multiply"`` (uniform
        integers of ``weight_bits``).
    requant : Requant
    fold : int
        Groups, 2 to ``N``.
    code_bits : int, optional
        Width ``b`` of the shift-add codes; default the narrowest that holds every shift.
    weight_bits : int, optional
        Multiply mode: width ``k`` (2 to 8) of the uniform twin's weights, which the ROM
        stores as ``k``-bit two's complement fields and each lane multiplies as
        ``signed(k)``; default 8. Every weight must lie within
        ``±``:func:`~inq_hw.intmodel.arith.uniform_max` ``(k)``.
    stages : int
        Pipeline registers in each lane (0: the lane is combinational from ROM to result).

    Members
    -------
    i : In(stream of ``K`` integers)
    o : Out(stream of ``N`` integers of ``requant.out``)

    Attributes
    ----------
    constants : numpy.ndarray
        Per output, the constant its lane adds, stored in the ROM's bias field: bias,
        rounding constant and (shift-add) one per negative weight.

    Raises
    ------
    ValueError
        Bad shapes, fold or stages, weights that do not fit the mode or the code width.
    """

    def __init__(
        self,
        *,
        weights: np.ndarray,
        bias: np.ndarray,
        in_format: ActFormat,
        mode: str,
        requant: Requant,
        fold: int,
        code_bits: int | None = None,
        weight_bits: int | None = None,
        stages: int = 0,
    ) -> None:
        weights = np.asarray(weights, dtype=np.int64)
        self.n_out, self.n_in = weights.shape
        if mode not in MODES:
            raise ValueError(f"Mode must be one of {MODES}, not {mode!r}")
        if isinstance(fold, bool) or not isinstance(fold, int) or not 2 <= fold <= self.n_out:
            raise ValueError(f"Fold must be an integer from 2 to {self.n_out}, not {fold!r}")
        if isinstance(stages, bool) or not isinstance(stages, int) or stages < 0:
            raise ValueError(f"Pipeline stages must be a non-negative integer, not {stages!r}")
        if mode == "shift-add" and not is_power_of_two_matrix(weights):
            raise ValueError("Shift-add mode needs weights that are all 0 or ±2**k")
        if weight_bits is not None and mode != "multiply":
            raise ValueError(f"A weight width is for multiply mode, not {mode!r}")
        self.weight_bits = _DEFAULT_TWIN_BITS if weight_bits is None else weight_bits
        if mode == "multiply":
            self._check_twin_weights(weights)
        self.weights, self.bias = weights, np.asarray(bias, dtype=np.int64)
        self.in_format, self.mode, self.requant, self.fold = in_format, mode, requant, fold
        self.stages = stages
        self.lanes = -(-self.n_out // fold)
        self.code_bits = code_bits or self._narrowest_code()
        self.rounding = rounding_constant(requant.shift)
        self.constants = self._lane_constants()
        self.bias_bits = signed_bits(int(np.abs(self.constants).max(initial=0)))
        self.words = self._rom_words()
        super().__init__(
            {
                "i": In(beat_signature(in_format, self.n_in)),
                "o": Out(beat_signature(requant.out, self.n_out)),
            }
        )

    @property
    def cycles(self) -> int:
        """Cycles of work per result: one group per cycle, plus the lanes' pipeline."""
        return self.fold + self.stages

    @property
    def rom_width(self) -> int:
        """Bits of a ROM word: per lane ``K`` weight fields of ``code_bits`` and a bias."""
        return self.lanes * (self.n_in * self.code_bits + self.bias_bits)

    @property
    def weight_range(self) -> tuple[int, int]:
        """Multiply mode: the range of a lane's ``signed(weight_bits)`` weight operand."""
        return -(1 << (self.weight_bits - 1)), (1 << (self.weight_bits - 1)) - 1

    def _check_twin_weights(self, weights: np.ndarray) -> None:
        try:
            top = uniform_max(self.weight_bits)
        except ConfigError:
            raise ValueError(
                f"Multiplier weight width must be an integer from 2 to 8, not {self.weight_bits!r}"
            ) from None
        lo, hi = int(weights.min(initial=0)), int(weights.max(initial=0))
        if not -top <= lo <= hi <= top:
            raise ValueError(
                f"Multiplier weights must be {self.weight_bits}-bit uniform integers "
                f"[{-top}, {top}], not [{lo}, {hi}]"
            )

    def _lane_constants(self) -> np.ndarray:
        """Per output, the constant its lane adds: bias, rounding constant and (shift-add)
        one per negative weight, which the lane's inverted terms ``-v - 1`` lack."""
        biases = self.bias + self.rounding
        if self.mode == "shift-add":
            biases = biases + (self.weights < 0).sum(axis=1)
        return biases

    def _narrowest_code(self) -> int:
        if self.mode == "multiply":
            return self.weight_bits
        top = int(np.abs(self.weights).max(initial=1)).bit_length() - 1
        return 2 + max(0, top).bit_length()

    def _weight_field(self, weight: int) -> int:
        if self.mode == "multiply":
            return weight & ((1 << self.weight_bits) - 1)
        return weight_code(weight, self.code_bits)

    def _rom_words(self) -> list[int]:
        """Word ``g``: lane ``l``'s weight for input ``i`` at field ``l·K + i``, then the
        lanes' :attr:`constants`; lanes past ``N`` have zero weights."""
        words = []
        cb, bb, k = self.code_bits, self.bias_bits, self.n_in
        for g in range(self.fold):
            word = 0
            for lane in range(self.lanes):
                o = g * self.lanes + lane
                row = self.weights[o] if o < self.n_out else np.zeros(k, dtype=np.int64)
                bias = int(self.constants[o]) if o < self.n_out else 0
                for i, w in enumerate(row):
                    word |= self._weight_field(int(w)) << ((lane * k + i) * cb)
                word |= (bias & ((1 << bb) - 1)) << (self.lanes * k * cb + lane * bb)
            words.append(word)
        return words

    def _term(self, m: Module, x: Value, field: Value) -> Term:
        """One product of a lane, with its exact range."""
        lo_x, hi_x = self.in_format.lo, self.in_format.hi
        if self.mode == "multiply":
            weight = Signal(signed(self.weight_bits))
            m.d.comb += weight.eq(field)
            corners = [x_end * w_end for x_end in (lo_x, hi_x) for w_end in self.weight_range]
            lo, hi = min(corners), max(corners)
            product = Signal(range_shape(lo, hi))
            m.d.comb += product.eq(x * weight)
            return Term(product, lo, hi)
        code = code_term(x, field, self.code_bits)
        bound = max(-lo_x, hi_x) << max_shift(self.code_bits)
        shifted = Signal(range_shape(-bound - 1, bound))
        term = Signal(shifted.shape())
        m.d.comb += [
            shifted.eq(code.shifted),
            term.eq(Mux(code.zero, 0, Mux(code.negative, ~shifted, shifted))),
        ]
        return Term(term, -bound - 1, bound)

    def _lane(self, m: Module, word: Value, x: Any, lane: int) -> Value:
        cb, k = self.code_bits, self.n_in
        terms = [self._term(m, x[i], word[(lane * k + i) * cb :][:cb]) for i in range(k)]
        bias_field = word[self.lanes * k * cb + lane * self.bias_bits :][: self.bias_bits]
        bias = Signal(signed(self.bias_bits))
        m.d.comb += bias.eq(bias_field)
        limit = (1 << (self.bias_bits - 1)) - 1
        terms.append(Term(bias, -limit - 1, limit))
        tail = tail_stages(self.stages)
        root = adder_tree(m, terms, stages=self.stages - tail, lead=DECODE_LEVELS)
        acc = materialise(m, root, signed_bits(max(map(abs, root.actual_range))))
        q = self.requant
        y = requantize(m, acc, shift=q.shift, relu=q.relu, out=q.out, rounding_in_acc=True)
        for _ in range(tail):  # the lane's result register, beside the lane
            registered = Signal.like(y, name=f"lane_{lane}_out")
            m.d.sync += registered.eq(y)
            y = registered
        return y

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.rom = rom = Memory(
            shape=unsigned(self.rom_width), depth=self.fold, init=self.words
        )
        read = rom.read_port()
        hold = Signal(self.i.payload.shape())
        phase = Signal(range(self.cycles + 1))  # 0 idle, p <= F: group p-1 issued
        done = Signal()
        # Registers for what the phase decodes to, set with the phase's next value, so no
        # compare of the phase lies on the ready, the ROM address or the result chains'
        # enables (each drives a wide register's clock enables or the ROM's logic).
        idle = Signal(init=1)  # phase == 0
        addr = Signal(range(self.fold))  # the next phase's group: phase if below F, else 0
        writing = Signal()  # phase > S: a group's results leave the lanes this cycle
        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(idle & (~done | self.o.ready)),
            accept.eq(self.i.valid & self.i.ready),
            self.o.valid.eq(done),
            read.addr.eq(addr),
        ]
        with m.If(done & self.o.ready):
            m.d.sync += done.eq(0)
        with m.If(accept):
            m.d.sync += [hold.eq(self.i.payload), phase.eq(1), idle.eq(0), addr.eq(1)]
            m.d.sync += writing.eq(self.stages == 0)
        with m.Elif(~idle):
            last = phase == self.cycles
            later = (phase >= self.stages) if self.stages else 1  # next phase > S
            m.d.sync += [
                phase.eq(Mux(last, 0, phase + 1)),
                idle.eq(last),
                addr.eq(Mux(addr == self.fold - 1, 0, Mux(addr.any(), addr + 1, 0))),
                writing.eq(~last & later),
            ]
            with m.If(last):
                m.d.sync += done.eq(1)
        lane_out = [self._lane(m, read.data, hold, lane) for lane in range(self.lanes)]
        for lane, y in enumerate(lane_out):
            chain = [Signal.like(y, name=f"result_{lane}_{g}") for g in range(self.fold)]
            with m.If(writing):
                m.d.sync += [chain[-1].eq(y), *(a.eq(b) for a, b in itertools.pairwise(chain))]
            for g, slot in enumerate(chain):
                o = g * self.lanes + lane
                if o < self.n_out:
                    m.d.comb += self.o.payload[o].eq(slot)
        return m
