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

__all__ = ["DESIGNS", "DesignCost", "LayerCost", "NetworkCost", "adder_widths", "analyze"]

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


def adder_widths(
    lo: np.ndarray, hi: np.ndarray, shift: np.ndarray, negated: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """Widths of every adder of the trees :func:`rtl_gen.arith.adder_tree` builds, one tree
    per row: term ``(-1)**negated · v · 2**shift`` with ``lo <= v <= hi`` where ``valid``.

    All arguments are ``(rows, terms)`` arrays. Rows are sorted here by ``(shift,
    negated)``, stably, invalid terms last; pairs of neighbours are combined level by level
    with ``rtl_gen.arith._combine``'s range arithmetic. Sorted rows stay sorted after each
    level, so the left operand always has the smaller shift.
    """
    key = np.where(valid, shift.astype(np.int64) * 2 + negated, np.iinfo(np.int64).max)
    order = np.argsort(key, axis=1, kind="stable")
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    lo, hi, shift = take(lo).astype(float), take(hi).astype(float), take(shift)
    negated, valid = take(negated), take(valid)
    widths: list[np.ndarray] = []
    while lo.shape[1] > 1:
        if lo.shape[1] % 2:
            lo, hi, shift, negated, valid = (_pad(a) for a in (lo, hi, shift, negated, valid))
        a, b = slice(0, None, 2), slice(1, None, 2)
        both = valid[:, b]  # valid terms are packed first: b valid implies a valid
        d = shift[:, b] - shift[:, a]
        b_lo, b_hi = np.ldexp(lo[:, b], d), np.ldexp(hi[:, b], d)
        same = negated[:, a] == negated[:, b]
        sub_b = ~same & negated[:, b]
        new_lo = np.where(same, lo[:, a] + b_lo, np.where(sub_b, lo[:, a] - b_hi, b_lo - hi[:, a]))
        new_hi = np.where(same, hi[:, a] + b_hi, np.where(sub_b, hi[:, a] - b_lo, b_hi - lo[:, a]))
        widths.append(_range_width(new_lo[both], new_hi[both]))
        lo, hi = np.where(both, new_lo, lo[:, a]), np.where(both, new_hi, hi[:, a])
        negated = np.where(both, negated[:, a] & same, negated[:, a])
        shift, valid = shift[:, a], valid[:, a]
    return np.concatenate(widths) if widths else np.zeros(0, dtype=np.int64)


def _pad(a: np.ndarray) -> np.ndarray:
    return np.pad(a, ((0, 0), (0, 1)))


def _constant_term(constants: np.ndarray) -> tuple[np.ndarray, ...]:
    """``ConstDotUnit``'s constant term per row: value ``c >> tz(c)`` at shift ``tz(c)``."""
    c = constants.astype(np.int64)
    tz = np.where(c != 0, _bit_length((c & -c).astype(float)) - 1, 0)
    value = (c >> tz).astype(float)
    return (
        value[:, None],
        value[:, None],
        tz[:, None],
        np.zeros_like(c, bool)[:, None],
        (c != 0)[:, None],
    )


def _unit_widths(
    lo: np.ndarray,
    hi: np.ndarray,
    shift: np.ndarray,
    negated: np.ndarray,
    valid: np.ndarray,
    constants: np.ndarray,
) -> np.ndarray:
    const = _constant_term(constants)
    parts = zip((lo, hi, shift, negated, valid), const, strict=True)
    return adder_widths(*(np.concatenate(p, axis=1) for p in parts))


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
    values, counts = np.unique(widths, return_counts=True)
    energy = sum(
        int(n) * table.energy("int_add", int(w)) for w, n in zip(values, counts, strict=True)
    )
    area = sum(int(n) * table.area("int_add", int(w)) for w, n in zip(values, counts, strict=True))
    return energy * positions, area


def _shift_add(layer: WeightLayer, lo_x: int, hi_x: int) -> np.ndarray:
    w = layer.weights_int().reshape(layer.codes.shape[0], -1)
    magnitude = np.abs(w)
    shift = np.where(w != 0, _bit_length(magnitude.astype(float)) - 1, 0)
    full = np.full(w.shape, 1.0)
    constants = layer.bias + _rounding(layer.shift)
    return _unit_widths(full * lo_x, full * hi_x, shift, w < 0, w != 0, constants)


def _twin(layer: WeightLayer, lo_x: int, hi_x: int) -> tuple[np.ndarray, int]:
    if not layer.has_baseline:
        raise CostError(
            f"The package has no 8-bit baseline for layer {layer.name!r}; re-export it "
            "with its FP32 source"
        )
    twin = layer.arithmetic("baseline")
    w = twin.weights.reshape(layer.codes.shape[0], -1).astype(float)
    lo, hi = np.minimum(lo_x * w, hi_x * w), np.maximum(lo_x * w, hi_x * w)
    zeros = np.zeros(w.shape, np.int64)
    widths = _unit_widths(
        lo, hi, zeros, zeros.astype(bool), w != 0, twin.bias + _rounding(twin.shift)
    )
    return widths, int(np.count_nonzero(w))


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
    w = layer.weights_int()
    nonzero = int(np.count_nonzero(w))
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
    values, counts = np.unique(shift_widths, return_counts=True)
    counts_ = {
        "inputs": n_in,
        "outputs": rows,
        "weights": weights,
        "nonzero": nonzero,
        "macs": nonzero * positions,
        "bits": layer.bits,
        "in_bits": x.bits,
        "const_shifts": int(np.count_nonzero(np.abs(w) > 1)),
        "adds_by_width": {int(v): int(n) for v, n in zip(values, counts, strict=True)},
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
