"""The IP kit: a self-contained directory a hardware team drops into its own flow.

:func:`write_ip` exports a package's dataflow top behind AXI4-Stream ports
(:class:`~rtl_gen.axi_stream.AxiStreamWrapper`) as Verilog through
:func:`~rtl_gen.export.write_designs`, then writes everything else *from that manifest*,
so each width, port name, latency and file name in the kit comes from one place::

    DIR/
      <top>.core                 FuseSoC CAPI=2 core: targets lint, sim, synth_ice40, synth_ecp5
      README.md                  ports, data layout, latency and interval, how to run each target
      rtl/<top>.v                the wrapper and the network (Verilog-2005, from Yosys)
      rtl/<top>.vlt              Verilator waivers, each with its reason
      rtl/manifest.json          ports, layouts, latency, interval, package hash, file hashes
      tb/tb_<top>.v              plain-Verilog testbench ($readmemh, random gaps and stalls)
      tb/input.hex, expected.hex golden vectors: pixel beats and result beats
      tb/test_<top>.py, Makefile cocotb testbench on cocotbext-axi
      scripts/vivado.tcl, quartus.tcl
      constraints/<top>.xdc, .sdc, .pcf, .lpf
      openlane/config.json       OpenLane 2

The directory is written beside its destination and renamed into place, so a failed export
leaves the previous kit (or nothing); the text is deterministic, so two exports of one
package are byte-identical.

Example usage::

    x = golden_vectors(model, 8)["input"]
    info = write_ip("pkg", "out/ip", images=x)
    # fusesoc --cores-root out/ip run --target sim inq-hw:ip:<top>
"""

import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.errors import ConfigError
from inq_hw.intmodel import IntModel, run
from inq_hw.intmodel.package import load_package, package_hash
from rtl_gen import ipkit_files
from rtl_gen.axi_stream import AxiStreamWrapper, StreamLayout
from rtl_gen.dataflow import build_dataflow, dataflow_params
from rtl_gen.export import WAIVERS, Design, Manifest, RTLError, write_designs
from rtl_gen.fields import encode_fields
from rtl_gen.ipkit_files import Kit
from rtl_gen.names import verilog_identifier

__all__ = ["KIT_MARK", "ip_design", "ip_top_name", "write_ip"]

#: The manifest parameter ``kind`` of an IP kit's top: marks a directory as a kit that a
#: new export may replace.
KIT_MARK = "axis-ip"

#: The default clock period: a target for the constraint files, not a measured Fmax.
DEFAULT_CLOCK_NS = 10.0

_MAX_IMAGES = 1024


def ip_top_name(model: IntModel, baseline: str | None) -> str:
    """``<model>_axis`` (``<model>_mult8_axis`` for the twin) as a Verilog identifier."""
    spec = model.meta.get("model")
    stem = str(spec.get("name") or "inq") if isinstance(spec, dict) else "inq"
    return verilog_identifier(f"{stem}_mult8_axis" if baseline else f"{stem}_axis", taken=set())


def ip_design(
    model: IntModel,
    *,
    baseline: str | None = None,
    folding: Mapping[str, int] | None = None,
    pipeline: Mapping[str, int] | None = None,
    source_hash: str | None = None,
) -> Design:
    """The wrapped dataflow top as a :class:`~rtl_gen.export.Design`; its parameters add
    the two ``tdata`` layouts to the dataflow top's (formats, folding, latency, interval)."""
    top = build_dataflow(model, baseline=baseline, folding=folding, pipeline=pipeline)
    wrapper = AxiStreamWrapper(top)
    params = {
        **dataflow_params(wrapper.top, baseline),
        "kind": KIT_MARK,
        "s_axis": wrapper.s_layout.to_dict(),
        "m_axis": wrapper.m_layout.to_dict(),
    }
    name = ip_top_name(model, baseline)
    return Design(
        top=name,
        component=wrapper,
        header=wrapper.header_comment(name),
        latency=params["latency_cycles"],
        params=params,
        source_hash=source_hash,
    )


def write_ip(
    package: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    images: np.ndarray,
    baseline: str | None = None,
    folding: Mapping[str, int] | None = None,
    pipeline: Mapping[str, int] | None = None,
    clock_ns: float = DEFAULT_CLOCK_NS,
    seed: int = 1,
) -> dict[str, Any]:
    """Write the IP kit of ``package`` to ``out_dir`` (see the module docstring).

    Args:
        package: Integer model package directory.
        out_dir: The kit's directory; replaced if it holds an earlier kit.
        images: Integer input images for the golden vectors, ``(N, *input shape)``; the
            expected outputs are the golden executor's (the twin's for ``baseline``).
        baseline, folding, pipeline: As for the dataflow top.
        clock_ns: Clock period the constraint files and the OpenLane config ask for.
        seed: Default seed of the shipped testbenches' random gaps and stalls.

    Returns:
        What the kit holds: ``out``, ``top``, ``core``, ``files`` and the RTL manifest.

    Raises:
        ConfigError: Bad images, clock period or output directory; a top the dataflow
            generator refuses.
        RTLError: Yosys failed, or a file cannot be written.
    """
    package, out = Path(package), Path(out_dir)
    if isinstance(clock_ns, bool) or not isinstance(clock_ns, int | float) or not clock_ns > 0:
        raise ConfigError(f"Clock period must be a positive number of ns, not {clock_ns!r}")
    _check_destination(out)
    model = load_package(package)
    x, expected = _vectors(model, images, baseline)
    design = ip_design(
        model,
        baseline=baseline,
        folding=folding,
        pipeline=pipeline,
        source_hash=package_hash(package),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = Manifest.from_json(write_designs([design], staging / "rtl"))
        kit = _kit(manifest, float(clock_ns), len(x), seed)
        files = _write_kit(staging, kit, x, expected)
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"out": str(out), "top": kit.top, "core": kit.core, "files": files, **kit.info}


def _vectors(
    model: IntModel, images: np.ndarray, baseline: str | None
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(images)
    shape = tuple(model.input.shape)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or not 1 <= len(x) <= _MAX_IMAGES:
        raise ConfigError(
            f"Images must be 1 to {_MAX_IMAGES} integer arrays of shape {shape}, not {x.shape}"
        )
    logits = run(model, x.astype(np.int64), weights="baseline" if baseline else "po2")
    assert isinstance(logits, np.ndarray)
    return x.astype(np.int64), logits


def _kit(manifest: Manifest, clock_ns: float, images: int, seed: int) -> Kit:
    (top,) = manifest.tops
    params = top.params
    return Kit(
        top=top.name,
        core=f"inq-hw:ip:{top.name}:{_version()}",
        ports=top.ports,
        s_layout=_layout(params["s_axis"]),
        m_layout=_layout(params["m_axis"]),
        beats=params["input"]["beats"],
        images=images,
        latency=params["latency_cycles"],
        interval=params["interval_cycles"],
        clock_ns=clock_ns,
        seed=seed,
        waivers=dict(WAIVERS),
        info={"manifest": manifest.to_json(), "source_hash": top.source_hash},
    )


def _version() -> str:
    """inq-hw's version, the core's version (the package's metadata: importing ``inq_hw``
    itself would pull in the training side)."""
    try:
        return importlib.metadata.version("inq-hw")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _layout(obj: Mapping[str, Any]) -> StreamLayout:
    fields = tuple((f["name"], f["lsb"], f["bits"], f["signed"]) for f in obj["fields"])
    return StreamLayout(fields, obj["width"])


def _beats(values: np.ndarray, layout: StreamLayout) -> list[int]:
    """One ``tdata`` word per row of ``values`` (the layout's fields in order)."""
    words = []
    for row in values.tolist():
        word = 0
        for (_, lsb, bits, _), value in zip(layout.fields, row, strict=True):
            word |= encode_fields([value], bits) << lsb
        words.append(word)
    return words


def _hex_lines(words: list[int], width: int) -> str:
    digits = -(-width // 4)
    return "".join(f"{word:0{digits}x}\n" for word in words)


def _write_kit(root: Path, kit: Kit, x: np.ndarray, expected: np.ndarray) -> list[str]:
    """Every file besides the RTL; the kit's file list, relative to ``root``."""
    pixels = x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.ndim == 4 else x
    results = np.concatenate([expected, expected.argmax(axis=1)[:, None]], axis=1)
    texts = {
        "tb/input.hex": _hex_lines(_beats(pixels, kit.s_layout), kit.s_layout.width),
        "tb/expected.hex": _hex_lines(_beats(results, kit.m_layout), kit.m_layout.width),
        **ipkit_files.render(kit),
    }
    for name, text in texts.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted([*texts, "rtl/files.f", "rtl/manifest.json", f"rtl/{kit.top}.v"])


def _check_destination(out: Path) -> None:
    """Refuse to replace a directory that is not an earlier kit (it may hold user files)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"The IP output must be a directory, not the file {out}")
    if any(out.iterdir()) and not _is_kit(out):
        raise ConfigError(f"{out} is not empty and holds no earlier IP kit; choose another --out")


def _is_kit(directory: Path) -> bool:
    try:
        manifest = json.loads((directory / "rtl" / "manifest.json").read_text())
        return bool(manifest["tops"][0]["params"]["kind"] == KIT_MARK)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False


def _replace(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an earlier kit there goes aside first, then away."""
    os.chmod(staging, 0o755)  # mkdtemp makes it private; a kit is for sharing
    old = None
    try:
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(staging, out)
    except OSError as error:
        raise RTLError(f"Cannot write the IP kit to {out}: {error}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
