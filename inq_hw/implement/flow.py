"""Synthesis, place and route and bitstream of a dataflow top on one FPGA, cached.

:func:`implement_rtl` takes an rtl_gen output directory holding one dataflow top (``inq-hw
generate --unit dataflow``) or one shift-PE array (:mod:`inq_hw.implement.pe_array`) and
runs, through :func:`inq_hw.tools.run_tool`:

1. Yosys: the top inside :func:`inq_hw.cost.synth.fmax_wrapper` (every input bit fed from
   a shift register on one pin, every output captured into another, so any top needs four
   pins and every path of the top is register to register), synthesised with
   :func:`inq_hw.cost.synth.synth_script` for the device's family. The top is kept a
   module of its own (``keep_hierarchy``), so its figures exclude the wrapper's and its
   netlist (``netlist.v``, vendor cells) can be simulated on its own.
2. nextpnr with ``--freq`` (the clock constraint) and ``--report``: Fmax and utilization.
3. icepack / ecppack: the bitstream.

Everything is cached under ``cache_dir`` by a key of the Verilog's hash, the wrapper, the
script, the device, the clock and the tool versions (:func:`inq_hw.cost.synth.cache_key`):
a second run copies the stored artifacts. Each stage prints one progress line; each has a
time limit (:class:`inq_hw.errors.ToolTimeout`, one line).

Example usage::

    result = implement_rtl("pkg/rtl-dataflow", "ice40-up5k", clock_mhz=20, out_dir="impl")
    result["fmax_mhz"], result["resources"]["lut"], result["bitstream"]
"""

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inq_hw.cost.synth import SynthJob, cache_key, cell_figures, fmax_wrapper, synth_script
from inq_hw.errors import ConfigError, ToolError
from inq_hw.files import atomic_write
from inq_hw.implement.devices import Device, get_device, smallest_fitting
from inq_hw.progress import Progress
from inq_hw.tools import run_tool, tool_version

__all__ = [
    "DEFAULT_STAGE_TIMEOUT_S",
    "RESULTS_NAME",
    "ImplementError",
    "dataflow_top",
    "default_cache_dir",
    "implement_package",
    "implement_rtl",
]

DEFAULT_STAGE_TIMEOUT_S = 3600.0
RESULTS_NAME = "implementation.json"
_CACHE_VERSION = 1
_WRAPPER_TOP = "inq_hw_fmax_wrapper"
_PACKER = {"ice40": ("icepack", "top.asc", "top.bin"), "ecp5": ("ecppack", "top.config", "top.bit")}
#: The manifest kinds ``implement`` takes: the streaming top and the PE array, whose
#: manifest holds its host cycles per image (:mod:`inq_hw.implement.pe_array`).
_KINDS = ("dataflow", "pe_array")
_ARTIFACTS = ("yosys.log", "nextpnr.log", "report.json", "netlist.v", "stat.json")


class ImplementError(ConfigError):
    """The RTL directory cannot be implemented as asked (no dataflow top, bad clock)."""


def default_cache_dir() -> Path:
    """``$INQ_HW_CACHE/implement``, else ``~/.cache/inq-hw/implement``."""
    root = os.environ.get("INQ_HW_CACHE")
    return Path(root) / "implement" if root else Path.home() / ".cache" / "inq-hw" / "implement"


def dataflow_top(rtl_dir: Path) -> Any:
    """The one dataflow top or PE array of ``rtl_dir``'s manifest (an rtl_gen ``TopInfo``):
    what :func:`implement_rtl` implements."""
    from rtl_gen.export import RTLError, load_manifest

    try:
        manifest = load_manifest(rtl_dir)
    except RTLError as error:
        raise ImplementError(f"Cannot read the RTL in {rtl_dir}: {error}") from None
    tops = [top for top in manifest.tops if top.params.get("kind") in _KINDS]
    if len(tops) != 1:
        raise ImplementError(
            f"{rtl_dir} holds no dataflow top or PE array (run 'inq-hw generate --unit "
            "dataflow', or implement with --arch pe-array)"
        )
    return tops[0]


def _script(device: Device, dsp: bool | None, abc: str) -> list[str]:
    return synth_script(device.family, _WRAPPER_TOP, abc=abc, dsp=dsp)


def check_seed(seed: object) -> None:
    """Refuse a placement seed nextpnr does not take (one line)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 < seed < 2**31:
        raise ImplementError(
            f"The placement seed (--seed) must be from 1 to 2**31 - 1, not {seed!r}"
        )


def _nextpnr_args(device: Device, clock_mhz: float, seed: int) -> list[str]:
    pins = "--pcf-allow-unconstrained" if device.family == "ice40" else "--lpf-allow-unconstrained"
    output = ["--asc", "top.asc"] if device.family == "ice40" else ["--textcfg", "top.config"]
    return [
        *device.nextpnr_args,
        pins,
        "--json",
        "pnr.json",
        "--freq",
        f"{clock_mhz:g}",
        "--report",
        "report.json",
        "--timing-allow-fail",
        "--seed",
        str(seed),
        *output,
        "-q",
        "-l",
        "nextpnr.log",
    ]


def implement_rtl(
    rtl_dir: str | os.PathLike[str],
    device: str,
    *,
    clock_mhz: float = 12.0,
    dsp: bool | None = None,
    abc: str = "fast",
    seed: int = 1,
    out_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout_s: float = DEFAULT_STAGE_TIMEOUT_S,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Implement the dataflow top (or PE array) of ``rtl_dir`` on ``device`` (module
    docstring).

    Args:
        rtl_dir: An rtl_gen output directory with one dataflow top or PE array.
        device: A name of :data:`inq_hw.implement.devices.DEVICES`.
        clock_mhz: The clock constraint given to nextpnr.
        dsp: Map multipliers to DSP blocks (default: the family's default in
            :func:`inq_hw.cost.synth.synth_script`; iCE40 off, ECP5 on).
        abc: ``"fast"`` (classic ABC LUT mapping without SAT) or ``"full"`` (the vendor
            script's ABC9).
        out_dir: Where the bitstream, netlist, logs, report and ``implementation.json``
            go (default ``RTL_DIR/implement-DEVICE``).
        cache_dir: Cached runs (default :func:`default_cache_dir`; ``None`` is the default,
            pass a directory to share one).
        timeout_s: Time limit of each tool stage.
        progress: One line per tool stage.
        seed: nextpnr's placement seed (``--seed``): another seed is another placement,
            so a seed sweep samples how much of Fmax is placement.

    Returns:
        The results (also written to ``OUT_DIR/implementation.json``).

    Raises:
        ImplementError, DeviceError: No dataflow top, bad clock, unknown device.
        ToolNotFound, ToolTimeout, ToolError: A tool is missing, too slow, or fails.
    """
    part = get_device(device)
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, int | float) or clock_mhz <= 0:
        raise ImplementError(f"The clock must be a positive frequency in MHz, not {clock_mhz!r}")
    check_seed(seed)
    rtl = Path(rtl_dir)
    top = dataflow_top(rtl)
    verilog = (rtl / top.file).read_text()
    job = SynthJob(top.name, verilog, tuple((p.name, p.direction, p.width) for p in top.ports))
    wrapper = fmax_wrapper(job, keep_hierarchy=True)
    script = _script(part, dsp, abc)
    packer = _PACKER[part.family][0]
    tools = ["yosys", f"nextpnr-{part.family}", packer]
    nextpnr = _nextpnr_args(part, clock_mhz, seed)
    key = cache_key(
        {
            "cache_version": _CACHE_VERSION,
            "verilog": top.sha256,
            "top": top.name,
            "wrapper": wrapper,
            "script": script,
            "nextpnr": nextpnr,
            "tools": [tool_version(tool) for tool in tools],
        }
    )
    out = Path(out_dir) if out_dir is not None else rtl / f"implement-{part.name}"
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    progress = progress or Progress()
    stored = cache / key
    cached = (stored / RESULTS_NAME).is_file()
    if cached:
        progress.message(f"implement {top.name} on {part.name}: cached ({key[:12]})")
        record = json.loads((stored / RESULTS_NAME).read_text())
    else:
        record = _run(job, wrapper, (script, nextpnr), part, clock_mhz, timeout_s, stored, progress)
    record = {**record, "key": key, "cached": cached, "dsp": dsp, "abc": abc}
    return _publish(record, stored, out, top, part, clock_mhz)


def _run(
    job: SynthJob,
    wrapper: str,
    scripts: tuple[list[str], list[str]],
    part: Device,
    clock_mhz: float,
    timeout_s: float,
    stored: Path,
    progress: Progress,
) -> dict[str, Any]:
    script, nextpnr = scripts  # Yosys's script, nextpnr's arguments
    progress.phase(f"implement {job.top} on {part.name}", 3)
    seconds: dict[str, float] = {}
    stored.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".inq_hw_impl_", dir=stored.parent) as tmp:
        work = Path(tmp)
        (work / "design.v").write_text(job.verilog)
        (work / "wrapper.v").write_text(wrapper)
        lines = [
            "read_verilog design.v wrapper.v",
            *script,
            "tee -q -o stat.json stat -json",
            "write_json pnr.json",
            f"select {job.top}",
            "write_verilog -noattr -selected netlist.v",
        ]
        (work / "synth.ys").write_text("\n".join(lines) + "\n")
        what = f"{job.top} ({part.name})"
        start = time.perf_counter()
        run_tool(
            "yosys",
            ["-q", "-l", "yosys.log", "-s", "synth.ys"],
            cwd=work,
            timeout_s=timeout_s,
            what=what,
            log=work / "yosys.log",
        )
        seconds["synth"] = time.perf_counter() - start
        progress.message(f"yosys {script[0].split()[0]} on {job.top}: {seconds['synth']:.1f} s")
        progress.advance()
        _check_fit(work, job.top, part)
        start = time.perf_counter()
        run_tool(
            f"nextpnr-{part.family}",
            nextpnr,
            cwd=work,
            timeout_s=timeout_s,
            what=f"{what} place and route",
            log=work / "nextpnr.log",
        )
        seconds["pnr"] = time.perf_counter() - start
        progress.message(f"nextpnr-{part.family} on {job.top}: {seconds['pnr']:.1f} s")
        progress.advance()
        packer, config, bitstream = _PACKER[part.family]
        start = time.perf_counter()
        run_tool(packer, [config, bitstream], cwd=work, timeout_s=timeout_s, what=what)
        seconds["pack"] = time.perf_counter() - start
        progress.message(f"{packer} on {job.top}: {seconds['pack']:.1f} s")
        progress.advance()
        record = _figures(work, job.top, part, clock_mhz)
        record.update(seconds=seconds, script=script, bitstream_name=bitstream)
        (work / RESULTS_NAME).write_text(json.dumps(record, indent=1, sort_keys=True))
        for name in ("design.v", "wrapper.v", "pnr.json", config):
            (work / name).unlink(missing_ok=True)
        shutil.rmtree(stored, ignore_errors=True)
        os.replace(work, stored)
        work.mkdir()  # TemporaryDirectory removes its (now empty) directory on exit
    return record


def _check_fit(work: Path, top: str, part: Device) -> None:
    """Refuse before place and route when the synthesised top exceeds the device."""
    stat = json.loads((work / "stat.json").read_text())
    used = cell_figures(part.family, stat["design"])
    short = part.shortfall(used)
    if not short:
        return
    other = smallest_fitting(part.family, used)
    hint = (
        f"the smallest {part.family} device that holds it is {other.name}"
        if other
        else (f"no {part.family} device holds it")
    )
    advice = (
        "; fold it (--fold), or map multipliers to LUTs (--no-dsp)"
        if used.get("dsp")
        else ("; fold it (--fold)")
    )
    raise ImplementError(
        f"{top} does not fit {part.name}: it needs {', '.join(short)} (wrapper included); "
        f"{hint}{advice}"
    )


def _figures(work: Path, top: str, part: Device, clock_mhz: float) -> dict[str, Any]:
    stat = json.loads((work / "stat.json").read_text())
    modules = {name.lstrip("\\"): entry for name, entry in stat["modules"].items()}
    if top not in modules:
        raise ToolError(f"Yosys kept no module {top!r} in the synthesised design")
    design = cell_figures(part.family, modules[top])
    wrapper = cell_figures(part.family, modules.get(_WRAPPER_TOP, {"num_cells": 0}))
    report = json.loads((work / "report.json").read_text())
    achieved = [v["achieved"] for v in report.get("fmax", {}).values() if "achieved" in v]
    fmax = min(achieved) if achieved else None
    used = {k: v for k, v in report.get("utilization", {}).items() if v.get("used")}
    resources = {k: design.get(k) for k in ("lut", "ff", "carry", "bram", "dsp")}
    return {
        "resources": resources,
        "cells_by_type": design["cells_by_type"],
        "wrapper_resources": {k: wrapper.get(k) for k in ("lut", "ff")},
        "utilization": used,
        "fmax_mhz": fmax,
        "timing_met": fmax is not None and fmax >= clock_mhz,
    }


def _publish(
    record: dict[str, Any], stored: Path, out: Path, top: Any, part: Device, clock_mhz: float
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    bitstream = out / record["bitstream_name"]
    for name in (*_ARTIFACTS, record["bitstream_name"]):
        if (stored / name).is_file():
            shutil.copyfile(stored / name, out / name)
    fmax = record["fmax_mhz"]
    interval = int(top.params["interval_cycles"])
    latency = int(top.params["latency_cycles"])
    result = {
        **record,
        "top": top.name,
        "kind": top.params.get("kind"),
        **_pe_entry(top),
        "baseline": top.params.get("baseline"),
        "source_hash": top.source_hash,
        "device": part.name,
        "part": part.part,
        "family": part.family,
        "clock_mhz": clock_mhz,
        "device_share": part.shares(record["resources"]),
        "logic_cells": placed_logic(part.family, record.get("utilization", {})),
        "interval_cycles": interval,
        "latency_cycles": latency,
        "images_per_second": fmax * 1e6 / interval if fmax else None,
        "latency_us": latency / fmax if fmax else None,
        "bitstream": str(bitstream),
        "report": str(out / "report.json"),
        "netlist": str(out / "netlist.v"),
        "tools": {tool: tool_version(tool) for tool in _tools(part)},
    }
    _write_results(out, result)
    return result


def _pe_entry(top: Any) -> dict[str, Any]:
    """``{"pe": [rows, cols]}`` for a PE array, nothing for a dataflow top."""
    if top.params.get("kind") != "pe_array":
        return {}
    config = top.params["config"]
    return {"pe": [int(config["rows"]), int(config["cols"])]}


#: nextpnr's logic cells per family: what a placed design really fills (a LUT and its
#: flip-flop share one; on ECP5 a CCU2C carry takes both halves of a slice).
LOGIC_CELLS = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


def placed_logic(family: str, utilization: dict[str, Any]) -> dict[str, Any] | None:
    """``{"cell", "used", "available", "share"}`` of the family's logic cells after
    packing and placement (nextpnr's report), or None when the report has none. On
    ECP5 it can be well above the synthesised LUT4 figure (a residual top: 35,475
    TRELLIS_COMB for 26,081 LUT4 counting each CCU2C as two), so it is the device's fill."""
    cell = LOGIC_CELLS[family]
    entry = utilization.get(cell)
    if not entry or not entry.get("available"):
        return None
    used, available = int(entry["used"]), int(entry["available"])
    return {"cell": cell, "used": used, "available": available, "share": used / available}


def _write_results(out: Path, result: dict[str, Any]) -> None:
    """``implementation.json`` in ``out``, atomically."""
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(out / RESULTS_NAME, write)


def implement_package(
    package: str | os.PathLike[str],
    device: str,
    *,
    rtl_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    baseline: str | None = None,
    folding: dict[str, int] | None = None,
    pipeline: int | Mapping[str, int] = 0,
    fit: Any = None,
    line_buffer: str | None = None,
    pe: tuple[int, int] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Implement ``package``'s dataflow top: the one in ``rtl_dir`` (checked to come from
    this package), else one generated into ``OUT_DIR/rtl`` with ``baseline``, ``folding``,
    ``pipeline`` (stages for every weight layer, or per layer name) and ``line_buffer``
    (default: the fit's, else :data:`rtl_gen.engines.DEFAULT_LINE_BUFFER`); ``options`` go
    to :func:`implement_rtl`. The results (and ``implementation.json``) also hold the
    resource model's prediction for the top (``predicted``, with its error against
    synthesis) and ``fit``, the :class:`inq_hw.implement.fit.Fit` that chose the folding,
    if any.

    Raises:
        ImplementError: RTL of another package.
    """
    from inq_hw.intmodel.package import package_hash

    get_device(device)
    package = Path(package)
    suffix = f"-{baseline}" if baseline else ""
    out = Path(out_dir) if out_dir is not None else package / f"implement-{device}{suffix}"
    if fit is not None and fit.arch == "pe-array":
        pe = fit.pe
    if rtl_dir is None and pe is not None:
        from inq_hw.implement.pe_array import generate_pe_array

        rtl = out / "rtl"
        generate_pe_array(package, rtl, rows=pe[0], cols=pe[1], baseline=baseline)
    elif rtl_dir is None:
        from rtl_gen.engines import DEFAULT_LINE_BUFFER

        rtl = out / "rtl"
        buffers = line_buffer or (fit.line_buffer if fit is not None else DEFAULT_LINE_BUFFER)
        _generate(package, rtl, baseline, folding, pipeline, buffers)
    else:
        rtl = Path(rtl_dir)
    top = dataflow_top(rtl)
    expected = package_hash(package)
    if top.source_hash != expected:
        raise ImplementError(
            f"The Verilog in {rtl} was generated from another package "
            f"(hash {str(top.source_hash)[:12]}…, this package {expected[:12]}…); regenerate it"
        )
    result = implement_rtl(rtl, device, out_dir=out, **options)
    result = {**result, "rtl": str(rtl), "predicted": _predicted(package, top, result, options)}
    if fit is not None:
        result["fit"] = fit.to_dict()
    _write_results(out, result)  # implement_rtl's, with the prediction and the fit added
    return result


def _predicted(
    package: Path, top: Any, result: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any] | None:
    """The resource model's figures for the top beside the synthesised ones: the relative
    error of each (:mod:`inq_hw.cost.fpga`; a PE array's :mod:`inq_hw.cost.fpga_pe`, None
    for the multiplier-PE twin, which it does not model)."""
    if top.params.get("kind") == "pe_array":
        from inq_hw.cost.fpga_pe import estimate_pe_array
        from rtl_gen.pe_program import ArrayConfig

        config = ArrayConfig(**top.params["config"])
        if config.pe != "shift":
            return None
        estimate = estimate_pe_array(config, result["family"])
    else:
        from inq_hw.implement.fit import predict_rtl

        estimate = predict_rtl(package, top, result["family"], dsp=options.get("dsp"))
    predicted = estimate.resources()
    synthesised = result["resources"]
    error = {
        key: (predicted[key] - synthesised[key]) / synthesised[key]
        for key in ("lut", "ff")
        if synthesised.get(key)
    }
    return {**predicted, "error": error}


def _generate(
    package: Path,
    rtl: Path,
    baseline: str | None,
    folding: dict[str, int] | None,
    pipeline: int | Mapping[str, int],
    line_buffer: str,
) -> None:
    from inq_hw.intmodel.package import load_package
    from rtl_gen.dataflow import generate_dataflow

    if isinstance(pipeline, int):
        layers = load_package(package).weight_layers()
        pipeline = {layer.name: pipeline for layer in layers} if pipeline else {}
    generate_dataflow(
        package,
        rtl,
        baseline=baseline,
        folding=folding,
        pipeline=dict(pipeline) or None,
        line_buffer=line_buffer,
    )


def _tools(part: Device) -> list[str]:
    return ["yosys", f"nextpnr-{part.family}", _PACKER[part.family][0]]
