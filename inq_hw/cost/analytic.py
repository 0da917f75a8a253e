"""Analytic cost: operation counts of an integer model, priced by a technology table.

For every weight layer the model counts what rtl_gen's constant-weight unit of that layer
(a Linear layer, or one window of a convolution) contains, and prices three designs:

* ``shift-add``: the power-of-two unit. Its additions are counted by width exactly as
  :func:`rtl_gen.arith.adder_tree` builds them (terms sorted by shift and sign, paired
  level by level, each adder as wide as its operand range needs; the bias and rounding
  constant is one more term). Zero weights cost nothing; constant shifts are wiring
  (counted, free).
  With ``adder_graph="shared"`` the unit is one adder graph for the whole matrix
  (:mod:`rtl_gen.adder_graph`): the graph is optimised as the unit does it and every
  adder it builds is counted at its width (:func:`rtl_gen.adder_graph.adder_widths`).
* ``mult8``: the 8-bit uniform multiplier twin (the package's baseline weights): one
  constant multiplier per nonzero weight and the same kind of exact-width tree over the
  products. A constant multiplier is priced by its constant, as synthesis builds it: the
  canonical signed digit form's nonzero digits minus one adders, each as wide as the
  product (:func:`csd_digits`); the table's general ``n x m`` multiplier prices only the
  programmable MAC, whose weight arrives at run time.
* ``fp32``: a dense 32-bit float twin: a float multiply and add per weight.

Per inference a unit runs once per output position (``H·W`` of a convolution, 1 for a
Linear layer). Area is that of one unit per layer (what rtl_gen generates). Beside the
datapath: the weight storage each design would need if its weights were stored rather than
wired (b-bit codes, 8-bit or 32-bit words), the energy of reading every weight once per
inference from the smallest memory of the table that holds them all, and the cost of one
programmable MAC (a barrel shifter over the ``2**(b-2)`` exponents + accumulator adder +
register, against a multiplier + adder + register). Pooling and residual adds cost the
same in the integer designs and count as additions.

Example usage::

    model = load_package("build/inq5")
    cost = analyze(model)                       # the default 45 nm table
    cost.ratios("mult8")["energy_pj"]           # mult8 energy / shift-add energy
    cost.to_dict()                              # JSON-ready
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inq_hw.cost.errors import CostError
from inq_hw.cost.tables import HOROWITZ_45NM, TechTable
from inq_hw.intmodel import IntModel, Layer, WeightLayer
from inq_hw.intmodel.arith import rounding_constant
from inq_hw.intmodel.codes import unpack
from inq_hw.intmodel.layers import (
    AddLayer,
    AvgPoolLayer,
    ClampLayer,
    ConcatLayer,
    Conv2dLayer,
    MaxPoolLayer,
    MeanPoolLayer,
)

__all__ = [
    "DESIGNS",
    "DesignCost",
    "LayerCost",
    "NetworkCost",
    "analyze",
    "csd_digits",
    "tree_width_histogram",
]

#: The designs priced for every layer: the shift-add unit and its two twins.
DESIGNS = ("shift-add", "mult8", "fp32")
_BASELINE_BITS = 8
_FLOAT_BITS = 32


@dataclass(frozen=True)
class DesignCost:
    """One design of one layer (or the sum over a network).

    Members
    -------
    energy_pj : float
        Datapath energy per inference (every output position).
    area_um2 : float
        Datapath area of the layer's unit.
    adds, add_bits, mults : int
        Adders of the unit's trees, their summed widths, and constant multipliers.
    mult_adds : int
        Adders inside the constant multipliers (CSD digits - 1 each, :func:`csd_digits`).
    weight_bits : int
        Bits of weight storage if the weights were stored, not wired.
    pe_mac_energy_pj, pe_mac_area_um2 : float
        One programmable MAC of this arithmetic (0 for non-weight layers).
    """

    energy_pj: float
    area_um2: float
    adds: int
    add_bits: int
    mults: int
    weight_bits: int
    pe_mac_energy_pj: float = 0.0
    pe_mac_area_um2: float = 0.0
    mult_adds: int = 0

    def __add__(self, other: "DesignCost") -> "DesignCost":
        return DesignCost(
            *(a + b for a, b in zip(vars(self).values(), vars(other).values(), strict=True))
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


_ZERO = DesignCost(0.0, 0.0, 0, 0, 0, 0)


@dataclass(frozen=True)
class LayerCost:
    """Counts and the three designs' costs of one layer.

    Members
    -------
    name, kind : str
        The layer.
    positions : int
        Times its unit runs per inference.
    counts : dict
        ``inputs``, ``outputs``, ``weights``, ``nonzero`` (of the unit), ``macs`` (nonzero
        products per inference), ``const_shifts`` (shifted terms, wired), ``bits``,
        ``adds_by_width`` (``{width: adders}`` of the shift-add unit).
    designs : dict of str to DesignCost
        Keyed by :data:`DESIGNS`.
    """

    name: str
    kind: str
    positions: int
    counts: dict[str, Any]
    designs: dict[str, DesignCost]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "positions": self.positions,
            "counts": self.counts,
            "designs": {name: cost.to_dict() for name, cost in self.designs.items()},
        }


@dataclass(frozen=True)
class NetworkCost:
    """Per-layer costs, totals, weight memory and savings of a network."""

    layers: tuple[LayerCost, ...]
    table: TechTable
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)

    def total(self, design: str) -> DesignCost:
        """The sum of ``design`` over every layer."""
        result = _ZERO
        for layer in self.layers:
            result = result + layer.designs[design]
        return result

    def ratios(self, baseline: str) -> dict[str, float | None]:
        """``baseline`` over shift-add (twin ÷ shift-add, the project's one ratio direction)
        for energy, area, weight bits and weight-read energy: above 1, the shift-add design
        is cheaper by that factor."""
        if baseline not in DESIGNS[1:]:
            raise CostError(f"Baseline must be one of {DESIGNS[1:]}, not {baseline!r}")
        ours, theirs = self.total("shift-add"), self.total(baseline)
        pairs = {
            "energy_pj": (ours.energy_pj, theirs.energy_pj),
            "area_um2": (ours.area_um2, theirs.area_um2),
            "weight_bits": (ours.weight_bits, theirs.weight_bits),
            "weight_read_pj": (
                self.memory["shift-add"]["read_pj"],
                self.memory[baseline]["read_pj"],
            ),
        }
        return {key: (b / a if a else None) for key, (a, b) in pairs.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": {"name": self.table.name, "node_nm": self.table.node_nm},
            "sources": self.table.sources(),
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": {name: self.total(name).to_dict() for name in DESIGNS},
            "memory": self.memory,
            "ratios": {name: self.ratios(name) for name in DESIGNS[1:]},
        }


# --- adder trees -------------------------------------------------------------------------


def _bit_length(values: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of non-negative integer-valued floats (exact below 2**53)."""
    return np.frexp(values)[1]


def _range_width(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Width of ``rtl_gen.arith.range_shape(lo, hi)`` (Amaranth's range shape): a signed
    range needs ``bit_length(max(-lo - 1, hi)) + 1`` bits (bit_length is monotone), an
    unsigned one ``bit_length(hi)``, and ``-lo - 1 < hi`` there, so one maximum serves."""
    hi = hi + (lo == hi)
    signed = lo < 0
    return np.maximum(_bit_length(np.maximum(-1 - lo, hi)) + signed, 1)


def tree_width_histogram(
    true_lo: np.ndarray,
    true_hi: np.ndarray,
    n_valid: np.ndarray,
    shift: np.ndarray | None = None,
    positive: np.ndarray | None = None,
) -> np.ndarray:
    """``{width: adders}`` as an array indexed by width, over the trees
    :func:`rtl_gen.arith.adder_tree` builds, one tree per row of terms already in its order
    (sorted by shift and sign), the first ``n_valid`` of each row being its terms and the
    rest zero (``true_lo = true_hi = 0``). ``shift`` (default 0) is each term's shift,
    ``positive`` (default: all) whether it is a term that is not negated.

    ``true_lo``/``true_hi`` bound each term's value in absolute units (``±v · 2**shift``).
    ``_combine``'s range arithmetic is interval addition aligned to the smaller shift, the
    magnitude being kept while every operand is negated; so the adder over a block of
    terms is as wide as the block's summed interval (negated when all of it is), in units
    of its first term's shift. Blocks are summed pairwise, level by level: the blocks of
    level ``L`` are ``[j·2**L, (j+1)·2**L)``, and an adder exists where the block's right
    half holds a valid term. Every block sum is a difference of two prefix sums, so no
    level is materialised. Exact while sums stay below 2**53.
    """
    rows, m = true_lo.shape
    prefix = []
    for values in (true_lo, true_hi) + ((positive,) if positive is not None else ()):
        summed = np.zeros((rows, m + 1), values.dtype if values.dtype != bool else np.int32)
        np.cumsum(values, axis=1, out=summed[:, 1:])
        prefix.append(summed)
    histogram = np.zeros(1, np.int64)
    size = 2
    while size // 2 < m:
        blocks = -(-(m - size // 2) // size)  # those with a right half
        adder = np.arange(0, blocks * size, size) + size // 2 < n_valid[:, None]
        lo, hi = _block_sums(prefix[0], size, blocks), _block_sums(prefix[1], size, blocks)
        if shift is not None:
            first = shift[:, 0:m:size][:, :blocks]
            lo, hi = np.ldexp(lo, -first), np.ldexp(hi, -first)
        if positive is not None:
            negative = _block_sums(prefix[2], size, blocks) == 0
            lo, hi = np.where(negative, -hi, lo), np.where(negative, -lo, hi)
        histogram = _add_histograms(histogram, np.bincount(_range_width(lo, hi)[adder]))
        size *= 2
    return histogram


def _block_sums(prefix: np.ndarray, size: int, blocks: int) -> np.ndarray:
    """Sums over ``[j·size, min((j+1)·size, m))`` for ``j < blocks``, from strided views
    of the prefix sums (no gather)."""
    m = prefix.shape[1] - 1
    ends = prefix[:, size : m + 1 : size]
    if ends.shape[1] < blocks:
        ends = np.concatenate([ends, prefix[:, m:]], axis=1)
    return ends[:, :blocks] - prefix[:, 0:m:size][:, :blocks]


def _block_width(
    lo: np.ndarray, hi: np.ndarray, first: np.ndarray, negative: np.ndarray
) -> np.ndarray:
    """Width of an adder over a block summing to ``[lo, hi]`` (absolute units), in units
    of its first term's shift, negated where all its terms are."""
    lo, hi = np.ldexp(lo, -first), np.ldexp(hi, -first)
    return _range_width(np.where(negative, -hi, lo), np.where(negative, -lo, hi))


def _add_histograms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) < len(b):
        a, b = b, a
    a = a.copy()
    a[: len(b)] += b
    return a


def _constant(constants: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ConstDotUnit``'s constant term per row: its shift ``tz(c)`` and whether it exists."""
    c = constants.astype(np.int64)
    tz = np.where(c != 0, _bit_length((c & -c).astype(float)) - 1, 0)
    return tz, c != 0


# --- per-layer counters ------------------------------------------------------------------

_Counter = Callable[..., LayerCost | None]  # (model, layer, table, *, adder_graph)
_COUNTERS: dict[type, _Counter] = {}


def counts_for(*kinds: type) -> Callable[[_Counter], _Counter]:
    """Register a counter for layer classes (one handler per kind, no if/elif chain)."""

    def decorate(fn: _Counter) -> _Counter:
        for kind in kinds:
            _COUNTERS[kind] = fn
        return fn

    return decorate


def _positions(layer: Layer) -> int:
    return int(np.prod(layer.shape[1:])) if isinstance(layer, Conv2dLayer) else 1


def _adds_cost(histogram: np.ndarray, table: TechTable, positions: int) -> tuple[float, float]:
    used = np.flatnonzero(histogram)
    energy = sum(int(histogram[w]) * table.energy("int_add", int(w)) for w in used)
    area = sum(int(histogram[w]) * table.area("int_add", int(w)) for w in used)
    return energy * positions, area


def _csd_digit_table(limit: int) -> np.ndarray:
    """Nonzero digits of the canonical signed digit (non-adjacent) form of 0..limit."""
    digits = np.zeros(limit + 1, np.int64)
    for value in range(1, limit + 1):
        n, count = value, 0
        while n:
            if n & 1:
                n -= 2 - (n & 3)  # digit +1 if n = 1 mod 4, else -1 (n = 3 mod 4)
                count += 1
            n >>= 1
        digits[value] = count
    return digits


_CSD_DIGITS = _csd_digit_table(1 << _BASELINE_BITS)


def csd_digits(values: np.ndarray) -> np.ndarray:
    """Nonzero digits of the canonical signed digit form of ``|values|`` (up to 2**8).

    A constant multiplication ``x · w`` is ``csd_digits(w) - 1`` additions of shifted
    ``x``: the CSD (non-adjacent) form has the fewest nonzero digits of any signed-digit
    form (Reitwiesner, "Binary arithmetic", Advances in Computers 1, 1960), and is how
    shift-add constant multipliers are built (Hartley, "Subexpression sharing in filters
    using canonic signed digit multipliers", IEEE TCAS-II 43(10), 1996). Synthesis folds a
    constant multiplier into about this many adders, not a full n x m array.
    """
    return _CSD_DIGITS[np.abs(values).astype(np.int64)]


def _code_fields(layer: WeightLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nonzero, negative and shift ``e - n2`` of every weight, ``(outputs, inputs)``
    (:func:`inq_hw.intmodel.codes.unpack`)."""
    fields = unpack(layer.codes.reshape(layer.codes.shape[0], -1), layer.bits)
    return ~fields.zero, fields.sign, fields.shift(layer.bits).astype(np.int16)


def _shift_add(layer: WeightLayer, lo_x: int, hi_x: int) -> np.ndarray:
    """Adder-width histogram of the shift-add unit: terms sorted by key (shift, sign),
    stably, then the bias-and-rounding constant after the inputs of its key (the last such
    term). Inputs of one key are equal terms, so a row is a run per key (slot ``2k``) with
    the constant in slot ``2k + 1`` after its key's run (or last): see
    :func:`segment_tree_histogram`."""
    nonzero, negative, shift = _code_fields(layer)
    rows = len(nonzero)
    constants = (layer.bias + rounding_constant(layer.shift)).astype(float)
    tz, has_const = _constant(constants)
    key = shift.astype(np.int64) * 2 + negative
    keys = int(key[nonzero].max()) + 1 if nonzero.any() else 0
    slots = 2 * keys + 1
    slot = np.where(nonzero, 2 * key, slots)  # zero weights: a slot that is dropped
    index = (np.arange(rows)[:, None] * (slots + 1) + slot).ravel()
    length = np.bincount(index, minlength=rows * (slots + 1)).reshape(rows, slots + 1)
    length = length[:, :slots]
    const_slot = np.where(tz * 2 < keys, tz * 4 + 1, slots - 1)
    length[np.arange(rows), const_slot] += has_const
    k = np.arange(keys)
    term_shift, term_negated = k >> 1, (k & 1) == 1
    scale = np.ldexp(1.0, term_shift)
    lo = np.repeat(constants[:, None], slots, axis=1)
    hi = lo.copy()
    lo[:, 0 : 2 * keys : 2] = np.where(term_negated, -hi_x, lo_x) * scale
    hi[:, 0 : 2 * keys : 2] = np.where(term_negated, -lo_x, hi_x) * scale
    shifts = np.repeat(tz[:, None], slots, axis=1)
    shifts[:, 0 : 2 * keys : 2] = term_shift
    positive = np.ones((rows, slots), bool)
    positive[:, 0 : 2 * keys : 2] = ~term_negated
    return segment_tree_histogram(length, lo, hi, shifts, positive)


def segment_tree_histogram(
    length: np.ndarray, lo: np.ndarray, hi: np.ndarray, shift: np.ndarray, positive: np.ndarray
) -> np.ndarray:
    """:func:`tree_width_histogram` of rows given as segments of equal terms, ``(rows,
    segments)``: ``length`` terms each bounded by ``lo``/``hi`` (absolute units), of
    ``shift``, ``positive`` unless negated. The work is per segment, not per term.

    At each level, a block lying inside one segment has the segment's width (scaled by the
    block size); they are counted, not visited. Every other block holds a segment end
    strictly inside it (at most one block per segment end); those are summed from the
    prefix sums at their ends, found by a binary search over every row's segment starts
    at once (rows offset so that the starts are sorted).
    """
    rows, _ = length.shape
    ends = np.cumsum(length, axis=1)
    starts = ends - length
    n = ends[:, -1]
    m = int(n.max()) if rows else 0
    before = [np.cumsum(length * v, axis=1) - length * v for v in (lo, hi, positive)]
    offsets = np.arange(rows)[:, None] * (m + 1)
    flat_starts = (starts + offsets).ravel()

    def at(points: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The segment holding each point (the last starting at or before it) and the
        prefix sums of lo, hi and positive up to it."""
        seg = np.searchsorted(flat_starts, (points + offsets).ravel(), side="right") - 1
        seg = seg.reshape(points.shape)
        inside = points - starts.ravel()[seg]
        values = zip(before, (lo, hi, positive), strict=True)
        return seg, [b.ravel()[seg] + inside * v.ravel()[seg] for b, v in values]

    histogram = np.zeros(1, np.int64)
    size = 2
    while size // 2 < m:
        inner = np.maximum(0, ends // size + (-starts // size))  # floor(E/s) - ceil(A/s)
        if inner.any():
            widths = _block_width(lo * size, hi * size, shift, ~positive)
            histogram = _add_histograms(
                histogram, np.bincount(widths.ravel(), weights=inner.ravel()).astype(np.int64)
            )
        # blocks holding a segment end strictly inside, once each (ends are sorted)
        block = ends // size
        candidate = ends % size != 0
        marked = np.where(candidate, block, -1)
        seen = np.maximum.accumulate(marked, axis=1)
        seen = np.concatenate([np.full((rows, 1), -1), seen[:, :-1]], axis=1)
        first = block * size
        keep = candidate & (block > seen) & (first + size // 2 < n[:, None])
        if keep.any():
            seg, start_sums = at(first)
            _, end_sums = at(np.minimum(first + size, n[:, None]))
            lo_sum, hi_sum, plus = (e - b for e, b in zip(end_sums, start_sums, strict=True))
            widths = _block_width(lo_sum, hi_sum, shift.ravel()[seg], plus == 0)
            histogram = _add_histograms(histogram, np.bincount(widths[keep]))
        size *= 2
    return histogram


@dataclass(frozen=True)
class _Twin:
    tree: np.ndarray  # adder-width histogram of the tree over the products
    multiplier_adds: np.ndarray  # adder-width histogram inside the constant multipliers
    mults: int


def _twin(layer: WeightLayer, lo_x: int, hi_x: int) -> _Twin:
    """The multiplier twin: products in input order (all at shift 0, none negated), zero
    weights dropped, then the constant; each constant multiplier is ``csd_digits - 1``
    adders as wide as its product."""
    if not layer.has_baseline:
        raise CostError(
            f"The package has no uniform baseline for layer {layer.name!r}; re-export it "
            "with its FP32 source"
        )
    twin = layer.arithmetic("baseline")
    w = twin.weights.reshape(layer.codes.shape[0], -1)
    nonzero = w != 0
    n_valid = nonzero.sum(axis=1)
    packed = np.zeros((len(w), w.shape[1] + 1))
    packed[:, :-1] = w
    sparse = np.flatnonzero(n_valid < w.shape[1])  # only these rows need packing
    order = np.argsort(~nonzero[sparse], axis=1, kind="stable")
    packed[sparse, :-1] = np.take_along_axis(w[sparse], order, axis=1)
    lo, hi = packed * lo_x, packed * hi_x
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    constants = twin.bias + rounding_constant(twin.shift)
    _, has_const = _constant(constants)
    const_rows = np.flatnonzero(has_const)
    lo[const_rows, n_valid[const_rows]] = constants[const_rows]
    hi[const_rows, n_valid[const_rows]] = constants[const_rows]
    tree = tree_width_histogram(lo, hi, n_valid + has_const)
    # Per weight value (8-bit: 257 of them): its multiplier's adders and their width.
    values = np.arange(-(1 << _BASELINE_BITS - 1), (1 << _BASELINE_BITS - 1) + 1)  # any width
    offset = -values[0]
    uses = np.bincount((w + offset).ravel(), minlength=len(values))
    uses[offset] = 0  # zero weights: no multiplier
    product = (lo_x * values, hi_x * values)
    widths = _range_width(np.minimum(*product).astype(float), np.maximum(*product).astype(float))
    adders = uses * (csd_digits(values) - 1)
    multiplier_adds = np.bincount(widths, weights=adders).astype(np.int64)
    return _Twin(tree, multiplier_adds, int(uses.sum()))


def _design(
    tree: np.ndarray,
    mults: int,
    multiplier_adds: np.ndarray,
    table: TechTable,
    positions: int,
    weight_bits: int,
    pe: tuple[float, float],
) -> DesignCost:
    energy, area = _adds_cost(tree, table, positions)
    mult_energy, mult_area = _adds_cost(multiplier_adds, table, positions)
    widths = np.arange(len(tree))
    return DesignCost(
        energy_pj=energy + mult_energy,
        area_um2=area + mult_area,
        adds=int(tree.sum()),
        add_bits=int((tree * widths).sum()),
        mults=mults,
        weight_bits=weight_bits,
        pe_mac_energy_pj=pe[0],
        pe_mac_area_um2=pe[1],
        mult_adds=int(multiplier_adds.sum()),
    )


def _pe(table: TechTable, first: tuple[float, float], acc_bits: int) -> tuple[float, float]:
    """One programmable MAC: ``first`` (shifter or multiplier) + adder + register."""
    return (
        first[0] + table.energy("int_add", acc_bits) + table.energy("register", acc_bits),
        first[1] + table.area("int_add", acc_bits) + table.area("register", acc_bits),
    )


def _shared_graph(layer: WeightLayer, lo_x: int, hi_x: int, max_depth: int | None) -> np.ndarray:
    """Adder-width histogram of the unit's shared adder graph, as it builds it."""
    from rtl_gen import adder_graph  # the unit's own optimiser: one description of the graph

    weights = layer.weights_int().reshape(layer.codes.shape[0], -1)
    constants = [int(b) + rounding_constant(layer.shift) for b in layer.bias]
    graph = adder_graph.optimise(
        weights, lo=lo_x, hi=hi_x, max_depth=max_depth, constants=constants
    )
    widths = adder_graph.adder_widths(graph, constants)
    return np.bincount(np.asarray(widths, np.int64), minlength=1)


@counts_for(WeightLayer)
def _weight_layer(
    model: IntModel,
    layer: Layer,
    table: TechTable,
    *,
    adder_graph: str = "tree",
    max_depth: int | None = None,
) -> LayerCost:
    assert isinstance(layer, WeightLayer)
    x = model.layer(layer.inputs[0]).out
    rows, n_in = layer.codes.shape[0], int(np.prod(layer.codes.shape[1:]))
    weights, positions = rows * n_in, _positions(layer)
    if adder_graph == "shared":
        shift_tree = _shared_graph(layer, x.lo, x.hi, max_depth)
    else:
        shift_tree = _shift_add(layer, x.lo, x.hi)
    is_nonzero, _, shifts = _code_fields(layer)
    nonzero = int(np.count_nonzero(is_nonzero))
    exponents = 1 << (layer.bits - 2)
    shifter = (
        table.barrel_shifter(x.bits, exponents, "energy_pj"),
        table.barrel_shifter(x.bits, exponents, "area_um2"),
    )
    mult = (  # the twin's runtime-weight multiplier, as wide as its weights
        table.energy("int_mult", x.bits, layer.twin_bits),
        table.area("int_mult", x.bits, layer.twin_bits),
    )
    fp = (table.energy("fp_mult", _FLOAT_BITS), table.area("fp_mult", _FLOAT_BITS))
    fp_add = (table.energy("fp_add", _FLOAT_BITS), table.area("fp_add", _FLOAT_BITS))
    none = np.zeros(1, np.int64)
    designs = {
        "shift-add": _design(
            shift_tree,
            0,
            none,
            table,
            positions,
            weights * layer.bits,
            _pe(table, shifter, layer.acc_bits),
        ),
    }
    twin = _twin(layer, x.lo, x.hi)
    assert layer.baseline_acc_bits is not None  # _twin checked the baseline
    designs["mult8"] = _design(
        twin.tree,
        twin.mults,
        twin.multiplier_adds,
        table,
        positions,
        weights * layer.twin_bits,
        _pe(table, mult, layer.baseline_acc_bits),  # a runtime weight: a full n x m array
    )
    designs["fp32"] = DesignCost(
        energy_pj=weights * (fp[0] + fp_add[0]) * positions,
        area_um2=weights * (fp[1] + fp_add[1]),
        adds=weights,
        add_bits=weights * _FLOAT_BITS,
        mults=weights,
        weight_bits=weights * _FLOAT_BITS,
        pe_mac_energy_pj=fp[0] + fp_add[0] + table.energy("register", _FLOAT_BITS),
        pe_mac_area_um2=fp[1] + fp_add[1] + table.area("register", _FLOAT_BITS),
    )
    counts_ = {
        "inputs": n_in,
        "outputs": rows,
        "weights": weights,
        "nonzero": nonzero,
        "macs": nonzero * positions,
        "bits": layer.bits,
        "in_bits": x.bits,
        "const_shifts": int(np.count_nonzero(is_nonzero & (shifts > 0))),
        "adds_by_width": {int(w): int(shift_tree[w]) for w in np.flatnonzero(shift_tree)},
    }
    return LayerCost(layer.name, layer.kind, positions, counts_, designs)


def _ops(model: IntModel, layer: Layer) -> tuple[int, int]:
    """``(operations, width)`` of a layer without weights: additions or comparisons."""
    elements = int(np.prod(layer.shape))
    if isinstance(layer, AddLayer):
        return elements * (len(layer.inputs) - 1), layer.acc_bits
    if isinstance(layer, MeanPoolLayer):
        count = layer.kernel_h * layer.kernel_w
        # Window sum, then the constant: one shifted add per further set bit of it.
        per_out = count - 1 + bin(layer.multiplier).count("1") - 1
        return elements * per_out, layer.out.bits + count.bit_length() + layer.shift
    if isinstance(layer, ClampLayer):
        return elements * 2, layer.out.bits  # two comparisons
    if isinstance(layer, ConcatLayer):
        # A rounding add per element of every operand shifted right; the rest is wiring.
        rounded = [
            model.layer(name) for name, s in zip(layer.inputs, layer.shifts, strict=True) if s > 0
        ]
        return sum(int(np.prod(op.shape)) for op in rounded), layer.out.bits + 1
    kernel = layer.kernel  # type: ignore[attr-defined]
    return elements * (kernel * kernel - 1), layer.out.bits + (2 * kernel).bit_length()


@counts_for(AddLayer, AvgPoolLayer, MaxPoolLayer, MeanPoolLayer, ClampLayer, ConcatLayer)
def _elementwise(model: IntModel, layer: Layer, table: TechTable, **_: object) -> LayerCost:
    """Additions (or comparisons) per output element, the same in both integer designs."""
    n, width = _ops(model, layer)
    integer = DesignCost(n * table.energy("int_add", width), 0.0, n, n * width, 0, 0)
    fp = DesignCost(n * table.energy("fp_add", _FLOAT_BITS), 0.0, n, n * _FLOAT_BITS, 0, 0)
    designs = {"shift-add": integer, "mult8": integer, "fp32": fp}
    return LayerCost(layer.name, layer.kind, 1, {"elementwise_ops": n}, designs)


def _counter(layer: Layer) -> _Counter | None:
    for kind in type(layer).__mro__:
        if kind in _COUNTERS:
            return _COUNTERS[kind]
    return None


def _memory(layers: list[LayerCost], table: TechTable) -> dict[str, dict[str, Any]]:
    """Every weight read once per inference from the smallest memory holding them all."""
    memory = {}
    for design in DESIGNS:
        bits = sum(layer.designs[design].weight_bits for layer in layers)
        per_64, figure = table.memory_read(64, max(1, -(-bits // 8)))
        memory[design] = {
            "bits": bits,
            "read_pj": per_64 * bits / 64,
            "area_um2": table.area("sram_bit", 1) * bits
            if "sram_bit" in table.operations
            else None,
            "memory": figure.source,
        }
    return memory


def analyze(
    model: IntModel,
    table: TechTable = HOROWITZ_45NM,
    *,
    adder_graph: str | None = None,
    max_depth: int | None = None,
) -> NetworkCost:
    """Count and price every layer of ``model`` (module docstring); ``adder_graph``
    (``"tree"`` or ``"shared"``, default the units' default) and ``max_depth`` as for
    :class:`rtl_gen.units.ConstDotUnit`.

    Raises
    ------
    CostError
        A layer without its 8-bit baseline, a width the table cannot price, an unknown
        adder graph.
    """
    from rtl_gen.units import ADDER_GRAPHS, DEFAULT_ADDER_GRAPH

    adder_graph = adder_graph or DEFAULT_ADDER_GRAPH
    if adder_graph not in ADDER_GRAPHS:
        raise CostError(f"Adder graph must be one of {ADDER_GRAPHS}, not {adder_graph!r}")
    layers = []
    for layer in model.layers:
        counter = _counter(layer)
        options = {"adder_graph": adder_graph, "max_depth": max_depth}
        cost = counter(model, layer, table, **options) if counter else None
        if cost is not None:
            layers.append(cost)
    return NetworkCost(layers=tuple(layers), table=table, memory=_memory(layers, table))
