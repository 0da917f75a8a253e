"""Cycle model of the programmable PE array (:mod:`rtl_gen.pe_array`).

It reads the same :class:`~rtl_gen.pe_program.Program` the RTL is initialised with and
predicts, per instruction and in total, the exact number of clock cycles the RTL takes
(``o_cycles``), the PE utilisation and every memory access; tests compare it with
Amaranth's simulation of the RTL on several shapes. It is closed-form per layer (one
numpy reduction for the padded windows), so it predicts a network in well under a
millisecond per layer instead of simulating each cycle.

The timing it encodes (the controller's state machine)::

    every instruction        FETCH, DECODE                                   2 cycles
    MATMUL (conv, linear)    INIT; per tile: K compute + F flush + N drain;  3 + T(K+F) + Cout·P + S
                             S settle
    VECTOR (pool, add, relu) INIT; one read per cycle; S settle              3 + E·terms + S
    END                      FETCH, DECODE                                   2

with ``K = Cin·k²`` reduction steps, ``P = Ho·Wo`` output pixels, ``T = ⌈Cout/C⌉·⌈P/R⌉``
tiles, ``F`` (:data:`~rtl_gen.pe_program.FLUSH_CYCLES`) cycles from a tile's last step to
its drain (the registered read request, the read, the accumulation), a tile draining its
``N`` valid outputs one per cycle through the single write port (``Σ N = Cout·P``), ``E``
vector outputs, ``S`` (:data:`~rtl_gen.pe_program.SETTLE_CYCLES`) cycles in which the
controller waits for the pipelined requantiser's last writes before the next fetch (the
last of them overlaps the next instruction's DECODE).

The cost model prices these counts in energy and area (:mod:`inq_hw.cost.pe_array`).

Example usage::

    config = fit_config(model, rows=8, cols=8)
    report = predict(compile_program(model, config))
    report.cycles, report.utilisation, report.layers[0].act_reads
    energy = inq_hw.cost.pe_array.estimate_energy(report)   # pJ per inference
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rtl_gen.pe_program import (
    FLUSH_CYCLES,
    OP_END,
    OP_MATMUL,
    OP_VECTOR,
    SETTLE_CYCLES,
    ArrayConfig,
    Instruction,
    Program,
)

__all__ = [
    "FETCH_CYCLES",
    "CycleReport",
    "LayerCycles",
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
        cycles=FETCH_CYCLES + 1 + tiles * (k + FLUSH_CYCLES) + cout * pixels + SETTLE_CYCLES,
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
        cycles=FETCH_CYCLES + 1 + elements * terms + SETTLE_CYCLES,
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
