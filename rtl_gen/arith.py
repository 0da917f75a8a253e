"""Arithmetic building blocks: exact-width adder trees of shifted terms, and requantisation.

The blocks are functions that add logic to an Amaranth ``Module`` and return values, so a
unit composes them freely; :class:`Requantizer` wraps requantisation as a component for
tests and reuse.

A :class:`Term` is an integer ``(-1 if negated else 1) · value · 2**shift`` whose ``value``
is known to lie in ``[lo, hi]``. Adding two terms aligns the one with the larger shift to
the smaller (a wired shift), adds or subtracts (a negated operand becomes a subtraction,
so no negation logic is needed where an adder can subtract), and gives the result a
signal of exactly the width its range needs: bit widths grow only as far as the worst case
requires. Trailing zero bits never enter an adder.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from amaranth.hdl import Const, Module, Shape, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from inq_hw.intmodel.arith import ActFormat, output_bounds, rounding_constant

__all__ = [
    "DECODE_LEVELS",
    "Bounded",
    "CodeTerm",
    "Requantizer",
    "Term",
    "act_shape",
    "add_terms",
    "adder_tree",
    "code_term",
    "materialise",
    "range_shape",
    "register_levels",
    "register_term",
    "requantize",
    "sum_range",
    "tail_stages",
    "tree_register_levels",
]


def act_shape(fmt: ActFormat) -> Shape:
    """The Amaranth shape of an activation format."""
    return signed(fmt.bits) if fmt.signed else unsigned(fmt.bits)


def range_shape(lo: int, hi: int) -> Shape:
    """The narrowest shape holding every integer in ``[lo, hi]``."""
    return Shape.cast(range(lo, hi + 1)) if lo < hi else Shape.cast(range(lo, lo + 2))


@dataclass(frozen=True)
class Term:
    """``(-1 if negated else 1) · value · 2**shift`` with ``lo <= value <= hi``."""

    value: Value
    lo: int
    hi: int
    shift: int = 0
    negated: bool = False

    @property
    def actual_range(self) -> tuple[int, int]:
        """Range of the integer the term stands for."""
        lo, hi = (-self.hi, -self.lo) if self.negated else (self.lo, self.hi)
        return lo << self.shift, hi << self.shift


@dataclass(frozen=True)
class CodeTerm:
    """A runtime weight code applied to an activation: ``shifted`` is ``x << (e - n2)``,
    to be taken as 0 where ``zero`` and negated where ``negative`` (1-bit values)."""

    shifted: Value
    zero: Value
    negative: Value


def code_term(x: Value, code: Value, bits: int) -> CodeTerm:
    """The hardware decode of a ``bits``-bit weight code (:mod:`inq_hw.intmodel.codes`):
    ``zero << (b-1) | sign << (b-2) | index``, shift ``e - n2 = 2**(b-2) - 1 - index``, the
    bitwise complement of the index, so the barrel shifter needs no subtractor. Used by
    :class:`rtl_gen.pe.ShiftMAC` and :class:`rtl_gen.folded.FoldedDot`, which choose how
    to apply the sign (a subtracting adder, or a negation)."""
    code = Value.cast(code)
    shifted = Value.cast(x) << ~code[: bits - 2] if bits > 2 else Value.cast(x)
    return CodeTerm(shifted=shifted, zero=code[bits - 1], negative=code[bits - 2])


class Bounded(Protocol):
    """What the range arithmetic of a sum needs: a term's ``lo``, ``hi``, ``shift``, ``negated``."""

    @property
    def lo(self) -> int: ...
    @property
    def hi(self) -> int: ...
    @property
    def shift(self) -> int: ...
    @property
    def negated(self) -> bool: ...


def sum_range(a: Bounded, b: Bounded) -> tuple[int, int, int, bool]:
    """``(lo, hi, shift, negated)`` of the term :func:`add_terms` makes of ``a + b``: the
    operand with the larger shift is aligned to the smaller; the magnitude is kept while
    both operands are negated, otherwise one is subtracted from the other."""
    if b.shift < a.shift:
        a, b = b, a
    d = b.shift - a.shift
    b_lo, b_hi = b.lo << d, b.hi << d
    if a.negated == b.negated:
        return a.lo + b_lo, a.hi + b_hi, a.shift, a.negated
    if b.negated:
        return a.lo - b_hi, a.hi - b_lo, a.shift, False
    return b_lo - a.hi, b_hi - a.lo, a.shift, False


def add_terms(m: Module, a: Term, b: Term) -> Term:
    """``a + b`` as one adder or subtractor of exact width (see module docstring)."""
    return _combine(m, a, b)


def _combine(m: Module, a: Term, b: Term) -> Term:
    lo, hi, shift, negated = sum_range(a, b)
    if b.shift < a.shift:
        a, b = b, a
    b_value = Value.cast(b.value) << (b.shift - a.shift)
    if a.negated == b.negated:
        expr = a.value + b_value
    elif b.negated:
        expr = a.value - b_value
    else:
        expr = b_value - a.value
    # keep: without it Yosys merges the tree into $macc cells, which become LUT compressor
    # trees instead of carry chains (iCE40: 1.55 LUT4 per adder bit instead of 1.10).
    out = Signal(range_shape(lo, hi), attrs={"keep": 1})
    m.d.comb += out.eq(expr)
    return Term(out, lo, hi, shift, negated)


def register_term(m: Module, term: Term, domain: str = "sync") -> Term:
    """``term`` delayed by one register in ``domain``."""
    reg = Signal(Value.cast(term.value).shape())
    m.d[domain] += reg.eq(term.value)
    return Term(reg, term.lo, term.hi, term.shift, term.negated)


#: Levels of logic before a folded lane's tree (its weight decode, or its product) that
#: the lane's pipeline registers are spread over with the tree's (:func:`adder_tree`'s
#: ``lead``; :class:`rtl_gen.folded.FoldedDot`, :mod:`rtl_gen.pipelining`).
DECODE_LEVELS = 1


def tail_stages(stages: int) -> int:
    """Of a dot stage's ``stages`` registers (a folded lane's, an unrolled unit's), those
    after its requantisation (1 from 2 stages on, else 0): the result leaves from a
    register beside it, so the route to its consumer is a path of its own. On ECP5 the
    4-bit digits-cnn's conv3 lane at ``--pipeline 4`` (the root register, two adders, the
    saturation and 2.6 ns of route to the result chain) and the 3-bit top's unrolled conv3
    at 2 stages (the root register, the saturation's compares and 8.4 ns of route across
    the die to the engine's output register: 86 MHz) were the critical paths without it.
    The tree has the other ``stages - tail``."""
    return 1 if stages >= 2 else 0


def register_levels(depth: int, stages: int) -> set[int]:
    """Tree levels (1..depth, after which a register goes) for ``stages`` pipeline stages,
    spread evenly; stages beyond the depth go after the last level (``depth``)."""
    if stages <= 0:
        return set()
    if depth == 0:
        return {0}
    if stages >= depth:
        return set(range(1, depth + 1))
    return {max(1, round((i + 1) * depth / stages)) for i in range(stages)}


def tree_register_levels(depth: int, stages: int, lead: int = 0) -> set[int]:
    """Tree levels (0..depth; 0: the leaves) after which :func:`adder_tree` puts its
    ``stages`` registers, when ``lead`` levels of logic come before the tree (a folded
    lane's weight decode): the registers are spread over the ``lead + depth`` levels, so
    with ``lead`` 1 the first may go on the leaves, behind the decode."""
    if lead == 0 or depth == 0:
        return register_levels(depth, stages)
    return {level - lead for level in register_levels(depth + lead, stages) if level >= lead}


def adder_tree(
    m: Module, terms: Sequence[Term], *, stages: int = 0, lead: int = 0, domain: str = "sync"
) -> Term:
    """Balanced tree summing ``terms``, with ``stages`` pipeline registers.

    Terms are sorted by shift (and sign) so that neighbours with equal shifts are added
    first, in narrow adders. Each level halves the count; registers go after the levels
    chosen by :func:`tree_register_levels` (``lead``: levels of logic before the tree).
    Returns the root; its latency is exactly ``stages`` cycles (registers beyond the tree
    depth are added at the output).
    """
    level = sorted(terms, key=lambda t: (t.shift, t.negated))
    if not level:
        level = [Term(Const(0, 1), 0, 0)]
    depth = max(0, (len(level) - 1).bit_length())
    chosen = tree_register_levels(depth, stages, lead)
    placed = 0
    if 0 in chosen:
        level = [register_term(m, t, domain) for t in level]
        placed += 1
    for index in range(1, depth + 1):
        pairs = [level[i : i + 2] for i in range(0, len(level), 2)]
        level = [_combine(m, *pair) if len(pair) == 2 else pair[0] for pair in pairs]
        if index in chosen:
            level = [register_term(m, t, domain) for t in level]
            placed += 1
    (root,) = level
    for _ in range(stages - placed):
        root = register_term(m, root, domain)
    return root


def materialise(m: Module, term: Term, width: int) -> Value:
    """The integer a term stands for, as a signed ``width``-bit value (a final negation
    only when every operand of the tree was negated)."""
    out = Signal(signed(width))
    value = Value.cast(term.value).as_signed() if term.lo < 0 else Value.cast(term.value)
    m.d.comb += out.eq(-(value << term.shift) if term.negated else value << term.shift)
    return out


def requantize(
    m: Module, acc: Value, *, shift: int, relu: bool, out: ActFormat, rounding_in_acc: bool = False
) -> Value:
    """The golden executor's requantisation on ``acc``: shift right with round half up
    (``shift > 0``) or left, then ReLU, then saturation to ``out``.

    With ``rounding_in_acc`` the caller has already added ``2**(shift-1)`` to the
    accumulator (e.g. folded into a constant bias), so the shift is pure wiring.
    """
    acc = Value.cast(acc)
    if shift > 0:
        rounded = acc if rounding_in_acc else acc + rounding_constant(shift)
        shifted = Value.cast(rounded).as_signed() >> shift
    else:
        shifted = acc.as_signed() << -shift
    lo, hi = output_bounds(out, relu)
    result = Signal(act_shape(out))
    value = Value.cast(shifted).as_signed()
    top = hi.bit_length()  # hi is 2**top - 1 and lo is 0 or -2**top (every format's range)
    if hi == (1 << top) - 1 and lo in (0, -(1 << top)) and len(value) > top:
        # Bit tests, not compares: in range when the bits from ``top`` up are all zero (or,
        # with lo < 0, all one), so the saturation is LUTs, not two carry chains.
        upper = value[top:]
        inside = ~upper.any() if lo == 0 else ~upper.any() | upper.all()
        with m.If(inside):
            m.d.comb += result.eq(value)
        with m.Elif(value[-1]):
            m.d.comb += result.eq(lo)
        with m.Else():
            m.d.comb += result.eq(hi)
        return result
    with m.If(shifted > hi):
        m.d.comb += result.eq(hi)
    with m.Elif(shifted < lo):
        m.d.comb += result.eq(lo)
    with m.Else():
        m.d.comb += result.eq(shifted)
    return result


class Requantizer(wiring.Component):
    """Requantisation as a combinational component.

    Parameters
    ----------
    acc_bits : int
        Width of the signed accumulator input.
    shift : int
        ``frac_in - n2 - frac_out``; right (round half up) when positive, left otherwise.
    relu : bool
        Clamp at zero.
    out : ActFormat
        Output format (saturation bounds, signedness, width).

    Members
    -------
    i_acc : In(signed(acc_bits))
    o_data : Out(shape of ``out``)
    """

    def __init__(self, *, acc_bits: int, shift: int, relu: bool, out: ActFormat) -> None:
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 2 <= acc_bits <= 64:
            raise ValueError(f"Accumulator width must be an integer from 2 to 64, not {acc_bits!r}")
        if not isinstance(out, ActFormat):
            raise TypeError(f"Output format must be an ActFormat, not {out!r}")
        self.acc_bits, self.shift, self.relu, self.out = acc_bits, shift, relu, out
        super().__init__({"i_acc": In(signed(acc_bits)), "o_data": Out(act_shape(out))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        result = requantize(m, self.i_acc, shift=self.shift, relu=self.relu, out=self.out)
        m.d.comb += self.o_data.eq(result)
        return m
