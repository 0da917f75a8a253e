"""Constant-weight layer units: shift-add datapaths and their multiplier twins.

A unit computes, for every output ``o`` of a Linear layer or of one convolution window
(``Cin·k·k`` inputs), ``acc_o = Σ_i x_i · w_oi + bias_o`` with the weights baked in, then
(optionally) requantises it exactly as the golden executor does.

* **Shift-add** (``mode="shift-add"``, weights ``±2**k`` or 0): each nonzero weight is a
  term ``±x_i << k``; the adder tree adds terms with equal shifts first (narrow adds), one
  wired shift per distinct exponent, and subtracts where the weight is negative. Zero
  weights cost nothing. The rounding constant of requantisation is folded into the bias.
* **Multiplier twin** (``mode="multiply"``, any integer weights, e.g. 8-bit uniform):
  each term is ``x_i * w_oi`` with ``*``; same tree, same ports, same latency. The 8-bit
  twin's weights are rounded from FP32 ones and all but never powers of two; a uniform twin
  trained at a low width may hold only 0 and ±2**k (at 2 bits it always does: its levels
  are ternary), and synthesis then folds its products to shifts, which is that design's
  true cost, so any integer weights are taken.
"""

from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Const, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from inq_hw.intmodel.arith import (
    ActFormat,
    abs_row_sums,
    rounding_constant,
    signed_bits,
    worst_case,
)
from inq_hw.intmodel.layers import WeightLayer
from rtl_gen import adder_graph as graphs
from rtl_gen.arith import (
    Term,
    act_shape,
    adder_tree,
    materialise,
    range_shape,
    requantize,
    tail_stages,
)

__all__ = [
    "ADDER_GRAPHS",
    "BASELINES",
    "DEFAULT_ADDER_GRAPH",
    "MODES",
    "ConstDotUnit",
    "Requant",
    "is_power_of_two_matrix",
]

MODES = ("shift-add", "multiply")
#: ``tree``: one balanced adder tree per output; ``shared``: one adder graph for the whole
#: matrix, sums that several outputs need computed once (:mod:`rtl_gen.adder_graph`).
ADDER_GRAPHS = ("tree", "shared")
DEFAULT_ADDER_GRAPH = "tree"
#: Multiplier twins a generator can build instead of the power-of-two design.
BASELINES = ("mult8",)


class Requant:
    """Requantisation of a unit's accumulators: ``shift``, ``relu`` and the output format."""

    def __init__(self, *, shift: int, relu: bool, out: ActFormat) -> None:
        self.shift, self.relu, self.out = shift, relu, out


def is_power_of_two_matrix(weights: np.ndarray) -> bool:
    """True when every weight is 0 or ±2**k."""
    magnitude = np.abs(weights.astype(object))
    return all(v == 0 or (v & (v - 1)) == 0 for v in magnitude.ravel())


def _validate(weights: np.ndarray, bias: np.ndarray, mode: str, stages: int) -> None:
    if weights.ndim != 2 or weights.shape[0] < 1 or weights.shape[1] < 1:
        raise ValueError(
            f"Weights must be a non-empty (outputs, inputs) matrix, not shape {weights.shape}"
        )
    if bias.shape != (weights.shape[0],):
        raise ValueError(f"Bias must have one value per output, not shape {bias.shape}")
    if mode not in MODES:
        raise ValueError(f"Mode must be one of {MODES}, not {mode!r}")
    if mode == "shift-add" and not is_power_of_two_matrix(weights):
        raise ValueError("Shift-add mode needs weights that are all 0 or ±2**k")
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 0:
        raise ValueError(f"Pipeline stages must be a non-negative integer, not {stages!r}")


def _resolve_graph(adder_graph: str | None, mode: str, max_depth: int | None) -> str:
    if adder_graph is None:
        return DEFAULT_ADDER_GRAPH if mode == "shift-add" else "tree"
    if adder_graph not in ADDER_GRAPHS:
        raise ValueError(f"Adder graph must be one of {ADDER_GRAPHS}, not {adder_graph!r}")
    if adder_graph == "shared" and mode != "shift-add":
        raise ValueError("Shared adder graphs need shift-add mode, not 'multiply'")
    if max_depth is not None and (
        isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1
    ):
        raise ValueError(f"Depth limit must be a positive integer or None, not {max_depth!r}")
    return adder_graph


class ConstDotUnit(wiring.Component):
    """Constant-weight dot products: ``outputs`` sums of ``inputs`` products, pipelined.

    Parameters
    ----------
    weights : numpy.ndarray
        Integer ``(outputs, inputs)`` matrix (``w_int`` of the integer model for shift-add).
    bias : numpy.ndarray
        Integer bias per output, at accumulator scale.
    in_format : ActFormat
        Format of every input.
    mode : str
        ``"shift-add"`` or ``"multiply"`` (the twin).
    requant : Requant, optional
        Requantise to this format; without it the outputs are the accumulators.
    stages : int
        Pipeline registers (0 = combinational); the latency in cycles. With requantisation,
        from 2 stages on the last one is after it (:attr:`tail`).
    adder_graph : str, optional
        ``"tree"`` or ``"shared"`` (:data:`ADDER_GRAPHS`; shift-add only); default
        :data:`DEFAULT_ADDER_GRAPH` for shift-add, ``"tree"`` for the twin.
    max_depth : int, optional
        Shared graphs: adder levels the sharing may not push an output beyond.
    acc_bits : int, optional
        Accumulator width (a layer's ``acc_bits``); it must hold :meth:`worst_case`.
        Default: the narrowest that does.

    Members
    -------
    i_data : In(ArrayLayout(input shape, inputs))
    i_valid : In(1)
    o_data : Out(ArrayLayout(output shape, outputs))
    o_valid : Out(1)
        ``i_valid`` delayed by the latency.

    Raises
    ------
    ValueError
        Bad shapes, a mode that does not fit the weights, negative stages, an unknown
        adder graph or a bad depth limit.
    """

    def __init__(
        self,
        *,
        weights: np.ndarray,
        bias: np.ndarray,
        in_format: ActFormat,
        mode: str = "shift-add",
        requant: Requant | None = None,
        stages: int = 0,
        adder_graph: str | None = None,
        max_depth: int | None = None,
        acc_bits: int | None = None,
    ) -> None:
        weights, bias = np.asarray(weights, dtype=object), np.asarray(bias, dtype=object)
        _validate(weights, bias, mode, stages)
        self.adder_graph = _resolve_graph(adder_graph, mode, max_depth)
        self.max_depth = max_depth
        self.weights, self.bias, self.in_format = weights, bias, in_format
        self.mode, self.requant, self.stages = mode, requant, stages
        self._graph: graphs.AdderGraph | None = None
        need = signed_bits(self.worst_case())
        if acc_bits is not None and (
            isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or acc_bits < need
        ):
            raise ValueError(
                f"Accumulator width must be an integer of at least {need} (the worst case), "
                f"not {acc_bits!r}"
            )
        self.acc_bits = need if acc_bits is None else acc_bits
        out_shape = act_shape(requant.out) if requant else signed(self.acc_bits)
        super().__init__(
            {
                "i_data": In(data.ArrayLayout(act_shape(in_format), weights.shape[1])),
                "i_valid": In(1),
                "o_data": Out(data.ArrayLayout(out_shape, weights.shape[0])),
                "o_valid": Out(1),
            }
        )

    @classmethod
    def from_layer(
        cls,
        layer: WeightLayer,
        in_format: ActFormat,
        *,
        stages: int = 0,
        requantise: bool = True,
        adder_graph: str | None = None,
        max_depth: int | None = None,
    ) -> "ConstDotUnit":
        """The shift-add unit of an integer-model layer (a Linear, or one conv window)."""
        weights = layer.weights_int().reshape(layer.codes.shape[0], -1)
        requant = Requant(shift=layer.shift, relu=layer.relu, out=layer.out) if requantise else None
        return cls(
            weights=weights,
            bias=layer.bias,
            in_format=in_format,
            requant=requant,
            stages=stages,
            adder_graph=adder_graph,
            max_depth=max_depth,
            acc_bits=layer.acc_bits,
        )

    @property
    def latency(self) -> int:
        return self.stages

    def worst_case(self) -> int:
        """``max_o |bias_o| + Σ_i |w_oi| · max|x|``: the accumulator bound
        (:func:`inq_hw.intmodel.arith.worst_case`)."""
        return worst_case(abs_row_sums(self.weights), self.bias, self.in_format.max_abs)

    def constants(self) -> list[int]:
        """Per output, the constant its sum adds: bias plus the rounding constant."""
        return [int(b) + self._rounding() for b in self.bias]

    @property
    def graph(self) -> graphs.AdderGraph:
        """The shared adder graph of the weights (computed once)."""
        if self._graph is None:
            self._graph = graphs.optimise(
                self.weights,
                lo=self.in_format.lo,
                hi=self.in_format.hi,
                max_depth=self.max_depth,
                constants=self.constants(),
            )
        return self._graph

    def _rounding(self) -> int:
        return rounding_constant(self.requant.shift) if self.requant else 0

    def _terms(self, m: Module, row: Sequence[int], bias: int) -> list[Term]:
        lo_x, hi_x = self.in_format.lo, self.in_format.hi
        terms = []
        for x, w in zip(self.i_data, (int(v) for v in row), strict=True):
            if w == 0:
                continue
            if self.mode == "shift-add":
                terms.append(Term(x, lo_x, hi_x, shift=abs(w).bit_length() - 1, negated=w < 0))
            else:
                lo, hi = min(lo_x * w, hi_x * w), max(lo_x * w, hi_x * w)
                product = Signal(range_shape(lo, hi))
                m.d.comb += product.eq(x * Const(w, signed(abs(w).bit_length() + 1)))
                terms.append(Term(product, lo, hi))
        constant = bias + self._rounding()
        if constant:
            shift = (constant & -constant).bit_length() - 1
            value = constant >> shift
            terms.append(Term(Const(value, range_shape(value, value)), value, value, shift=shift))
        return terms

    @property
    def tail(self) -> int:
        """Of the :attr:`stages`, registers after the requantisation
        (:func:`rtl_gen.arith.tail_stages`; none without one): each output leaves from a
        register beside its saturation, so the route to the consumer is a path of its
        own. The adder tree or graph has the others."""
        return tail_stages(self.stages) if self.requant is not None else 0

    def _roots(self, m: Module) -> list[Term]:
        """Each output's sum: a shared graph, or one tree per output."""
        stages = self.stages - self.tail
        if self.adder_graph == "shared":
            inputs = list(self.i_data)
            return graphs.build(m, self.graph, inputs, self.constants(), stages=stages)
        return [
            adder_tree(m, self._terms(m, list(row), int(bias)), stages=stages)
            for row, bias in zip(self.weights, self.bias, strict=True)
        ]

    def elaborate(self, platform: object) -> Module:
        m = Module()
        width = signed_bits(self.worst_case() + self._rounding())
        for o, root in enumerate(self._roots(m)):
            acc = materialise(m, root, width)
            if self.requant is None:
                m.d.comb += self.o_data[o].eq(acc)
                continue
            q = self.requant
            y = requantize(m, acc, shift=q.shift, relu=q.relu, out=q.out, rounding_in_acc=True)
            for _ in range(self.tail):
                held = Signal.like(y, name=f"tail{o}")
                m.d.sync += held.eq(y)
                y = held
            m.d.comb += self.o_data[o].eq(y)
        valid = self.i_valid
        for _ in range(self.stages):
            delayed = Signal()
            m.d.sync += delayed.eq(valid)
            valid = delayed
        m.d.comb += self.o_valid.eq(valid)
        return m
