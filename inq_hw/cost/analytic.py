"""Analytic cost: operation counts of an integer model, priced by a technology table.

For every weight layer the model counts what rtl_gen's constant-weight unit of that layer
(a Linear layer, or one window of a convolution) contains, and prices three designs:

* ``shift-add``: the power-of-two unit. Its additions are counted by width exactly as
  :func:`rtl_gen.arith.adder_tree` builds them (terms sorted by shift and sign, paired
  level by level, each adder as wide as its operand range needs; the bias and rounding
  constant is one more term). Zero weights cost nothing; constant shifts are wiring
  (counted, free).
* ``mult8``: the 8-bit uniform multiplier twin (the package's baseline weights): one
  ``a x 8`` multiplier per nonzero weight and the same kind of exact-width tree over the
  products. The table's multiplier is a general one; a constant multiplier is cheaper in
  synthesis, which the synthesis check makes visible.
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
    cost.ratios("mult8")["energy_pj"]           # shift-add energy / mult8 energy
    cost.to_dict()                              # JSON-ready
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inq_hw.cost.errors import CostError
from inq_hw.cost.tables import HOROWITZ_45NM, TechTable
from inq_hw.intmodel import IntModel, Layer, WeightLayer
from inq_hw.intmodel.layers import AddLayer, AvgPoolLayer, Conv2dLayer, MaxPoolLayer

__all__ = ["DESIGNS", "DesignCost", "LayerCost", "NetworkCost", "analyze", "tree_widths"]

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
        Adders, their summed widths, and multipliers in the unit.
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
        """Shift-add over ``baseline`` for energy, area, weight bits and weight-read energy
        (below 1: the shift-add design is cheaper; the saving is its inverse)."""
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
        return {key: (a / b if b else None) for key, (a, b) in pairs.items()}

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
    """Width of ``rtl_gen.arith.range_shape(lo, hi)`` (Amaranth's range shape)."""
    hi = np.where(lo == hi, hi + 1, hi)
    signed = _bit_length(np.maximum(-lo - 1, 0)).clip(min=0)
    signed = np.maximum(signed, _bit_length(np.maximum(hi, 0))) + 1
    return np.where(lo < 0, signed, np.maximum(_bit_length(hi), 1))


def tree_widths(
    true_lo: np.ndarray,
    true_hi: np.ndarray,
    shift: np.ndarray,
    negated: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    """Widths of every adder of the trees :func:`rtl_gen.arith.adder_tree` builds, one tree
    per row of terms already in its order (sorted by shift and sign, valid terms first).

    ``true_lo``/``true_hi`` bound each term's value in absolute units (``±v · 2**shift``).
    ``_combine``'s range arithmetic is interval addition aligned to the smaller shift, the
    magnitude being kept while every operand is negated; so the adder over a block of
    terms is as wide as the block's summed interval (negated when all of it is), in units
    of its first term's shift. Blocks are summed pairwise, level by level: an adder exists
    where the block's right half holds a valid term. Exact while sums stay below 2**53.
    """
    rows, m = true_lo.shape
    padded = (rows, 1 << max(0, (m - 1).bit_length()))
    lo, hi = np.zeros(padded), np.zeros(padded)
    plus, count = np.zeros(padded, np.int32), np.zeros(padded, np.int32)
    first = np.zeros(padded, np.int64)
    np.multiply(true_lo, valid, out=lo[:, :m])
    np.multiply(true_hi, valid, out=hi[:, :m])
    plus[:, :m], count[:, :m], first[:, :m] = valid & ~negated, valid, shift
    widths = []
    while lo.shape[1] > 1:
        adder = count[:, 1::2] > 0  # valid terms are packed first: the left half has one too
        lo, hi = lo[:, ::2] + lo[:, 1::2], hi[:, ::2] + hi[:, 1::2]
        plus, count, first = (
            plus[:, ::2] + plus[:, 1::2],
            count[:, ::2] + count[:, 1::2],
            first[:, ::2],
        )
        block_lo = np.ldexp(lo[adder], -first[adder])
        block_hi = np.ldexp(hi[adder], -first[adder])
        all_negated = plus[adder] == 0
        block_lo, block_hi = (
            np.where(all_negated, -block_hi, block_lo),
            np.where(all_negated, -block_lo, block_hi),
        )
        widths.append(_range_width(block_lo, block_hi))
    return np.concatenate(widths).astype(np.int64) if widths else np.zeros(0, np.int64)


def _constant(constants: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ConstDotUnit``'s constant term per row: its shift ``tz(c)`` and whether it exists."""
    c = constants.astype(np.int64)
    tz = np.where(c != 0, _bit_length((c & -c).astype(float)) - 1, 0)
    return tz, c != 0


# --- per-layer counters ------------------------------------------------------------------

_Counter = Callable[[IntModel, Layer, TechTable], LayerCost | None]
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


def _rounding(shift: int) -> int:
    return 1 << (shift - 1) if shift > 0 else 0


def _adds_cost(widths: np.ndarray, table: TechTable, positions: int) -> tuple[float, float]:
    counts = np.bincount(widths)
    used = np.flatnonzero(counts)
    energy = sum(int(counts[w]) * table.energy("int_add", int(w)) for w in used)
    area = sum(int(counts[w]) * table.area("int_add", int(w)) for w in used)
    return energy * positions, area


def _code_fields(layer: WeightLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nonzero, negative and shift ``e - n2`` of every weight, ``(outputs, inputs)``, from
    the packed codes (``zero << (b-1) | sign << (b-2) | index``; shift = n1 - n2 - index)."""
    codes = layer.codes.reshape(layer.codes.shape[0], -1)
    bits = layer.bits
    nonzero = (codes >> (bits - 1)) & 1 == 0
    negative = (codes >> (bits - 2)) & 1 == 1
    shift = (layer.n1 - layer.n2) - (codes & ((1 << (bits - 2)) - 1)).astype(np.int16)
    return nonzero, negative, shift


def _shift_add(layer: WeightLayer, lo_x: int, hi_x: int) -> np.ndarray:
    """Adder widths of the shift-add unit: terms sorted by (shift, sign), stably, then
    the bias-and-rounding constant after the inputs of its key (it is the last term)."""
    nonzero, negative, shift = _code_fields(layer)
    constants = layer.bias + _rounding(layer.shift)
    tz, has_const = _constant(constants)
    sentinel = np.int16(np.iinfo(np.int16).max)
    key = np.where(nonzero, shift * 2 + negative, sentinel).astype(np.int16)
    const_key = np.where(has_const, tz * 2, sentinel).astype(np.int16)
    position = (key <= const_key[:, None]).sum(axis=1)
    ordered = np.sort(np.concatenate([key, const_key[:, None]], axis=1), axis=1)
    valid, neg, sh = ordered != sentinel, (ordered & 1) == 1, (ordered >> 1).astype(np.int64)
    scale = np.ldexp(1.0, np.where(valid, sh, 0))
    true_lo = np.where(neg, -hi_x, lo_x) * scale
    true_hi = np.where(neg, -lo_x, hi_x) * scale
    rows = np.flatnonzero(has_const)
    true_lo[rows, position[rows]] = true_hi[rows, position[rows]] = constants[rows]
    return tree_widths(true_lo, true_hi, sh, neg, valid)


def _twin(layer: WeightLayer, lo_x: int, hi_x: int) -> tuple[np.ndarray, int]:
    """Adder widths of the multiplier twin: products in input order (all at shift 0, none
    negated), zero weights dropped, then the constant."""
    if not layer.has_baseline:
        raise CostError(
            f"The package has no 8-bit baseline for layer {layer.name!r}; re-export it "
            "with its FP32 source"
        )
    twin = layer.arithmetic("baseline")
    w = twin.weights.reshape(layer.codes.shape[0], -1)
    order = np.argsort(w == 0, axis=1, kind="stable")
    w = np.take_along_axis(w, order, axis=1).astype(float)
    constants = twin.bias + _rounding(twin.shift)
    _, has_const = _constant(constants)
    lo = np.concatenate([np.minimum(lo_x * w, hi_x * w), constants[:, None]], axis=1)
    hi = np.concatenate([np.maximum(lo_x * w, hi_x * w), constants[:, None]], axis=1)
    valid = np.concatenate([w != 0, np.zeros((len(w), 1), bool)], axis=1)
    n_valid = valid.sum(axis=1)
    rows = np.flatnonzero(has_const)
    lo[rows, n_valid[rows]], hi[rows, n_valid[rows]] = constants[rows], constants[rows]
    valid[rows, n_valid[rows]] = True
    shift = np.zeros(lo.shape, np.int64)
    return tree_widths(lo, hi, shift, np.zeros(lo.shape, bool), valid), int(np.count_nonzero(w))


def _design(
    widths: np.ndarray,
    mults: int,
    mult_cost: tuple[float, float],
    table: TechTable,
    positions: int,
    weight_bits: int,
    pe: tuple[float, float],
) -> DesignCost:
    energy, area = _adds_cost(widths, table, positions)
    return DesignCost(
        energy_pj=energy + mults * mult_cost[0] * positions,
        area_um2=area + mults * mult_cost[1],
        adds=int(widths.size),
        add_bits=int(widths.sum()),
        mults=mults,
        weight_bits=weight_bits,
        pe_mac_energy_pj=pe[0],
        pe_mac_area_um2=pe[1],
    )


def _pe(table: TechTable, first: tuple[float, float], acc_bits: int) -> tuple[float, float]:
    """One programmable MAC: ``first`` (shifter or multiplier) + adder + register."""
    return (
        first[0] + table.energy("int_add", acc_bits) + table.energy("register", acc_bits),
        first[1] + table.area("int_add", acc_bits) + table.area("register", acc_bits),
    )


@counts_for(WeightLayer)
def _weight_layer(model: IntModel, layer: Layer, table: TechTable) -> LayerCost:
    assert isinstance(layer, WeightLayer)
    x = model.layer(layer.inputs[0]).out
    rows, n_in = layer.codes.shape[0], int(np.prod(layer.codes.shape[1:]))
    weights, positions = rows * n_in, _positions(layer)
    shift_widths = _shift_add(layer, x.lo, x.hi)
    is_nonzero, _, shifts = _code_fields(layer)
    nonzero = int(np.count_nonzero(is_nonzero))
    exponents = 1 << (layer.bits - 2)
    shifter = (
        table.barrel_shifter(x.bits, exponents, "energy_pj"),
        table.barrel_shifter(x.bits, exponents, "area_um2"),
    )
    mult = (
        table.energy("int_mult", x.bits, _BASELINE_BITS),
        table.area("int_mult", x.bits, _BASELINE_BITS),
    )
    fp = (table.energy("fp_mult", _FLOAT_BITS), table.area("fp_mult", _FLOAT_BITS))
    fp_add = (table.energy("fp_add", _FLOAT_BITS), table.area("fp_add", _FLOAT_BITS))
    designs = {
        "shift-add": _design(
            shift_widths,
            0,
            (0.0, 0.0),
            table,
            positions,
            weights * layer.bits,
            _pe(table, shifter, layer.acc_bits),
        ),
    }
    twin_widths, twin_mults = _twin(layer, x.lo, x.hi)
    assert layer.baseline_acc_bits is not None  # _twin checked the baseline
    designs["mult8"] = _design(
        twin_widths,
        twin_mults,
        mult,
        table,
        positions,
        weights * _BASELINE_BITS,
        _pe(table, mult, layer.baseline_acc_bits),
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
    histogram = np.bincount(shift_widths)
    counts_ = {
        "inputs": n_in,
        "outputs": rows,
        "weights": weights,
        "nonzero": nonzero,
        "macs": nonzero * positions,
        "bits": layer.bits,
        "in_bits": x.bits,
        "const_shifts": int(np.count_nonzero(is_nonzero & (shifts > 0))),
        "adds_by_width": {int(w): int(histogram[w]) for w in np.flatnonzero(histogram)},
    }
    return LayerCost(layer.name, layer.kind, positions, counts_, designs)


@counts_for(AddLayer, AvgPoolLayer, MaxPoolLayer)
def _elementwise(model: IntModel, layer: Layer, table: TechTable) -> LayerCost:
    """Additions (or comparisons) per output element, the same in both integer designs."""
    if isinstance(layer, AddLayer):
        per_out, width = len(layer.inputs) - 1, layer.acc_bits
    else:
        kernel = layer.kernel  # type: ignore[attr-defined]
        per_out, width = kernel * kernel - 1, layer.out.bits + (2 * kernel).bit_length()
    n = int(np.prod(layer.shape)) * per_out
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


def analyze(model: IntModel, table: TechTable = HOROWITZ_45NM) -> NetworkCost:
    """Count and price every layer of ``model`` (module docstring).

    Raises
    ------
    CostError
        A layer without its 8-bit baseline, or a width the table cannot price.
    """
    layers = []
    for layer in model.layers:
        counter = _counter(layer)
        cost = counter(model, layer, table) if counter else None
        if cost is not None:
            layers.append(cost)
    return NetworkCost(layers=tuple(layers), table=table, memory=_memory(layers, table))
