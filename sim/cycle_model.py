"""Cycle model of the programmable PE array (:mod:`rtl_gen.pe_array`).

It reads the same :class:`~rtl_gen.pe_program.Program` the RTL is initialised with and
predicts, per instruction and in total, the exact number of clock cycles the RTL takes
(``o_cycles``), the PE utilisation and every memory access; tests compare it with
Amaranth's simulation of the RTL on several shapes. It is closed-form per layer (one
numpy reduction for the padded windows), so it predicts a network in well under a
millisecond per layer instead of simulating each cycle.

The timing it encodes (the controller's state machine)::

    every instruction        FETCH, DECODE                                   2 cycles
    MATMUL (conv, linear)    INIT; per tile: K compute + 1 flush + N drain   3 + T(K+1) + Cout·P
    VECTOR (pool, add, relu) INIT; one read per cycle                        3 + E·terms
    END                      FETCH, DECODE                                   2

with ``K = Cin·k²`` reduction steps, ``P = Ho·Wo`` output pixels, ``T = ⌈Cout/C⌉·⌈P/R⌉``
tiles, a tile draining its ``N`` valid outputs one per cycle through the single write
port (``Σ N = Cout·P``), ``E`` vector outputs. The last write of a layer overlaps the
next instruction's fetch.

Energy and area come from a small per-operation table (:class:`CostTable`): Horowitz'
45 nm figures (ISSCC 2014) scaled by bit-width as ARCHITECTURE.md prescribes (adder ∝ n,
multiplier ∝ n·m, barrel shifter ∝ n·log n) and the NanGate 45 nm open cell library for
multiplexers and flip-flops. The project's analytic cost model (``inq_hw.cost``) did not
exist when this was written; once it does, it should supply these numbers.

Example usage::

    config = fit_config(model, rows=8, cols=8)
    report = predict(compile_program(model, config))
    report.cycles, report.utilisation, report.layers[0].act_reads
    energy = estimate_energy(report)          # pJ per inference, by category
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rtl_gen.pe_program import OP_END, OP_MATMUL, OP_VECTOR, ArrayConfig, Instruction, Program

__all__ = [
    "FETCH_CYCLES",
    "CostTable",
    "CycleReport",
    "LayerCycles",
    "estimate_area",
    "estimate_energy",
    "predict",
]

#: Cycles of FETCH + DECODE, spent by every instruction.
FETCH_CYCLES = 2


@dataclass(frozen=True)
class LayerCycles:
    """What one instruction costs.

    Members
    -------
    layer, kind : str
    cycles : int
        Clock cycles from its FETCH to the next instruction's FETCH.
    tiles : int
        Array tiles (MATMUL) or 0.
    macs : int
        Useful multiply-accumulates (``Cout·P·K``; padding positions included, as in the
        golden convolution).
    pe_ops : int
        PE accumulate operations the array performs (every PE in every compute cycle:
        invalid rows and columns accumulate zeros).
    vector_ops : int
        Vector-unit reductions (one per operand read) and requantisations (one per output).
    act_reads, act_writes, weight_reads, bias_reads, program_reads : int
        Memory accesses: activation words, weight words (``cols`` lanes each), bias words,
        instruction words.
    """

    layer: str
    kind: str
    cycles: int
    tiles: int = 0
    macs: int = 0
    pe_ops: int = 0
    vector_ops: int = 0
    act_reads: int = 0
    act_writes: int = 0
    weight_reads: int = 0
    bias_reads: int = 0
    program_reads: int = 1

    def utilisation(self, pes: int) -> float:
        """Useful MACs over PE-cycles available during the instruction."""
        return self.macs / (pes * self.cycles) if self.cycles else 0.0


@dataclass(frozen=True)
class CycleReport:
    """The model's prediction for one program.

    Members
    -------
    config : ArrayConfig
    layers : tuple of LayerCycles
        One per instruction, ``END`` last.
    """

    config: ArrayConfig
    layers: tuple[LayerCycles, ...]

    @property
    def cycles(self) -> int:
        """Total cycles of one inference: what the RTL's ``o_cycles`` shows at ``o_done``."""
        return sum(layer.cycles for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def utilisation(self) -> float:
        """Useful MACs over all PE-cycles of the inference."""
        pes = self.config.rows * self.config.cols
        return self.macs / (pes * self.cycles) if self.cycles else 0.0

    def total(self, name: str) -> int:
        """Sum of a :class:`LayerCycles` count over the layers."""
        return int(sum(getattr(layer, name) for layer in self.layers))

    def to_dict(self) -> dict[str, Any]:
        pes = self.config.rows * self.config.cols
        return {
            "config": self.config.to_dict(),
            "cycles": self.cycles,
            "macs": self.macs,
            "utilisation": self.utilisation,
            "layers": [
                {**asdict(layer), "utilisation": layer.utilisation(pes)} for layer in self.layers
            ],
        }


def _in_bounds(size: int, out: int, kernel: int, stride: int, start: int) -> np.ndarray:
    """Per output coordinate, how many of the kernel's taps fall inside ``[0, size)``."""
    corner = start + stride * np.arange(out)[:, None] + np.arange(kernel)[None, :]
    return ((corner >= 0) & (corner < size)).sum(axis=1)


def _matmul(instr: Instruction, config: ArrayConfig) -> LayerCycles:
    rows, cols = config.rows, config.cols
    k, cout, pixels = instr["ksteps"], instr["cout"], instr["pixels"]
    out_h, out_w = instr["out_h"], instr["out_w"]
    tiles_o, tiles_p = -(-cout // cols), -(-pixels // rows)
    tiles = tiles_o * tiles_p
    stride = instr["wrap_y"]
    ys = _in_bounds(instr["in_h"], out_h, instr["kernel"], stride, instr["start_y"])
    xs = _in_bounds(instr["in_w"], out_w, instr["kernel"], stride, instr["start_x"])
    reads_per_tile_o = instr["cin"] * int(ys.sum()) * int(xs.sum())
    return LayerCycles(
        layer=instr.layer,
        kind=instr.kind,
        cycles=FETCH_CYCLES + 1 + tiles * (k + 1) + cout * pixels,
        tiles=tiles,
        macs=cout * pixels * k,
        pe_ops=rows * cols * tiles * k,
        vector_ops=cout * pixels,
        act_reads=tiles_o * reads_per_tile_o,
        act_writes=cout * pixels,
        weight_reads=tiles * k,
        bias_reads=cout * pixels,
    )


def _vector(instr: Instruction) -> LayerCycles:
    elements, terms = instr["elements"], instr["terms"]
    return LayerCycles(
        layer=instr.layer,
        kind=instr.kind,
        cycles=FETCH_CYCLES + 1 + elements * terms,
        vector_ops=elements * terms + elements,
        act_reads=elements * terms,
        act_writes=elements,
    )


def predict(program: Program) -> CycleReport:
    """Cycles, utilisation and memory accesses of one inference of ``program``."""
    layers = []
    for instr in program.instructions:
        if instr.op == OP_MATMUL:
            layers.append(_matmul(instr, program.config))
        elif instr.op == OP_VECTOR:
            layers.append(_vector(instr))
        else:
            assert instr.op == OP_END
            layers.append(LayerCycles(instr.layer, instr.kind, cycles=FETCH_CYCLES))
    return CycleReport(program.config, tuple(layers))


# --- energy and area ---------------------------------------------------------------------


@dataclass(frozen=True)
class CostTable:
    """Per-operation energy (pJ) and area (µm²) at 45 nm, with their sources.

    * Integer add: 0.03 pJ and 36 µm² for 8 bits (Horowitz, "Computing's energy problem",
      ISSCC 2014, Fig. 1.1.9); scaled ∝ n.
    * Integer multiply: 0.2 pJ and 282 µm² for 8×8 bits (same source); scaled ∝ n·m.
    * Multiplexer (2:1) and D flip-flop: NanGate 45 nm Open Cell Library areas MUX2_X1
      1.862 µm², DFF_X1 4.522 µm² against FA_X1 4.256 µm²; their energy is the adder
      bit's scaled by that area ratio (an assumption: switched capacitance ∝ area). A
      barrel shifter of n bits and s stages is n·s multiplexers (∝ n·log n).
    * SRAM read or write: 10 pJ per 64-bit access of an 8 KB array, 20 pJ at 32 KB,
      100 pJ at 1 MB (Horowitz); fitted as ``(10/64) pJ · sqrt(bytes / 8 KB)`` per bit
      (within 13% of all three points). Area: 0.346 µm² per 6T bit cell (Intel 45 nm,
      Mistry et al., IEDM 2007) times 2 for the periphery (an assumption).

    These are order-of-magnitude figures for comparing design points, not sign-off.
    """

    add_pj_per_bit: float = 0.03 / 8
    add_um2_per_bit: float = 36 / 8
    mult_pj_per_bit2: float = 0.2 / 64
    mult_um2_per_bit2: float = 282 / 64
    mux_to_fa_area: float = 1.862 / 4.256
    dff_to_fa_area: float = 4.522 / 4.256
    sram_pj_per_bit_8kb: float = 10 / 64
    sram_um2_per_bit: float = 0.346 * 2
    source: str = field(
        default="Horowitz ISSCC 2014 (45 nm); NanGate 45 nm OCL; Mistry IEDM 2007",
        compare=False,
    )

    def add(self, bits: int) -> float:
        return self.add_pj_per_bit * bits

    def mux(self, bits: int) -> float:
        return self.add_pj_per_bit * self.mux_to_fa_area * bits

    def reg(self, bits: int) -> float:
        return self.add_pj_per_bit * self.dff_to_fa_area * bits

    def mult(self, n: int, m: int) -> float:
        return self.mult_pj_per_bit2 * n * m

    def sram_bit(self, depth: int, width: int) -> float:
        """Energy per bit accessed in a ``depth × width`` SRAM."""
        return self.sram_pj_per_bit_8kb * math.sqrt(max(depth * width / 8, 1) / 8192)


DEFAULT_TABLE = CostTable()


def _shifter_stages(config: ArrayConfig) -> int:
    return max(config.weight_bits - 2, 0)


def pe_op_energy(config: ArrayConfig, table: CostTable = DEFAULT_TABLE) -> float:
    """pJ of one PE accumulate: shifter or multiplier, the add/subtract, the register."""
    acc = config.acc_bits
    tail = table.add(acc) + table.mux(acc) + table.reg(acc)  # adder, ±/clear select, register
    if config.pe == "mult":
        return table.mult(config.act_bits, config.weight_bits) + tail
    width = config.act_bits + (1 << max(config.weight_bits - 2, 0)) - 1
    return table.mux(width * _shifter_stages(config)) + table.mux(width) + tail


def estimate_energy(report: CycleReport, table: CostTable = DEFAULT_TABLE) -> dict[str, float]:
    """pJ per inference by category (``pe``, ``act_mem``, ``weight_mem``, ``bias_mem``,
    ``program_mem``, ``vector``) and ``total``."""
    cfg = report.config
    act = table.sram_bit(cfg.act_depth, cfg.act_bits) * cfg.act_bits
    lanes = cfg.cols * cfg.weight_bits
    energy = {
        "pe": report.total("pe_ops") * pe_op_energy(cfg, table),
        "act_mem": (report.total("act_reads") + report.total("act_writes")) * act,
        "weight_mem": report.total("weight_reads")
        * table.sram_bit(cfg.weight_depth, lanes)
        * lanes,
        "bias_mem": report.total("bias_reads")
        * table.sram_bit(cfg.bias_depth, cfg.acc_bits)
        * cfg.acc_bits,
        "program_mem": report.total("program_reads")
        * table.sram_bit(cfg.program_depth, cfg.word_bits)
        * cfg.word_bits,
        # One add (reduce or bias) and a requantising shift per vector op.
        "vector": report.total("vector_ops") * (table.add(cfg.acc_bits) + table.mux(cfg.acc_bits)),
    }
    energy["total"] = sum(energy.values())
    return energy


def estimate_area(config: ArrayConfig, table: CostTable = DEFAULT_TABLE) -> dict[str, float]:
    """µm² by category (``pes``, ``drain_mux``, ``memories``) and ``total``; the
    controller's counters are not counted (they do not scale with R×C)."""
    acc, pes = config.acc_bits, config.rows * config.cols
    fa, mux = table.add_um2_per_bit, table.add_um2_per_bit * table.mux_to_fa_area
    reg = table.add_um2_per_bit * table.dff_to_fa_area
    tail = acc * (fa + mux + reg)
    if config.pe == "mult":
        datapath = table.mult_um2_per_bit2 * config.act_bits * config.weight_bits
    else:
        width = config.act_bits + (1 << max(config.weight_bits - 2, 0)) - 1
        datapath = mux * width * (_shifter_stages(config) + 1)
    bits = (
        config.act_depth * config.act_bits
        + config.weight_depth * config.cols * config.weight_bits
        + config.bias_depth * acc
        + config.program_depth * config.word_bits
    )
    area = {
        "pes": pes * (datapath + tail),
        "drain_mux": max(pes - 1, 0) * acc * mux,
        "memories": bits * table.sram_um2_per_bit,
    }
    area["total"] = sum(area.values())
    return area
