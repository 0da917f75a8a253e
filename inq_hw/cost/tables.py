"""Technology tables: energy and area per operation, each figure with its source.

A table lists, per operation, one or more reference figures at a bit-width; the cost of
another width is scaled from the nearest reference by the rules of :data:`SCALING`
(ARCHITECTURE.md, "Cost model"):

* ``int_add``: adder ∝ n (a ripple or prefix adder has n bit slices);
* ``int_mult``: multiplier ∝ n·m (an array multiplier has n·m partial-product cells);
* ``mux2`` (per bit), ``register`` (per bit): ∝ bits; a barrel shifter of n bits over S
  shift amounts is n·⌈log2 S⌉ 2:1 multiplexers (one layer per shift bit);
* ``sram_read``: per access, ∝ word bits, taken from the smallest listed memory that holds
  the data (the access energy grows with capacity); ``dram_read`` beyond the largest;
* ``sram_bit``: area per stored bit;
* ``fp_add``, ``fp_mult``: no scaling; the width asked for must be listed.

The default, :data:`HOROWITZ_45NM`, is 45 nm at 0.9 V from Horowitz, "Computing's energy
problem (and what we can do about it)", ISSCC 2014, with the standard-cell and SRAM-cell
figures it lacks taken from a 45 nm library and process paper (each entry says which).

**File format** (JSON, or TOML with the same keys; :func:`load_table`)::

    {"format": "inq-hw-tech", "version": 1, "name": "my-28nm", "node_nm": 28,
     "operations": {
       "int_add":  [{"bits": 8, "energy_pj": 0.02, "area_um2": 20.0, "source": "..."}],
       "sram_read": [{"bits": 64, "energy_pj": 5.0, "capacity_bytes": 8192,
                      "source": "..."}],
       ...}}

Every operation of :data:`REQUIRED` needs at least one figure; a figure has a positive
integer ``bits``, a non-empty ``source`` and at least one of ``energy_pj`` and
``area_um2`` (positive numbers); ``sram_read`` and ``dram_read`` figures also need
``energy_pj`` and ``capacity_bytes``.

Example usage::

    table = load_table("my-28nm.toml")          # or HOROWITZ_45NM
    table.energy("int_add", 12)                 # pJ of one 12-bit addition
    table.area("int_mult", 8, 8)                # µm² of one 8x8 multiplier
"""

import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inq_hw.cost.errors import CostError, TechTableError

__all__ = [
    "HOROWITZ_45NM",
    "REQUIRED",
    "SCALING",
    "TABLE_FORMAT",
    "TABLE_VERSION",
    "Figure",
    "TechTable",
    "load_table",
    "table_from_dict",
]

TABLE_FORMAT = "inq-hw-tech"
TABLE_VERSION = 1
#: How each operation's figures scale with width (module docstring).
SCALING = {
    "int_add": "linear",
    "int_mult": "product",
    "fp_add": "exact",
    "fp_mult": "exact",
    "mux2": "linear",
    "register": "linear",
    "sram_read": "memory",
    "dram_read": "memory",
    "sram_bit": "linear",
}
REQUIRED = ("int_add", "int_mult", "fp_add", "fp_mult", "mux2", "register", "sram_read")
_MEMORY = ("sram_read", "dram_read")
_QUANTITIES = ("energy_pj", "area_um2")


@dataclass(frozen=True)
class Figure:
    """One reference figure: an operation at ``bits`` costs ``energy_pj`` and ``area_um2``.

    Members
    -------
    bits : int
        Operand width (a multiplier's n = m; memories: the word read per access).
    energy_pj, area_um2 : float or None
        Energy per operation and area per instance; ``None`` where the source gives none.
    source : str
        Where the numbers come from.
    capacity_bytes : int or None
        Memories only: the capacity the access energy was measured at.
    """

    bits: int
    source: str
    energy_pj: float | None = None
    area_um2: float | None = None
    capacity_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


_H = (
    "Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
    "energy per operation at 45 nm, 0.9 V"
)
_HA = (
    "Horowitz, ISSCC 2014 keynote, area per operation at 45 nm (as tabulated in Dally, "
    "'High-Performance Hardware for Machine Learning', NIPS 2015 tutorial)"
)
_NANGATE = "NanGate FreePDK45 Open Cell Library: {cell} area {area} um2"
_DERIVED = (
    "energy derived, not published: Horowitz's 8-bit add (0.03 pJ / 8 bits) times this "
    "cell's area over a full adder's (NanGate FA_X1, 4.256 um2), i.e. energy assumed "
    "proportional to cell area"
)


def _fig(bits: int, energy: float | None, area: float | None, source: str) -> Figure:
    return Figure(bits=bits, energy_pj=energy, area_um2=area, source=source)


def _default_operations() -> dict[str, tuple[Figure, ...]]:
    adder_bit_pj = 0.03 / 8
    return {
        "int_add": (
            _fig(8, 0.03, 36.0, f"{_H}; area: {_HA}"),
            _fig(16, 0.05, 67.0, f"{_H}; area: {_HA}"),
            _fig(32, 0.1, 137.0, f"{_H}; area: {_HA}"),
        ),
        "int_mult": (
            _fig(8, 0.2, 282.0, f"{_H}; area: {_HA}"),
            _fig(32, 3.1, 3495.0, f"{_H}; area: {_HA}"),
        ),
        "fp_add": (
            _fig(16, 0.4, 1360.0, f"{_H}; area: {_HA}"),
            _fig(32, 0.9, 4184.0, f"{_H}; area: {_HA}"),
        ),
        "fp_mult": (
            _fig(16, 1.1, 1640.0, f"{_H}; area: {_HA}"),
            _fig(32, 3.7, 7700.0, f"{_H}; area: {_HA}"),
        ),
        "mux2": (
            _fig(
                1,
                round(adder_bit_pj * 1.862 / 4.256, 6),
                1.862,
                f"area: {_NANGATE.format(cell='MUX2_X1', area=1.862)}; {_DERIVED}",
            ),
        ),
        "register": (
            _fig(
                1,
                round(adder_bit_pj * 4.522 / 4.256, 6),
                4.522,
                f"area: {_NANGATE.format(cell='DFF_X1', area=4.522)}; {_DERIVED}",
            ),
        ),
        "sram_read": tuple(
            Figure(bits=64, energy_pj=pj, capacity_bytes=size, source=f"{_H}: {label} cache")
            for pj, size, label in (
                (10.0, 8 << 10, "8 KB"),
                (20.0, 32 << 10, "32 KB"),
                (100.0, 1 << 20, "1 MB"),
            )
        ),
        "dram_read": (
            Figure(
                bits=64,
                energy_pj=1300.0,
                capacity_bytes=1 << 40,
                source=f"{_H}: DRAM 1.3-2.6 nJ per 64-bit access (the lower end)",
            ),
        ),
        "sram_bit": (
            _fig(
                1,
                None,
                0.346,
                "Mistry et al., 'A 45nm logic technology with high-k+metal gate transistors',"
                " IEDM 2007: 0.346 um2 6T SRAM cell",
            ),
        ),
    }


@dataclass(frozen=True)
class TechTable:
    """Energy and area figures of one technology (module docstring).

    Members
    -------
    name : str
        Short name, e.g. ``"45nm-horowitz"``.
    node_nm : float
        Process node.
    operations : dict of str to tuple of Figure
        Reference figures per operation name (:data:`SCALING`).
    """

    name: str
    node_nm: float
    operations: Mapping[str, tuple[Figure, ...]]

    def energy(self, op: str, bits: int, other_bits: int | None = None) -> float:
        """Energy in pJ of one ``op`` at ``bits`` (multipliers: ``bits`` x ``other_bits``)."""
        return self._scaled(op, "energy_pj", bits, other_bits)

    def area(self, op: str, bits: int, other_bits: int | None = None) -> float:
        """Area in µm² of one ``op`` at ``bits`` (multipliers: ``bits`` x ``other_bits``)."""
        return self._scaled(op, "area_um2", bits, other_bits)

    def barrel_shifter(self, bits: int, shift_range: int, quantity: str = "area_um2") -> float:
        """A ``bits``-wide barrel shifter over ``shift_range`` shift amounts: one layer of
        2:1 multiplexers per shift bit (∝ n·log2 S)."""
        layers = max(1, math.ceil(math.log2(max(shift_range, 2))))
        return self._scaled("mux2", quantity, bits * layers, None)

    def memory_read(self, word_bits: int, capacity_bytes: int) -> tuple[float, Figure]:
        """Energy in pJ of reading ``word_bits`` from a memory holding ``capacity_bytes``,
        and the figure used: the smallest SRAM that holds it, else DRAM (else the largest)."""
        memories = [f for op in _MEMORY for f in self.operations.get(op, ())]
        fitting = [f for f in memories if (f.capacity_bytes or 0) >= capacity_bytes]
        by_size = lambda f: (f.capacity_bytes or 0, f.bits)  # noqa: E731
        chosen = min(fitting, key=by_size) if fitting else max(memories, key=by_size)
        assert chosen.energy_pj is not None  # validated
        return chosen.energy_pj * word_bits / chosen.bits, chosen

    def _scaled(self, op: str, quantity: str, bits: int, other_bits: int | None) -> float:
        figures = [f for f in self._figures(op) if getattr(f, quantity) is not None]
        if not figures:
            raise CostError(f"Table {self.name!r} has no {quantity} figure for {op!r}")
        rule = SCALING[op]
        size = (
            bits * (other_bits if other_bits is not None else bits) if rule == "product" else bits
        )
        if size == 0:  # no bits, no hardware (a 1x1 PE array has no drain multiplexer)
            return 0.0
        if rule == "exact":
            exact = [f for f in figures if f.bits == bits]
            if not exact:
                widths = sorted(f.bits for f in figures)
                raise CostError(f"Table {self.name!r} has {op} at {widths} bits, not {bits}")
            return float(getattr(exact[0], quantity))
        ref_size = (lambda f: f.bits * f.bits) if rule == "product" else (lambda f: f.bits)
        ref = min(figures, key=lambda f: (abs(math.log(ref_size(f) / size)), f.bits))
        return float(getattr(ref, quantity)) * size / ref_size(ref)

    def _figures(self, op: str) -> tuple[Figure, ...]:
        if op not in SCALING:
            raise CostError(f"Operation must be one of {sorted(SCALING)}, not {op!r}")
        return tuple(self.operations.get(op, ()))

    def sources(self) -> dict[str, list[str]]:
        """The distinct sources of each operation's figures."""
        return {op: sorted({f.source for f in figs}) for op, figs in self.operations.items()}

    def to_dict(self) -> dict[str, Any]:
        """The table in its file format (JSON-ready)."""
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "name": self.name,
            "node_nm": self.node_nm,
            "operations": {op: [f.to_dict() for f in figs] for op, figs in self.operations.items()},
        }


HOROWITZ_45NM = TechTable(name="45nm-horowitz", node_nm=45, operations=_default_operations())


# --- reading and validating -------------------------------------------------------------


def load_table(path: str | os.PathLike[str]) -> TechTable:
    """Read a technology table from a ``.json`` or ``.toml`` file (module docstring).

    Raises
    ------
    TechTableError
        Missing or unreadable file, not JSON/TOML, or a malformed or missing figure; the
        message names the file and the offending key.
    """
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as error:
        raise TechTableError(f"Cannot read technology table {file}: {error.strerror}") from None
    try:
        obj = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise TechTableError(
            f"Technology table {file} is not valid {_kind(file)}: {error}"
        ) from None
    return table_from_dict(obj, origin=str(file))


def _kind(file: Path) -> str:
    return "TOML" if file.suffix == ".toml" else "JSON"


def table_from_dict(obj: Any, *, origin: str = "<table>") -> TechTable:
    """Validate a table in file format (see :func:`load_table`) and build it."""
    if not isinstance(obj, dict):
        raise TechTableError(f"{origin}: a technology table must be an object, not {obj!r:.60}")
    found = (obj.get("format"), obj.get("version"))
    if found != (TABLE_FORMAT, TABLE_VERSION):
        raise TechTableError(
            f"{origin}: format and version must be {(TABLE_FORMAT, TABLE_VERSION)}, not {found}"
        )
    name, node = obj.get("name"), obj.get("node_nm")
    if not isinstance(name, str) or not name:
        raise TechTableError(f"{origin}: 'name' must be a non-empty string, not {name!r}")
    if not _positive(node):
        raise TechTableError(f"{origin}: 'node_nm' must be a positive number, not {node!r}")
    operations = obj.get("operations")
    if not isinstance(operations, dict):
        raise TechTableError(f"{origin}: 'operations' must be an object, not {operations!r:.60}")
    unknown = sorted(set(operations) - set(SCALING))
    if unknown:
        raise TechTableError(
            f"{origin}: unknown operation {unknown[0]!r}; known: {sorted(SCALING)}"
        )
    missing = [op for op in REQUIRED if not operations.get(op)]
    if missing:
        raise TechTableError(f"{origin}: no figures for required operation {missing[0]!r}")
    parsed = {
        op: tuple(_figure(f, op, f"{origin}: operations.{op}[{i}]") for i, f in enumerate(figs))
        for op, figs in operations.items()
        if _is_list(figs, f"{origin}: operations.{op}")
    }
    return TechTable(name=name, node_nm=float(node), operations=parsed)  # type: ignore[arg-type]


def _is_list(value: Any, where: str) -> bool:
    if not isinstance(value, list):
        raise TechTableError(f"{where} must be a list of figures, not {value!r:.60}")
    return True


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _figure(obj: Any, op: str, where: str) -> Figure:
    if not isinstance(obj, dict):
        raise TechTableError(f"{where} must be an object, not {obj!r:.60}")
    extra = sorted(set(obj) - {"bits", "source", "capacity_bytes", *_QUANTITIES})
    if extra:
        raise TechTableError(f"{where}: unknown key {extra[0]!r}")
    bits, source = obj.get("bits"), obj.get("source")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise TechTableError(f"{where}.bits must be a positive integer, not {bits!r}")
    if not isinstance(source, str) or not source.strip():
        raise TechTableError(
            f"{where}.source must name where the figure comes from, not {source!r}"
        )
    for key in (*_QUANTITIES, "capacity_bytes"):
        if key in obj and not _positive(obj[key]):
            raise TechTableError(f"{where}.{key} must be a positive number, not {obj[key]!r}")
    if not any(key in obj for key in _QUANTITIES):
        raise TechTableError(f"{where} needs energy_pj or area_um2 (or both)")
    if op in _MEMORY and ("energy_pj" not in obj or "capacity_bytes" not in obj):
        raise TechTableError(f"{where}: a memory figure needs energy_pj and capacity_bytes")
    return Figure(
        bits=bits,
        source=source,
        energy_pj=_float(obj.get("energy_pj")),
        area_um2=_float(obj.get("area_um2")),
        capacity_bytes=int(obj["capacity_bytes"]) if "capacity_bytes" in obj else None,
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
