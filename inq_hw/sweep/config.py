"""``SWEEP.toml``: a base flow configuration and the axes a sweep varies over it.

A sweep file has a ``[base]`` table (the keys ``inq-hw flow --config`` reads, see
:class:`inq_hw.flow.FlowConfig`), a ``[grid]`` table whose every key is an axis with a list
of values (the sweep runs their cartesian product) and/or ``[[points]]`` tables, each one
point given explicitly. An axis is any flow-config field but ``version`` and ``name``
(``bits`` for weight bits, ``a_bits``, ``partition``, ``schedule``, ``seed``, ``folding``,
``targets``, ...), so a field the flow gains (a twin kind) is an axis at once. A point
that names no ``seed`` runs every seed of ``seeds`` (default ``[0, 1, 2]``): the report
gives each configuration's mean and spread over them.

Example usage::

    sweep = SweepConfig.from_toml(Path("sweep.toml"))
    for point in sweep.points():
        print(point.name, point.config.bits, point.config.seed)
"""

import itertools
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from inq_hw.errors import ConfigError
from inq_hw.flow import FlowConfig

__all__ = ["DEFAULT_SEEDS", "SWEEP_VERSION", "SweepConfig", "SweepPoint", "axis_names"]

SWEEP_VERSION = 1
#: The seeds of a point that names none: one run per point cannot support a 0.5-point
#: conclusion (issue 19: 2-bit INQ moved 2.2 points between two machines).
DEFAULT_SEEDS = (0, 1, 2)
_TOP_KEYS = {"version", "name", "seeds", "base", "grid", "points"}


def axis_names() -> tuple[str, ...]:
    """The flow-config fields a sweep may vary."""
    return tuple(f.name for f in fields(FlowConfig) if f.name not in ("version", "name"))


@dataclass(frozen=True)
class SweepPoint:
    """One flow configuration of a sweep.

    Members
    -------
    name : str
        Unique, file-name safe (``bits-2_seed-0``): the point's report directory.
    group : str
        The name without its seed: the points of one group differ in the seed only.
    axes : dict
        The axis values of this point (seed included), as the sweep file gave them.
    config : FlowConfig
        The flow configuration: ``base`` with the axis values applied.
    """

    name: str
    group: str
    axes: dict[str, Any]
    config: FlowConfig


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: ``base`` and the grid axes and explicit points over it (see the module)."""

    base: FlowConfig = field(default_factory=FlowConfig)
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    explicit: tuple[dict[str, Any], ...] = ()
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    name: str = "sweep"
    version: int = SWEEP_VERSION

    def __post_init__(self) -> None:
        if self.version != SWEEP_VERSION:
            raise ConfigError(f"Sweep version must be {SWEEP_VERSION}, not {self.version!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Sweep name must be a non-empty string, not {self.name!r}")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        seeds = self.seeds
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
            raise ConfigError(f"seeds must be a non-empty list of integers, not {list(seeds)!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must be distinct, not {list(seeds)!r}")
        for axis, values in self.grid.items():
            _check_axis(axis, "[grid]")
            if not isinstance(values, list | tuple) or not values:
                raise ConfigError(f"Grid axis {axis} must be a non-empty list, not {values!r}")
        for i, point in enumerate(self.explicit):
            if not isinstance(point, dict) or not point:
                raise ConfigError(f"[[points]] entry {i + 1} must be a non-empty table")
            for axis in point:
                _check_axis(axis, f"[[points]] entry {i + 1}")
        if not self.grid and not self.explicit:
            raise ConfigError("The sweep is empty: give a [grid] with axes or [[points]]")

    @classmethod
    def from_toml(cls, path: Path) -> "SweepConfig":
        """Read a sweep file; every point's flow config is checked (:meth:`points`)."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"Cannot read sweep file {path}: {error}") from None
        if unknown := sorted(set(data) - _TOP_KEYS):
            raise ConfigError(f"Unknown keys in sweep file {path}: {unknown}")
        base = data.get("base", {})
        if not isinstance(base, dict):
            raise ConfigError(f"[base] of {path} must be a table, not {base!r}")
        if unknown := sorted(set(base) - {f.name for f in fields(FlowConfig)}):
            raise ConfigError(f"Unknown flow-config keys in [base] of {path}: {unknown}")
        if "seed" in base:
            raise ConfigError(
                f"{path}: give seeds as `seeds = [...]` or a grid axis, not in [base]"
            )
        grid, points = data.get("grid", {}), data.get("points", [])
        if not isinstance(grid, dict) or not isinstance(points, list):
            raise ConfigError(f"{path}: [grid] must be a table and [[points]] a list of tables")
        try:
            sweep = cls(
                base=FlowConfig(**base),
                grid={axis: tuple(v) if isinstance(v, list) else v for axis, v in grid.items()},
                explicit=tuple(points),
                seeds=data.get("seeds", DEFAULT_SEEDS),
                name=data.get("name", path.stem),
                version=data.get("version", SWEEP_VERSION),
            )
        except TypeError as error:
            raise ConfigError(f"Bad sweep file {path}: {error}") from None
        sweep.points()  # every point a valid flow config, before any work
        return sweep

    def points(self) -> list[SweepPoint]:
        """Every point: the grid's product (in the file's axis order), then the explicit
        points, each crossed with ``seeds`` unless it names a seed; duplicates once."""
        combos = [dict(zip(self.grid, values, strict=True)) for values in _product(self.grid)]
        seen: set[str] = set()
        result = []
        for axes in itertools.chain(combos, self.explicit):
            for seeded in _with_seeds(axes, self.seeds):
                point = _point(self.base, seeded)
                if point.name not in seen:
                    seen.add(point.name)
                    result.append(point)
        return result

    def to_dict(self) -> dict[str, Any]:
        """What sweep.json records of the sweep file."""
        return {
            "version": self.version,
            "name": self.name,
            "seeds": list(self.seeds),
            "base": asdict(self.base),
            "grid": {axis: list(values) for axis, values in self.grid.items()},
            "points": [dict(point) for point in self.explicit],
        }


def _check_axis(axis: str, where: str) -> None:
    if axis not in axis_names():
        raise ConfigError(f"{where}: {axis!r} is not a sweep axis; axes: {', '.join(axis_names())}")


def _product(grid: dict[str, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return list(itertools.product(*grid.values())) if grid else []


def _with_seeds(axes: dict[str, Any], seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    return [axes] if "seed" in axes else [{**axes, "seed": seed} for seed in seeds]


def _point(base: FlowConfig, axes: dict[str, Any]) -> SweepPoint:
    name = "_".join(f"{axis}-{_label(value)}" for axis, value in axes.items())
    group = "_".join(f"{a}-{_label(v)}" for a, v in axes.items() if a != "seed") or "base"
    changes = {axis: _flow_value(axis, value) for axis, value in axes.items()}
    try:
        config = base.replace(**changes, name=name)
    except (ConfigError, TypeError) as error:
        raise ConfigError(f"Sweep point {name}: {error}") from None
    return SweepPoint(name, group, dict(axes), config)


def _flow_value(axis: str, value: Any) -> Any:
    """A grid value as the flow config takes it: one weight bit-width per point is
    ``bits = 2`` (the flow's ``bits`` is a list)."""
    return (value,) if axis in ("bits", "targets") and not isinstance(value, list) else value


def _label(value: Any) -> str:
    if isinstance(value, dict):
        text = "+".join(f"{k}.{_label(v)}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        text = "+".join(_label(v) for v in value)
    else:
        text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)
