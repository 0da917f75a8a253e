"""Switching activity: toggle counts per signal bit, from a simulation's waveforms.

The activity file is the one interface between simulation and power analysis: a
simulator run (cocotb on Verilator or Icarus with ``waves=True``, or the fast Verilator
harness) records waveforms; :func:`activity_from_waves` reads them with pywellen (FST or
VCD) and counts, for every bit of every signal, how often it changed between two known
values; :mod:`inq_hw.cost.asic` maps those counts to the synthesised netlist's nets and
hands OpenSTA one activity per net (toggles per clock cycle).

The format (JSON, written atomically by :meth:`Activity.write`)::

    {"format": "inq-hw-activity", "version": 1,
     "cycles": 1200,              # rising edges of the clock over the recording
     "period_ns": 10.0,           # median clock period, or null if not known
     "signals": {"top.acc": [600, 300, 150, ...]}}   # toggles per bit, LSB first

Signal names are the waveform's full hierarchical names, scopes joined by ``.``
(Verilator's FST puts the design under ``TOP``: ``TOP.top.acc``). A change from or to an
unknown value (``x``, ``z``) is not a toggle. Nothing else is in the file: duty cycles are
not recorded (OpenSTA is given 0.5), and neither are glitches (a zero-delay simulation
has none).

Example usage::

    activity = activity_from_waves("build/waves.fst", clock="clk")
    activity.write("runs/act.json")
    Activity.read("runs/act.json").rate("TOP.top.acc", 0)   # toggles per cycle of bit 0
"""

import itertools
import json
import math
import os
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.errors import InqHwError
from inq_hw.files import atomic_write

__all__ = ["FORMAT", "VERSION", "Activity", "ActivityError", "activity_from_waves"]

FORMAT = "inq-hw-activity"
VERSION = 1
_NS = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
_WORD = 64


class ActivityError(InqHwError, ValueError):
    """An activity file or a waveform file is missing, malformed or of another kind."""


@dataclass(frozen=True)
class Activity:
    """Toggle counts of every signal bit over ``cycles`` clock cycles.

    Members
    -------
    cycles : int
        Rising clock edges over the recording (at least 1).
    period_ns : float or None
        The clock period, if known.
    signals : mapping of str to tuple of int
        Toggles per bit, LSB first, by full hierarchical name.
    """

    cycles: int
    period_ns: float | None
    signals: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.cycles, bool) or not isinstance(self.cycles, int) or self.cycles < 1:
            raise ActivityError(f"Activity cycles must be a positive integer, not {self.cycles!r}")
        period = self.period_ns
        if period is not None and (
            isinstance(period, bool)
            or not isinstance(period, (int, float))
            or not math.isfinite(period)
            or period <= 0
        ):
            raise ActivityError(f"Activity period_ns must be positive or null, not {period!r}")
        if not isinstance(self.signals, Mapping):
            raise ActivityError(f"Activity signals must be a mapping, not {self.signals!r}")
        object.__setattr__(self, "signals", _checked_signals(self.signals))

    def rate(self, name: str, bit: int = 0) -> float:
        """Toggles per clock cycle of bit ``bit`` of signal ``name`` (KeyError if absent)."""
        return self.signals[name][bit] / self.cycles

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the file format (module docstring)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "cycles": self.cycles,
            "period_ns": self.period_ns,
            "signals": {name: list(bits) for name, bits in sorted(self.signals.items())},
        }

    @classmethod
    def from_dict(cls, obj: Any, *, source: str = "activity") -> "Activity":
        """Validate ``obj`` as the file format and build an :class:`Activity`.

        Raises
        ------
        ActivityError
            Not an object of this format and version, or a malformed field.
        """
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ActivityError(f"{source} is not an {FORMAT} file (no 'format': '{FORMAT}')")
        if obj.get("version") != VERSION:
            raise ActivityError(
                f"{source} is {FORMAT} version {obj.get('version')!r}; this reads {VERSION}"
            )
        extra = sorted(set(obj) - {"format", "version", "cycles", "period_ns", "signals"})
        missing = sorted({"cycles", "period_ns", "signals"} - set(obj))
        if extra or missing:
            raise ActivityError(f"{source}: unknown keys {extra}, missing keys {missing}")
        try:
            return cls(obj["cycles"], obj["period_ns"], obj["signals"])
        except ActivityError as error:
            raise ActivityError(f"{source}: {error}") from None

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the file (module docstring) atomically: never half-written."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        atomic_write(Path(path), lambda tmp: _write_text(tmp, text))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> "Activity":
        """Read and validate an activity file.

        Raises
        ------
        ActivityError
            Missing, not JSON, or not a valid file of this format (one line).
        """
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ActivityError(f"Cannot read activity file {path}: {error.strerror}") from None
        try:
            obj = json.loads(text)
        except ValueError as error:
            raise ActivityError(f"Activity file {path} is not JSON: {error}") from None
        return cls.from_dict(obj, source=f"Activity file {path}")


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)


def _checked_signals(signals: Mapping[Any, Any]) -> dict[str, tuple[int, ...]]:
    checked = {}
    for name, bits in signals.items():
        if not isinstance(name, str) or not name:
            raise ActivityError(f"Activity signal names must be non-empty strings, not {name!r}")
        if not isinstance(bits, (list, tuple)) or not bits:
            raise ActivityError(f"Toggles of {name!r} must be a non-empty list, not {bits!r}")
        for count in bits:
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ActivityError(
                    f"Toggles of {name!r} must be non-negative integers, not {count!r}"
                )
        checked[name] = tuple(bits)
    return checked


# --- waveforms -------------------------------------------------------------------------------


def _open_waves(path: Path) -> Any:
    """A pywellen Waveform; a file that is neither VCD nor FST is refused before pywellen
    sees it (its Rust parser panics, with a backtrace on stderr, on foreign input)."""
    import pywellen

    try:
        with path.open("rb") as handle:
            head = handle.read(256)
    except OSError as error:
        raise ActivityError(f"Cannot read waveform file {path}: {error.strerror}") from None
    is_fst = head[:1] == b"\x00"  # FST starts with its header block (type 0)
    is_vcd = head.lstrip()[:1] == b"$"
    if not (is_fst or is_vcd):
        raise ActivityError(f"Waveform file {path} is neither VCD nor FST")
    try:
        return pywellen.Waveform(str(path))
    except BaseException as error:  # pyo3's PanicException derives from BaseException
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        message = " ".join(str(error).split())[:200]
        raise ActivityError(f"Cannot parse waveform file {path}: {message}") from None


def _clock(waves: Any, name: str) -> Any:
    candidates = [var for var in waves.all_vars() if var.name == name and var.bitwidth == 1]
    if not candidates:
        raise ActivityError(f"Waveform has no 1-bit clock signal named {name!r}")
    return min(candidates, key=lambda var: (var.full_name.count("."), var.full_name))


def _known(value: Any, width: int) -> tuple[int, int]:
    """``(value, mask of known bits)`` of one pywellen value (an int, or a string of
    ``0 1 x z ...`` characters, MSB first, when some bit is not 0 or 1)."""
    if isinstance(value, int):
        return value, (1 << width) - 1
    text = str(value).rjust(width, "0")[-width:]
    bits = "".join(c if c in "01" else "0" for c in text)
    mask = "".join("1" if c in "01" else "0" for c in text)
    return int(bits, 2), int(mask, 2)


def _bit_toggles(changes: Iterable[tuple[int, Any]], width: int) -> list[int]:
    known = [_known(value, width) for _, value in changes]
    if len(known) < 2:
        return [0] * width
    values, masks = [v for v, _ in known], [m for _, m in known]
    counts: list[int] = []
    for low in range(0, width, _WORD):
        bits = min(_WORD, width - low)
        word = (1 << bits) - 1
        v = np.array([(x >> low) & word for x in values], dtype=np.uint64)
        m = np.array([(x >> low) & word for x in masks], dtype=np.uint64)
        diff = (v[1:] ^ v[:-1]) & m[1:] & m[:-1]
        counts.extend(int(((diff >> np.uint64(i)) & np.uint64(1)).sum()) for i in range(bits))
    return counts


def _rising_edges(changes: list[tuple[int, Any]]) -> list[int]:
    edges, previous = [], None
    for time, value in changes:
        if previous == 0 and value == 1:
            edges.append(time)
        previous = value
    return edges


def _period_ns(waves: Any, edges: list[int]) -> float | None:
    if len(edges) < 2:
        return None
    scale = waves.timescale
    unit = _NS.get(str(scale.unit)) if scale is not None else None
    if unit is None:
        return None
    ticks = statistics.median(b - a for a, b in itertools.pairwise(edges))
    return float(ticks * scale.factor * unit)


def activity_from_waves(
    path: str | os.PathLike[str], *, clock: str | None = "clk", cycles: int | None = None
) -> Activity:
    """Toggle counts of every bit-vector signal in an FST or VCD file (module docstring).

    ``cycles`` is the number of rising edges of the shallowest 1-bit signal named
    ``clock``; ``period_ns`` their median spacing. A combinational design has no clock:
    pass ``clock=None`` and the number of input vectors applied as ``cycles``.

    Raises
    ------
    ActivityError
        The file is missing or not a waveform, has no such clock, or no clock edge.
    """
    waves = _open_waves(Path(path))
    if clock is None:
        if cycles is None:
            raise ActivityError("Without a clock, the number of cycles must be given")
        edges: list[int] = []
    else:
        edges = _rising_edges(list(_clock(waves, clock).signal))
        if not edges:
            raise ActivityError(f"Clock {clock!r} never rises in {path}")
        cycles = len(edges)
    signals = {}
    for var in waves.all_vars():
        if var.is_real or var.is_string or var.bitwidth < 1:
            continue
        signals[var.full_name] = tuple(_bit_toggles(list(var.signal), var.bitwidth))
    return Activity(cycles, _period_ns(waves, edges), signals)
