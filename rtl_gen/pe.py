"""Processing elements of the programmable PE array: a shift-MAC and its multiplier twin.

Both are one-cycle multiply-accumulate units with a registered accumulator, the same ports
and the same timing, so an array generator can instantiate either (ARCHITECTURE.md,
"Programmable PE array" and "Baselines").

:class:`ShiftMAC` takes a ``b``-bit power-of-two weight code (``inq_hw.intmodel.codes``): a
zero flag, a sign bit (1 = negative) and a ``(b-2)``-bit exponent index ``n1 - e``, packed as
``zero << (b-1) | sign << (b-2) | index``. In the integer model a weight is
``w_int = ±2**(e - n2)`` (``inq_hw.intmodel.arith``); with ``n2 = n1 + 1 - 2**(b-2)`` the
shift is ``e - n2 = 2**(b-2) - 1 - index``, which is the bitwise complement of the index,
so the barrel shifter needs no subtractor. The sign bit makes the accumulator's one adder
subtract (complement and carry-in): there is no negator.

:class:`MultMAC` takes a runtime signed integer weight and multiplies with ``*``: the
baseline a power-of-two design is compared against.

Semantics per rising edge (both components)::

    i_valid i_clear   acc <=
    1       0         acc + product
    1       1         product           (start a new sum)
    0       1         0
    0       0         acc               (hold)

The accumulator is ``acc_bits`` wide and wraps like any two's complement register; choose
``acc_bits`` from the worst case (``inq_hw.intmodel.arith.accumulator_bits``) so it cannot.
:func:`shift_mac_reference` and :func:`mult_mac_reference` are the bit-exact Python models.
"""

from collections.abc import Sequence
from typing import Any

from amaranth.hdl import Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from inq_hw.intmodel.codes import max_shift, weight_of_code
from rtl_gen.arith import code_term

__all__ = [
    "MultMAC",
    "ShiftMAC",
    "decode_weight_code",
    "mult_mac_min_acc_bits",
    "mult_mac_reference",
    "shift_mac_min_acc_bits",
    "shift_mac_reference",
]

_ACT_BITS_RANGE = (2, 16)
_CODE_BITS_RANGE = (2, 8)
_MULT_WEIGHT_BITS_RANGE = (2, 16)


def _check_int(what: str, value: object, lo: int, hi: int | None = None) -> int:
    """``value`` if it is an int in ``[lo, hi]``, else TypeError / ValueError (Amaranth style)."""
    bounds = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer {bounds}, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{what} must be an integer {bounds}, not {value!r}")
    return value


def _check_bool(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool, not {value!r}")
    return value


def shift_mac_min_acc_bits(*, act_bits: int, weight_bits: int) -> int:
    """Narrowest accumulator a :class:`ShiftMAC` accepts: ``act_bits + 2**(b-2) - 1 + 2``.

    A signed product ``±(x << (2**(b-2) - 1))`` needs ``act_bits + 2**(b-2)`` bits for
    either activation signedness; one guard bit more lets at least two products accumulate.
    """
    return act_bits + max_shift(weight_bits) + 2


def mult_mac_min_acc_bits(*, act_bits: int, weight_bits: int) -> int:
    """Narrowest accumulator a :class:`MultMAC` accepts: ``act_bits + weight_bits + 1``.

    The signed product of an ``act_bits`` activation and a signed ``weight_bits`` weight
    needs ``act_bits + weight_bits`` bits; one guard bit more, as for :class:`ShiftMAC`.
    """
    return act_bits + weight_bits + 1


def _act_shape(act_bits: int, act_signed: bool) -> Shape:
    return signed(act_bits) if act_signed else unsigned(act_bits)


def _accumulate(
    m: Module, acc: Signal, term: Value, subtract: Value | None, valid: Value, clear: Value
) -> None:
    """Drive the register ``acc`` by the table in the module docstring: ``acc ± term``.

    Subtraction is one adder: ``base + ~term + 1``, the complement selected by
    ``subtract`` (XOR gates) and ``subtract`` itself as the carry-in. Writing
    ``Mux(subtract, base - term, base + term)`` instead costs about 30% more gates after
    ``synth``: Yosys' ``opt_share`` merges the two adders but puts a negator before one.
    """
    base = Signal(acc.shape(), name="base")
    m.d.comb += base.eq(Mux(clear, 0, acc))
    if subtract is None:
        next_acc = base + term
    else:
        operand = Signal(acc.shape(), name="operand")
        m.d.comb += operand.eq(Mux(subtract, ~term, term))
        next_acc = base + operand + subtract
    with m.If(valid):
        m.d.sync += acc.eq(next_acc)
    with m.Elif(clear):
        m.d.sync += acc.eq(0)


class _MAC(wiring.Component):
    """What both PEs share: their parameters, read back as properties."""

    _act_bits: int
    _act_signed: bool
    _weight_bits: int
    _acc_bits: int

    @property
    def act_bits(self) -> int:
        return self._act_bits

    @property
    def act_signed(self) -> bool:
        return self._act_signed

    @property
    def weight_bits(self) -> int:
        return self._weight_bits

    @property
    def acc_bits(self) -> int:
        return self._acc_bits


def _mac_signature(
    act_bits: int, act_signed: bool, acc_bits: int, weight_port: str, weight_shape: Shape
) -> dict[str, Any]:
    """Ports of a PE: activation, weight (``weight_port``), valid, clear, accumulator."""
    return {
        "i_act": In(_act_shape(act_bits, act_signed)),
        weight_port: In(weight_shape),
        "i_valid": In(1),
        "i_clear": In(1),
        "o_acc": Out(signed(acc_bits)),
    }


class ShiftMAC(_MAC):
    """Shift-accumulate PE with a runtime power-of-two weight code.

    Each cycle with ``i_valid`` high, the activation is shifted left by
    ``2**(b-2) - 1 - index`` (a barrel shifter) and added to or subtracted from the
    accumulator by the code's sign bit; a code with the zero flag adds nothing. See the
    module docstring for the clear / valid table. Latency: ``o_acc`` shows the sum one
    clock edge after the last input.

    Parameters
    ----------
    act_bits : int
        Activation width, 2 to 16.
    act_signed : bool
        Two's complement activations when True, unsigned otherwise.
    weight_bits : int
        Width ``b`` of the weight code, 2 to 8.
    acc_bits : int
        Accumulator width, at least :func:`shift_mac_min_acc_bits`.

    Members
    -------
    i_act : In(signed(act_bits) or unsigned(act_bits))
        Activation integer ``x_int``.
    i_code : In(unsigned(weight_bits))
        Packed weight code ``zero << (b-1) | sign << (b-2) | index``.
    i_valid : In(1)
        Accumulate this cycle's product.
    i_clear : In(1)
        Start a new sum: load the product instead of adding it (0 when ``i_valid`` is low).
    o_acc : Out(signed(acc_bits))
        The accumulator register, in units of ``2**(n2 - frac_in)``.

    Raises
    ------
    TypeError
        If a width is not an integer or ``act_signed`` is not a bool.
    ValueError
        If a width is out of range or ``acc_bits`` is too narrow for one product.
    """

    def __init__(self, *, act_bits: int, act_signed: bool, weight_bits: int, acc_bits: int):
        self._act_bits = _check_int("Activation width", act_bits, *_ACT_BITS_RANGE)
        self._act_signed = _check_bool("Activation signedness", act_signed)
        self._weight_bits = _check_int("Weight code width", weight_bits, *_CODE_BITS_RANGE)
        least = shift_mac_min_acc_bits(act_bits=act_bits, weight_bits=weight_bits)
        self._acc_bits = _check_int("Accumulator width", acc_bits, least)
        super().__init__(
            _mac_signature(act_bits, act_signed, acc_bits, "i_code", unsigned(weight_bits))
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        # Barrel shifter by e - n2 = (2**(b-2) - 1) - index: the complement of the index.
        term = code_term(self.i_act, self.i_code, self._weight_bits)
        # Extended to the accumulator's width (sign- or zero-, by the activation's shape).
        magnitude = Signal(signed(self._acc_bits), name="magnitude")
        m.d.comb += magnitude.eq(Mux(term.zero, 0, term.shifted))
        _accumulate(m, self.o_acc, magnitude, term.negative, self.i_valid, self.i_clear)
        return m


class MultMAC(_MAC):
    """Multiply-accumulate PE with a runtime signed integer weight: the baseline twin of
    :class:`ShiftMAC`, with the same ports (``i_weight`` instead of ``i_code``) and timing.

    Parameters
    ----------
    act_bits : int
        Activation width, 2 to 16.
    act_signed : bool
        Two's complement activations when True, unsigned otherwise.
    weight_bits : int
        Width of the signed weight, 2 to 16 (default 8).
    acc_bits : int
        Accumulator width, at least :func:`mult_mac_min_acc_bits`.

    Members
    -------
    i_act : In(signed(act_bits) or unsigned(act_bits))
        Activation integer.
    i_weight : In(signed(weight_bits))
        Weight integer.
    i_valid : In(1)
        Accumulate this cycle's product.
    i_clear : In(1)
        Start a new sum: load the product instead of adding it (0 when ``i_valid`` is low).
    o_acc : Out(signed(acc_bits))
        The accumulator register.

    Raises
    ------
    TypeError
        If a width is not an integer or ``act_signed`` is not a bool.
    ValueError
        If a width is out of range or ``acc_bits`` is too narrow for one product.
    """

    def __init__(self, *, act_bits: int, act_signed: bool, weight_bits: int = 8, acc_bits: int):
        self._act_bits = _check_int("Activation width", act_bits, *_ACT_BITS_RANGE)
        self._act_signed = _check_bool("Activation signedness", act_signed)
        self._weight_bits = _check_int("Weight width", weight_bits, *_MULT_WEIGHT_BITS_RANGE)
        least = mult_mac_min_acc_bits(act_bits=act_bits, weight_bits=weight_bits)
        self._acc_bits = _check_int("Accumulator width", acc_bits, least)
        super().__init__(
            _mac_signature(act_bits, act_signed, acc_bits, "i_weight", signed(weight_bits))
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        product = Signal(signed(self._act_bits + self._weight_bits))
        m.d.comb += product.eq(self.i_act * self.i_weight)
        _accumulate(m, self.o_acc, product, None, self.i_valid, self.i_clear)
        return m


def decode_weight_code(code: int, weight_bits: int) -> int:
    """Integer weight ``w_int`` of a packed code: 0 or ``±2**(2**(b-2) - 1 - index)``
    (:func:`inq_hw.intmodel.codes.weight_of_code`).

    Raises
    ------
    ValueError
        If ``code`` does not fit ``weight_bits`` bits.
    """
    return weight_of_code(code, weight_bits)


def _wrap(value: int, bits: int) -> int:
    """``value`` as a ``bits``-bit two's complement integer."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _mac_reference(
    weights: Sequence[int],
    acts: Sequence[int],
    valids: Sequence[bool | int],
    clears: Sequence[bool | int],
    acc_bits: int,
) -> list[int]:
    acc, out = 0, []
    for w, x, valid, clear in zip(weights, acts, valids, clears, strict=True):
        base = 0 if clear else acc
        if valid:
            acc = _wrap(base + w * x, acc_bits)
        elif clear:
            acc = 0
        out.append(acc)
    return out


def shift_mac_reference(
    codes: Sequence[int],
    acts: Sequence[int],
    valids: Sequence[bool | int],
    clears: Sequence[bool | int],
    *,
    weight_bits: int,
    acc_bits: int,
) -> list[int]:
    """``o_acc`` of a :class:`ShiftMAC` after each clock edge, for one input per cycle.

    The accumulator starts at 0 and wraps at ``acc_bits`` like the register.

    Example usage::

        >>> shift_mac_reference([0b0000, 0b0111, 0b1000], [3, 3, 3], [1, 1, 1], [1, 0, 0],
        ...                     weight_bits=4, acc_bits=16)
        [24, 21, 21]
    """
    weights = [decode_weight_code(c, weight_bits) for c in codes]
    return _mac_reference(weights, acts, valids, clears, acc_bits)


def mult_mac_reference(
    weights: Sequence[int],
    acts: Sequence[int],
    valids: Sequence[bool | int],
    clears: Sequence[bool | int],
    *,
    acc_bits: int,
) -> list[int]:
    """``o_acc`` of a :class:`MultMAC` after each clock edge (see :func:`shift_mac_reference`)."""
    return _mac_reference(weights, acts, valids, clears, acc_bits)
