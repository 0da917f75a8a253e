"""Accumulated-portion schedules of INQ (the fraction of each layer quantized after a step)."""

import itertools
import math
from collections.abc import Sequence

from inq_hw.errors import ConfigError

__all__ = ["DEFAULT_SCHEDULE", "NAMED_SCHEDULES", "parse_schedule", "schedule_for_bits"]

DEFAULT_SCHEDULE: tuple[float, ...] = (0.5, 0.75, 0.875, 1.0)

#: The paper's schedules (Sec. 3.3 and its released code): finer steps for fewer bits.
NAMED_SCHEDULES: dict[str, tuple[float, ...]] = {
    "default": DEFAULT_SCHEDULE,
    "paper5": DEFAULT_SCHEDULE,
    "paper4": (0.3, 0.5, 0.8, 0.9, 0.95, 1.0),
    "paper3": (0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
    "paper2": (0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 1.0),
}


def schedule_for_bits(bits: int) -> tuple[float, ...]:
    """The paper's schedule for a bit-width: ``paper2``..``paper4``, else the default."""
    return NAMED_SCHEDULES.get(f"paper{bits}", DEFAULT_SCHEDULE) if bits < 5 else DEFAULT_SCHEDULE


def _validate(portions: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(p) for p in portions)
    if not values:
        raise ConfigError("Schedule must hold at least one portion, not an empty list")
    if any(not math.isfinite(p) or p <= 0.0 or p > 1.0 for p in values):
        raise ConfigError(f"Schedule portions must lie in (0, 1], not {list(values)!r}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigError(f"Schedule must be strictly increasing, not {list(values)!r}")
    if values[-1] != 1.0:
        raise ConfigError(f"Schedule must end at 1.0, not {list(values)!r}")
    return values


def parse_schedule(spec: str | Sequence[float], *, bits: int | None = None) -> tuple[float, ...]:
    """Turn a name, a comma-separated string or a sequence into a validated schedule.

    ``"auto"`` picks the paper's schedule for ``bits``.

    Example usage::

        >>> parse_schedule("0.5,0.75,0.875,1")
        (0.5, 0.75, 0.875, 1.0)
        >>> parse_schedule("paper4")
        (0.3, 0.5, 0.8, 0.9, 0.95, 1.0)

    Raises
    ------
    ConfigError
        Unknown name, unparsable number, not strictly increasing or not ending at 1.0.
    """
    if isinstance(spec, str):
        name = spec.strip()
        if name == "auto":
            if bits is None:
                raise ConfigError("Schedule 'auto' needs the bit-width")
            return schedule_for_bits(bits)
        if name in NAMED_SCHEDULES:
            return NAMED_SCHEDULES[name]
        try:
            portions = [float(part) for part in name.split(",")]
        except ValueError:
            known = ", ".join(["auto", *NAMED_SCHEDULES])
            raise ConfigError(
                f"Schedule must be a name ({known}) or numbers like 0.5,1, not {spec!r}"
            ) from None
        return _validate(portions)
    return _validate(spec)
