"""The text files of the IP kit, each rendered from a :class:`Kit` (the manifest's figures).

:func:`render` returns every file by its path in the kit: the FuseSoC core, the Verilator
waivers, both testbenches, the vendor scripts, the constraint templates, the OpenLane
config and the README. Nothing here measures or invents a figure: widths, ports, latency
and interval come from the RTL manifest, the clock period from the caller.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rtl_gen.axi_stream import StreamLayout
from rtl_gen.export import PortInfo

__all__ = ["Kit", "render"]


@dataclass(frozen=True)
class Kit:
    """What every file of the kit is written from."""

    top: str
    core: str
    ports: tuple[PortInfo, ...]
    s_layout: StreamLayout
    m_layout: StreamLayout
    beats: int  # pixels per image
    images: int  # golden vectors shipped
    latency: int
    interval: int
    clock_ns: float
    seed: int
    waivers: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rtl(self) -> str:
        return f"rtl/{self.top}.v"

    @property
    def tb(self) -> str:
        return f"tb_{self.top}"

    @property
    def mhz(self) -> str:
        return f"{1000.0 / self.clock_ns:.3f}".rstrip("0").rstrip(".")

    @property
    def max_cycles(self) -> int:
        """A cycle limit for the testbenches: generous for 25 % gaps and stalls."""
        return 1000 + self.images * (8 * self.beats + 4 * self.interval + 4 * self.latency)


def render(kit: Kit) -> dict[str, str]:
    """Every text file of the kit (besides RTL and vectors), by its path in the kit."""
    renderers: dict[str, Callable[[Kit], str]] = {
        f"{kit.top}.core": _core,
        f"rtl/{kit.top}.vlt": _waivers,
        f"tb/{kit.tb}.v": _verilog_tb,
        f"tb/test_{kit.top}.py": _cocotb_tb,
        "tb/Makefile": _cocotb_makefile,
        "scripts/vivado.tcl": _vivado,
        "scripts/quartus.tcl": _quartus,
        f"constraints/{kit.top}.xdc": _xdc,
        f"constraints/{kit.top}.sdc": _sdc,
        f"constraints/{kit.top}.pcf": _pcf,
        f"constraints/{kit.top}.lpf": _lpf,
        "openlane/config.json": _openlane,
        "README.md": _readme,
    }
    return {path: make(kit) for path, make in renderers.items()}


# --- FuseSoC and Verilator ----------------------------------------------------------------


def _core(kit: Kit) -> str:
    c = kit.top
    return f"""CAPI=2:
# FuseSoC core of {c}, written by inq-hw from rtl/manifest.json.
name: {kit.core}
description: INQ power-of-two CNN ({kit.top}) behind AXI4-Stream, multiplier-free

filesets:
  rtl:
    files:
      - rtl/{c}.v
    file_type: verilogSource
  waivers:
    files:
      - rtl/{c}.vlt
    file_type: vlt
  tb:
    files:
      - tb/{kit.tb}.v: {{file_type: verilogSource}}
      - tb/input.hex: {{file_type: user, copyto: input.hex}}
      - tb/expected.hex: {{file_type: user, copyto: expected.hex}}
  ice40_pins:
    files:
      - constraints/{c}.pcf
    file_type: PCF
  ecp5_pins:
    files:
      - constraints/{c}.lpf
    file_type: LPF

targets:
  default: &default
    filesets: [rtl]
    toplevel: {c}

  lint:
    <<: *default
    description: verilator --lint-only -Wall on the RTL (clean with the shipped waivers)
    filesets: [rtl, waivers]
    default_tool: verilator
    tools:
      verilator:
        mode: lint-only
        verilator_options: [-Wall]

  sim:
    description: the self-checking testbench (tb/{kit.tb}.v) on Icarus or Verilator
    filesets: [rtl, "tool_verilator? (waivers)", tb]
    toplevel: {kit.tb}
    default_tool: icarus
    tools:
      icarus:
        iverilog_options: [-g2005]
      verilator:
        mode: binary
        verilator_options: [--timing]

  synth_ice40:
    <<: *default
    description: Yosys synthesis for iCE40 UP5K (set pnr to next with a filled-in .pcf)
    filesets: [rtl, ice40_pins]
    flow: icestorm
    flow_options:
      pnr: none
      yosys_synth_options: [-dsp]
      nextpnr_options: [--up5k, --package, sg48, --freq, {kit.mhz}]

  synth_ecp5:
    <<: *default
    description: Yosys synthesis for ECP5 (for place and route, flow trellis with the .lpf)
    filesets: [rtl]
    flow: generic
    flow_options:
      tool: yosys
      arch: ecp5
      output_format: json
"""


def _waivers(kit: Kit) -> str:
    lines = [
        "`verilator_config",
        f"// Lint waivers for rtl/{kit.top}.v, which Amaranth wrote through Yosys.",
        "// Each rule is an idiom of that generated Verilog, not a design fault:",
    ]
    for rule in sorted(kit.waivers):
        lines.append(f"// {rule}: {kit.waivers[rule]}")
        lines.append(f'lint_off -rule {rule} -file "*/{kit.top}.v"')
    return "\n".join(lines) + "\n"


# --- testbenches --------------------------------------------------------------------------


def _verilog_tb(kit: Kit) -> str:
    s, m = kit.s_layout.width, kit.m_layout.width
    return f"""// Self-checking testbench of {kit.top}: plain Verilog, no Python needed.
// Streams tb/input.hex ({kit.images} images of {kit.beats} pixel beats, tlast on each
// image's last pixel) with random idle cycles, stalls m_axis_tready at random, and checks
// every result beat against tb/expected.hex (the golden executor's logits and class), the
// AXI4-Stream rule that a stalled tvalid/tdata holds, tlast on each result, no beat lost
// or duplicated, and frame_error low. Seed: +seed=N (default {kit.seed}).
// Ends with "PASS" and $finish, or $fatal (non-zero exit) naming the first failure.
module {kit.tb};
  localparam integer IMAGES = {kit.images};
  localparam integer BEATS = {kit.beats};
  localparam integer MAX_CYCLES = {kit.max_cycles};

  reg aclk = 1'b0;
  reg aresetn = 1'b0;
  reg [{s - 1}:0] s_axis_tdata = {s}'d0;
  reg s_axis_tvalid = 1'b0;
  reg s_axis_tlast = 1'b0;
  wire s_axis_tready;
  wire [{m - 1}:0] m_axis_tdata;
  wire m_axis_tvalid;
  reg m_axis_tready = 1'b0;
  wire m_axis_tlast;
  wire frame_error;

  reg [{s - 1}:0] pixels [0:IMAGES*BEATS-1];
  reg [{m - 1}:0] expected [0:IMAGES-1];
  reg [{m - 1}:0] held_data;
  reg held = 1'b0;
  reg [31:0] dice;
  integer seed;
  integer first_seed;
  integer sent = 0;
  integer received = 0;
  integer cycle = 0;
  integer quiet = 0;

  {kit.top} dut (
    .aclk(aclk), .aresetn(aresetn),
    .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid),
    .s_axis_tready(s_axis_tready), .s_axis_tlast(s_axis_tlast),
    .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready), .m_axis_tlast(m_axis_tlast),
    .frame_error(frame_error)
  );

  always #5 aclk = ~aclk;

  initial begin
    $readmemh("input.hex", pixels);
    $readmemh("expected.hex", expected);
    if (!$value$plusargs("seed=%d", seed)) seed = {kit.seed};
    first_seed = seed;
    repeat (3) @(negedge aclk);
    aresetn = 1'b1;
  end

  // One process on the rising edge: check the transfers this edge makes, then drive the
  // next cycle with non-blocking assignments (after the core sampled its inputs). A pixel
  // once offered stays until taken, as AXI4-Stream requires.
  always @(posedge aclk) if (aresetn) begin
    cycle = cycle + 1;
    if (cycle > MAX_CYCLES)
      $fatal(1, "FAIL: timeout after %0d cycles, %0d of %0d results", cycle, received, IMAGES);
    if (held && (!m_axis_tvalid || m_axis_tdata != held_data))
      $fatal(1, "FAIL: result %0d changed while stalled", received);
    held = m_axis_tvalid && !m_axis_tready;
    held_data = m_axis_tdata;
    if (m_axis_tvalid && m_axis_tready) begin
      if (received >= IMAGES)
        $fatal(1, "FAIL: an extra result beat %h", m_axis_tdata);
      if (m_axis_tdata !== expected[received])
        $fatal(1, "FAIL: image %0d: expected %h, seen %h", received, expected[received],
               m_axis_tdata);
      if (!m_axis_tlast)
        $fatal(1, "FAIL: image %0d: tlast low on its result beat", received);
      received = received + 1;
    end
    if (frame_error)
      $fatal(1, "FAIL: frame_error raised");
    if (s_axis_tvalid && s_axis_tready) sent = sent + 1;
    if (!s_axis_tvalid || s_axis_tready) begin
      dice = $random(seed);
      if (sent < IMAGES*BEATS && dice[1:0] != 2'd0) begin
        s_axis_tvalid <= 1'b1;
        s_axis_tdata <= pixels[sent];
        s_axis_tlast <= (sent % BEATS) == BEATS - 1;
      end else
        s_axis_tvalid <= 1'b0;
    end
    dice = $random(seed);
    m_axis_tready <= received >= IMAGES || dice[1:0] != 2'd0;
    if (received == IMAGES) begin
      quiet = quiet + 1;
      if (quiet == 4 * BEATS + 16) begin
        $display("PASS: %0d images bit-exact in %0d cycles (seed %0d)", IMAGES, cycle, first_seed);
        $finish;
      end
    end
  end
endmodule
"""


def _cocotb_tb(kit: Kit) -> str:
    return f'''"""cocotb testbench of {kit.top} on cocotbext-axi (run: make -C tb SIM=icarus).

AxiStreamSource sends each image of tb/input.hex as one frame (tlast on its last pixel)
with random idle cycles; AxiStreamSink takes the results with random backpressure; every
result must equal tb/expected.hex (the golden executor's logits and class), one beat per
image, none extra, and frame_error must stay low. SEED=N varies the pauses.
"""

import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiStreamBus, AxiStreamSink, AxiStreamSource

HERE = Path(__file__).resolve().parent
BEATS = {kit.beats}
S_BYTES = {kit.s_layout.width // 8}
M_BYTES = {kit.m_layout.width // 8}
PAUSE = 0.3  # probability of an idle input cycle and of a stalled output cycle


def _words(name):
    return [int(line, 16) for line in (HERE / name).read_text().split()]


def _pauses(rng):
    while True:
        yield rng.random() < PAUSE


@cocotb.test()
async def stream_images(dut):
    rng = random.Random(int(os.environ.get("SEED", "{kit.seed}")))
    pixels, expected = _words("input.hex"), _words("expected.hex")
    Clock(dut.aclk, 10, unit="ns").start()
    dut.aresetn.value = 0
    dut.s_axis_tvalid.value = 0  # defined before the source and sink drive them
    dut.m_axis_tready.value = 0
    bus = {{"clock": dut.aclk, "reset": dut.aresetn, "reset_active_level": False}}
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), **bus)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), **bus)
    source.set_pause_generator(_pauses(rng))
    sink.set_pause_generator(_pauses(rng))
    await ClockCycles(dut.aclk, 3)
    dut.aresetn.value = 1
    for n in range(len(expected)):
        image = pixels[n * BEATS : (n + 1) * BEATS]
        await source.send(b"".join(p.to_bytes(S_BYTES, "little") for p in image))
    for n, want in enumerate(expected):
        frame = await sink.recv()
        seen = int.from_bytes(bytes(frame.tdata), "little")
        assert len(frame.tdata) == M_BYTES, f"image {{n}}: a result of {{len(frame.tdata)}} bytes"
        assert seen == want, f"image {{n}}: expected {{want:x}}, seen {{seen:x}}"
    await ClockCycles(dut.aclk, 4 * BEATS + 16)
    assert sink.empty(), "an extra result beat"
    assert int(dut.frame_error.value) == 0, "frame_error raised"
'''


def _cocotb_makefile(kit: Kit) -> str:
    return f"""# cocotb testbench of {kit.top}: make SIM=icarus (or SIM=verilator) here.
SIM ?= icarus
TOPLEVEL_LANG = verilog
VERILOG_SOURCES = $(abspath ../rtl/{kit.top}.v)
COCOTB_TOPLEVEL = {kit.top}
COCOTB_TEST_MODULES = test_{kit.top}
ifeq ($(SIM),icarus)
# cocotb compiles with -g2012; the RTL is Verilog-2005 (under -g2012 Icarus does not run
# Yosys' combinational always @* blocks at time 0 and they stay X); the last -g wins.
COMPILE_ARGS += -g2005
endif
ifeq ($(SIM),verilator)
EXTRA_ARGS += $(abspath ../rtl/{kit.top}.vlt)
endif
include $(shell cocotb-config --makefiles)/Makefile.sim
"""


# --- vendor scripts and constraints -------------------------------------------------------


def _vivado(kit: Kit) -> str:
    return f"""# Vivado non-project flow for {kit.top}, out of context (the IP has no pins yet).
# vivado -mode batch -source scripts/vivado.tcl [-tclargs PART]   (default xc7a35tcpg236-1)
set root [file dirname [file dirname [file normalize [info script]]]]
set part [expr {{[llength $argv] ? [lindex $argv 0] : "xc7a35tcpg236-1"}}]
read_verilog $root/rtl/{kit.top}.v
read_xdc -mode out_of_context $root/constraints/{kit.top}.xdc
synth_design -top {kit.top} -part $part -mode out_of_context
opt_design
place_design
route_design
report_utilization -file {kit.top}_utilization.rpt
report_timing_summary -file {kit.top}_timing.rpt
"""


def _quartus(kit: Kit) -> str:
    return f"""# Quartus project for {kit.top}: quartus_sh -t scripts/quartus.tcl [FAMILY DEVICE]
# (default Cyclone V 5CSEMA5F31C6). Writes {kit.top}.qpf/.qsf here and compiles.
set root [file dirname [file dirname [file normalize [info script]]]]
set family [expr {{[llength $argv] > 0 ? [lindex $argv 0] : "Cyclone V"}}]
set device [expr {{[llength $argv] > 1 ? [lindex $argv 1] : "5CSEMA5F31C6"}}]
package require ::quartus::project
package require ::quartus::flow
project_new {kit.top} -overwrite
set_global_assignment -name FAMILY $family
set_global_assignment -name DEVICE $device
set_global_assignment -name TOP_LEVEL_ENTITY {kit.top}
set_global_assignment -name VERILOG_FILE $root/rtl/{kit.top}.v
set_global_assignment -name SDC_FILE $root/constraints/{kit.top}.sdc
set_global_assignment -name VIRTUAL_PIN ON -to *
execute_flow -compile
project_close
"""


def _clock_lines(kit: Kit) -> str:
    period = f"{kit.clock_ns:.3f}"
    return f"create_clock -name aclk -period {period} [get_ports aclk]\n"


def _xdc(kit: Kit) -> str:
    return (
        f"# Timing of {kit.top}: aclk at {kit.clock_ns} ns (a target, not a measured Fmax).\n"
        + _clock_lines(kit)
        + "# Add set_input_delay/set_output_delay and pins (PACKAGE_PIN, IOSTANDARD) for your\n"
        "# board; in a block design the IP's AXI4-Stream ports connect to a DMA instead.\n"
    )


def _sdc(kit: Kit) -> str:
    return (
        f"# Timing of {kit.top} for Quartus: aclk at {kit.clock_ns} ns (a target).\n"
        + _clock_lines(kit)
        + "derive_clock_uncertainty\n"
    )


def _port_bits(kit: Kit) -> list[str]:
    bits = []
    for port in kit.ports:
        bits += [port.name] if port.width == 1 else [f"{port.name}[{b}]" for b in range(port.width)]
    return bits


def _pcf(kit: Kit) -> str:
    lines = [
        f"# iCE40 pin template for {kit.top}: replace each ? by a package pin and uncomment.",
        "# The ports are wider than most iCE40 packages: on a board, put the IP behind your",
        "# own top (a UART, SPI or a soft CPU) and pin that instead.",
        f"set_frequency aclk {kit.mhz}",
    ]
    lines += [f"# set_io {bit} ?" for bit in _port_bits(kit)]
    return "\n".join(lines) + "\n"


def _lpf(kit: Kit) -> str:
    lines = [
        f"# ECP5 pin template for {kit.top}: replace each ? by a site and uncomment.",
        f'FREQUENCY PORT "aclk" {kit.mhz} MHZ;',
    ]
    for bit in _port_bits(kit):
        lines += [f'# LOCATE COMP "{bit}" SITE "?";', f'# IOBUF PORT "{bit}" IO_TYPE=LVCMOS33;']
    return "\n".join(lines) + "\n"


def _openlane(kit: Kit) -> str:
    config = {
        "DESIGN_NAME": kit.top,
        "VERILOG_FILES": [f"dir::../{kit.rtl}"],
        "CLOCK_PORT": "aclk",
        "CLOCK_PERIOD": kit.clock_ns,
        "FP_CORE_UTIL": 40,
        "PNR_SDC_FILE": f"dir::../constraints/{kit.top}.sdc",
        "SIGNOFF_SDC_FILE": f"dir::../constraints/{kit.top}.sdc",
    }
    return json.dumps(config, indent=2) + "\n"


# --- README -------------------------------------------------------------------------------


def _port_rows(kit: Kit) -> list[str]:
    what = {
        "aclk": "clock (rising edge)",
        "aresetn": "reset, active low, synchronous to aclk",
        "s_axis_tdata": "one pixel, all channels (layout below)",
        "s_axis_tvalid": "pixel offered",
        "s_axis_tready": "pixel taken this cycle",
        "s_axis_tlast": "last pixel of an image (checked, see frame_error)",
        "m_axis_tdata": "one image's logits and class (layout below)",
        "m_axis_tvalid": "result offered; held with its data until taken",
        "m_axis_tready": "result taken this cycle",
        "m_axis_tlast": "high on every result beat (one beat per image)",
        "frame_error": "sticky: a tlast disagreed with the pixel count (cleared by aresetn)",
    }
    rows = ["| port | dir | bits | meaning |", "|---|---|---|---|"]
    for p in kit.ports:
        rows.append(f"| `{p.name}` | {p.direction} | {p.width} | {what.get(p.name, '')} |")
    return rows


def _layout_rows(layout: StreamLayout) -> list[str]:
    rows = ["| bits | field | type |", "|---|---|---|"]
    for name, lsb, bits, signed in layout.fields:
        kind = f"{'signed' if signed else 'unsigned'} {bits}-bit"
        rows.append(f"| [{lsb + bits - 1}:{lsb}] | {name} | {kind} |")
    if layout.used < layout.width:
        rows.append(f"| [{layout.width - 1}:{layout.used}] | padding | zero |")
    return rows


def _readme(kit: Kit) -> str:
    c, core = kit.top, kit.core
    vlnv = core.rsplit(":", 1)[0]
    lines = [
        f"# {c}: an INQ CNN as an AXI4-Stream IP core",
        "",
        "Written by `inq-hw ip`; every figure comes from `rtl/manifest.json`. The network's",
        "weights are constants (0 or ±2^k): the logic is shifts and adds, no multipliers.",
        "",
        f"FuseSoC core `{core}`; top module `{c}` in `{kit.rtl}` (Verilog-2005).",
        "",
        "## Ports",
        "",
        *_port_rows(kit),
        "",
        "Framing: the core counts pixels (one image is "
        f"{kit.beats} beats, raster order); `s_axis_tlast` is checked, not obeyed. A pixel "
        "whose `tlast` is misplaced (early, late or missing) is still taken as the counted "
        "pixel it is and raises the sticky `frame_error`: results after it are misaligned; "
        "reset the core.",
        "",
        f"## Data layout: `s_axis_tdata` ({kit.s_layout.width} bits)",
        "",
        *_layout_rows(kit.s_layout),
        "",
        f"## Data layout: `m_axis_tdata` ({kit.m_layout.width} bits)",
        "",
        *_layout_rows(kit.m_layout),
        "",
        "`class` is the index of the largest logit (the lowest among equal ones).",
        "",
        "## Timing",
        "",
        f"- Latency: {kit.latency} cycles from the first pixel taken to the result offered;",
        f"- interval: {kit.interval} cycles per image, without stalls or idle input cycles.",
        f"- Clock constraint: {kit.clock_ns} ns ({kit.mhz} MHz), a target in the constraint "
        "files and `openlane/config.json`, not a measured Fmax.",
        "- Resources and Fmax: not measured for this export.",
        "",
        "## Targets",
        "",
        "```sh",
        f"fusesoc --cores-root . run --target lint {vlnv}            # verilator -Wall",
        f"fusesoc --cores-root . run --target sim {vlnv}             # Icarus",
        f"fusesoc --cores-root . run --target sim --tool verilator {vlnv}",
        f"fusesoc --cores-root . run --target synth_ice40 {vlnv}     # native Yosys",
        f"fusesoc --cores-root . run --target synth_ecp5 {vlnv}",
        "make -C tb SIM=icarus                                  # cocotb + cocotbext-axi",
        f"iverilog -o tb.vvp tb/{kit.tb}.v {kit.rtl} && (cd tb && vvp -n ../tb.vvp)",
        "vivado -mode batch -source scripts/vivado.tcl",
        "quartus_sh -t scripts/quartus.tcl",
        "```",
        "",
        f"The testbenches stream {kit.images} golden images (`tb/input.hex`) with random "
        "idle cycles and backpressure and check every result bit against `tb/expected.hex`, "
        "the integer model's outputs. `rtl/"
        f"{c}.vlt` waives the Verilator -Wall rules that fire on Yosys-written Verilog, each "
        "with its reason. `openlane/config.json` starts an OpenLane 2 run "
        "(`openlane openlane/config.json`).",
        "",
        "The synth targets run Yosys through edalize's Tcl script: they need a native "
        "`yosys` with Tcl (Debian's 0.23 works; YoWASP's has no `tcl` command). They stop "
        "after synthesis and print the cell counts (also in `yosys.log` of the build "
        "directory); the ports are wider than a package's pins, so place and route needs "
        "the core inside a larger design. iCE40: flow icestorm with `pnr: none`; ECP5: "
        "flow generic with Yosys, because edalize 0.6.8's trellis flow runs nextpnr even "
        "with `pnr: none`.",
    ]
    return "\n".join(lines) + "\n"
