"""The programmable PE array: R×C shift-MAC PEs (or their multiplier twins), on-chip
memories initialised with a compiled program, and a controller that runs the layers of an
integer model package one after another (ARCHITECTURE.md, "Programmable PE array").

Datapath. A MATMUL instruction (Conv2d, Linear) folds the layer onto the array in tiles of
R output pixels (rows, raster order) × C output channels (columns). Each compute cycle
every row reads one activation through its own read port of the activation memory (zero
where the window leaves the image: padding) and every column gets one lane of a weight
word (C lanes of b-bit codes, or in the twin signed integers as wide as the package's
uniform twin, ``ArrayConfig.weight_bits``); PE (r, c) accumulates
``x_r · w_c`` (:class:`~rtl_gen.pe.ShiftMAC`: a barrel shift and one adder). After the
``Cin·k²`` steps the tile drains one output per cycle: accumulator + bias, then the
requantiser (round half up by a runtime shift, or a left shift, then saturation to
``[lo, hi]``: exactly :func:`inq_hw.intmodel.arith.requantize`), into the activation
memory. A VECTOR instruction (MaxPool, AvgPool, ReLU, residual Add) reads one operand per
cycle through row 0's port, aligns it by a shift, reduces it (sum or max) and requantises
each output the same way. :mod:`rtl_gen.pe_program` computes every address, loop bound
and shift, so the controller has counters and adders only; :mod:`sim.cycle_model`
predicts its cycle count exactly.

Pipeline. The write path is registered for the clock (on an iCE40 UP5K the one-cycle path
from the read data through alignment, reduction and requantiser into the write data
limited the 2-bit digits-cnn's 1×16 array to 12.8 MHz): the aligned operand, the reduced
value (or the drained sum), the requantiser after its rounding add and after its shift
(:data:`REQUANT_STAGES`) each have a register, so an output is written
:data:`VECTOR_WRITE_LATENCY` cycles after its last operand's read is issued (a drained
output a cycle sooner). The requantiser's parameters are held from the instruction's
INIT; after its last issue the controller waits
:data:`~rtl_gen.pe_program.SETTLE_CYCLES` cycles, so the next instruction (or the host,
after ``o_done``) never reads a word still in flight. The drain's last-of-tile tests and
the next tile's row positions come from registers loaded ahead of the drain.

Ports are plain signals so that a cocotb testbench can drive the Verilog top::

    1. write the input image: i_wr_en=1, i_wr_addr=program.input.base + i,
       i_wr_data=x_int[i] (C, H, W order), one word per cycle, while o_busy is low;
    2. pulse i_start for one cycle; o_busy rises on the next edge;
    3. wait for o_done (level, until the next i_start); o_cycles then holds the cycles
       the inference took (equal to sim.cycle_model.predict(program).cycles);
    4. read the output: i_rd_addr=program.output.base + i; o_rd_data shows that word one
       clock edge later (only while o_busy is low).

The program (instructions, weights, bias, term table) is memory initialisation, so the
same generator builds arrays for any package that fits the parameters.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from rtl_gen.pe import MultMAC, ShiftMAC
from rtl_gen.pe_program import (
    FIELDS,
    FLUSH_CYCLES,
    OP_END,
    OP_MATMUL,
    REDUCE_MAX,
    SETTLE_CYCLES,
    Program,
    instruction_word,
)

__all__ = ["ALIGN_BITS", "CYCLE_BITS", "PEArray", "SimResult", "simulate"]

#: Width of ``o_cycles``.
CYCLE_BITS = 32
#: Width of a term's alignment shift.
ALIGN_BITS = 5
#: Register stages of the requantiser (after the rounding add and after the shift; the
#: saturation feeds the write port).
REQUANT_STAGES = 2
#: Cycles from a VECTOR operand's issue to the write of the output it ends (the write is
#: in that cycle): the read, the aligned operand's register, the reduced value's, the
#: requantiser's stages.
VECTOR_WRITE_LATENCY = 3 + REQUANT_STAGES
#: Instruction fields whose value less one the counters compare with.
_LOOP_BOUNDS = ("ksteps", "kernel", "terms", "elements", "out_w", "out_h")
#: The state after an instruction's last issue: the settle cycles, then FETCH.
_AFTER_ISSUE = "SETTLE_0" if SETTLE_CYCLES else "FETCH"
# The controller's settle cycles must cover the longest write (MATMUL's drain is a cycle
# shorter): the last write lands in the cycle before the host may read (o_done).
assert SETTLE_CYCLES == VECTOR_WRITE_LATENCY - 2


def _addr_bits(depth: int) -> int:
    return max(ceil_log2(depth), 1)


@dataclass
class _Ports:
    """The memory ports the array's parts share."""

    act_rd: list[Any]
    act_wr: Any
    weight_rd: Any
    bias_rd: Any
    program_rd: Any
    term_rd: Any


@dataclass
class _State:
    """The controller's registers and strobes; ``computing``, ``draining``, ``vec_issue``
    and ``fetching`` are the controller's phase strobes (comb), the rest registers."""

    pc: Signal
    busy: Signal
    # Matmul: row positions (y, x, pixel address) of the current pixel tile.
    row_y: list[Signal]
    row_x: list[Signal]
    row_pa: list[Signal]
    # The next pixel tile's row positions, registered while the tile computes and drains.
    next_y: list[Signal]
    next_x: list[Signal]
    next_pa: list[Signal]
    # Matmul tile bookkeeping.
    pixels_left: Signal
    couts_left: Signal
    # Loaded with them: the tile's last valid row and column, whether another pixel tile
    # (output-channel tile) follows.
    rows_last: Signal
    cols_last: Signal
    more_pixels: Signal
    more_couts: Signal
    weight_tile: Signal
    bias_tile: Signal
    out_tile: Signal
    out_chan: Signal
    drain_col_base: Signal
    # Reduction step (ci, kh, kw) and its input offset.
    step: Signal
    kw: Signal
    kh: Signal
    koff: Signal
    # Drain.
    drain_row: Signal
    drain_col: Signal
    pe_valid: Signal
    pe_clear: Signal
    row_read: list[Signal]
    row_read_addr: list[Signal]
    row_inbounds_d: list[Signal]
    drain_acc: Signal
    drain_write: Signal
    drain_waddr: Signal
    # Vector unit.
    vec_base: Signal
    vec_term: Signal
    vec_term_addr: Signal
    vec_x: Signal
    vec_y: Signal
    vec_element: Signal
    vec_out_addr: Signal
    vec_operand_valid: Signal
    vec_first: Signal
    vec_last: Signal
    vec_align: Signal
    vec_aligned: Signal
    vec_reduce_valid: Signal
    vec_reduce_first: Signal
    vec_reduce_last: Signal
    vec_reduced: Signal
    # Requantiser input (a drained sum or a reduced output) and its write address; the
    # instruction's requantisation, held from its INIT until the next one's.
    rq_value: Signal
    rq_valid: Signal
    rq_addr: Signal
    rq_rshift: Signal
    rq_lshift: Signal
    rq_half: Signal
    rq_lo: Signal
    rq_hi: Signal
    # Phase strobes.
    computing: Signal
    draining: Signal
    vec_issue: Signal
    fetching: Signal
    # The instruction's loop bounds less one, held from its DECODE: the counters' tests
    # compare with registers, not with a subtraction from the instruction word.
    last: dict[str, Signal]
    # Set by the parts that derive them.
    term: Any = None
    accs: Any = None


class PEArray(wiring.Component):
    """An R×C array with its memories and controller, initialised with ``program``.

    Parameters
    ----------
    program : Program
        From :func:`rtl_gen.pe_program.compile_program`; its ``config`` gives R, C, the
        PE kind, the widths and the memory sizes.
    image : sequence of int, optional
        Initial activation memory contents (e.g. an input at ``program.input.base``).

    Members
    -------
    i_start : In(1)
        Start an inference (sampled while ``o_busy`` is low).
    o_busy : Out(1)
        The controller is running.
    o_done : Out(1)
        An inference has finished (until the next ``i_start``).
    o_cycles : Out(32)
        Cycles of the current or last inference.
    i_wr_en, i_wr_addr, i_wr_data : In(1), In(addr), In(signed(act_bits))
        Host write into the activation memory (ignored while busy).
    i_rd_addr : In(addr)
        Host read address (while not busy).
    o_rd_data : Out(signed(act_bits))
        The word at ``i_rd_addr`` one clock edge earlier.

    Raises
    ------
    TypeError
        If ``program`` is not a :class:`Program`.
    ValueError
        If ``image`` does not fit the activation memory.
    """

    def __init__(self, program: Program, *, image: Sequence[int] | None = None) -> None:
        if not isinstance(program, Program):
            raise TypeError(f"program must be a Program, not {program!r}")
        cfg = program.config
        image = [] if image is None else [int(v) for v in image]
        if len(image) > cfg.act_depth:
            raise ValueError(
                f"Image must fit the {cfg.act_depth}-word activation memory, not {len(image)}"
            )
        self.program, self.config, self._image = program, cfg, image
        addr = _addr_bits(cfg.act_depth)
        super().__init__(
            {
                "i_start": In(1),
                "o_busy": Out(1),
                "o_done": Out(1),
                "o_cycles": Out(CYCLE_BITS),
                "i_wr_en": In(1),
                "i_wr_addr": In(addr),
                "i_wr_data": In(signed(cfg.act_bits)),
                "i_rd_addr": In(addr),
                "o_rd_data": Out(signed(cfg.act_bits)),
            }
        )

    # --- memories ----------------------------------------------------------------------

    def _memories(self, m: Module) -> dict[str, Memory]:
        cfg, prog = self.config, self.program
        fb = cfg.field_bits
        term_mask = (1 << fb) - 1
        mems = {
            "act": Memory(shape=signed(cfg.act_bits), depth=cfg.act_depth, init=self._image),
            "weight": Memory(
                shape=unsigned(cfg.cols * cfg.weight_bits),
                depth=cfg.weight_depth,
                init=list(prog.weight_words),
            ),
            "bias": Memory(shape=signed(cfg.acc_bits), depth=cfg.bias_depth, init=prog.bias),
            "program": Memory(
                shape=unsigned(cfg.word_bits),
                depth=cfg.program_depth,
                init=[instruction_word(i, fb) for i in prog.instructions],
            ),
            "term": Memory(
                shape=unsigned(fb + ALIGN_BITS),
                depth=cfg.term_depth,
                init=[(off & term_mask) | (align << fb) for off, align in prog.terms],
            ),
        }
        for name, mem in mems.items():
            m.submodules[f"{name}_mem"] = mem
        return mems

    def _pes(self, m: Module) -> list[list[Any]]:
        cfg = self.config
        grid = []
        for r in range(cfg.rows):
            row = []
            for c in range(cfg.cols):
                if cfg.pe == "mult":
                    pe: Any = MultMAC(
                        act_bits=cfg.act_bits,
                        act_signed=True,
                        weight_bits=cfg.weight_bits,
                        acc_bits=cfg.acc_bits,
                    )
                else:
                    pe = ShiftMAC(
                        act_bits=cfg.act_bits,
                        act_signed=True,
                        weight_bits=cfg.weight_bits,
                        acc_bits=cfg.acc_bits,
                    )
                m.submodules[f"pe_{r}_{c}"] = pe
                row.append(pe)
            grid.append(row)
        return grid

    # --- the requantiser ---------------------------------------------------------------

    def _requant_parameters(self, m: Module, s: "_State", ins: Any) -> None:
        """Hold the instruction's shifts, rounding constant and bounds (at its INIT): its
        last writes leave the requantiser after the next instruction is fetched, and the
        registers cut the program memory's read data from the requantiser's paths."""
        rs = ins.rshift.as_unsigned()[: len(s.rq_rshift)]
        m.d.sync += [
            s.rq_rshift.eq(rs),
            s.rq_lshift.eq(ins.lshift.as_unsigned()[: len(s.rq_lshift)]),
            s.rq_half.eq((Const(1, 1) << rs) >> 1),
            s.rq_lo.eq(ins.lo),
            s.rq_hi.eq(ins.hi),
        ]

    def _requantize(self, m: Module, s: "_State", value: Value) -> Value:
        """Golden requantisation with the instruction's runtime shift and bounds, in
        :data:`REQUANT_STAGES` registers: round (or shift left), shift right, saturate."""
        cfg = self.config
        width = cfg.acc_bits + 1
        rs, ls = s.rq_rshift, s.rq_lshift
        left = ls != 0
        pre = Signal(signed(max(width + 1, width + (1 << len(ls)))), name="rq_pre")
        m.d.sync += pre.eq(Mux(left, value << ls, value + s.rq_half))
        shifted = Signal(signed(len(pre)), name="rq_shifted")
        m.d.sync += shifted.eq(Mux(left, pre, pre >> rs))
        result = Signal(signed(cfg.act_bits))
        with m.If(shifted > s.rq_hi):
            m.d.comb += result.eq(s.rq_hi)
        with m.Elif(shifted < s.rq_lo):
            m.d.comb += result.eq(s.rq_lo)
        with m.Else():
            m.d.comb += result.eq(shifted)
        return result

    # --- elaboration -------------------------------------------------------------------

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.config
        mems = self._memories(m)
        ports = _Ports(
            act_rd=[mems["act"].read_port() for _ in range(cfg.rows)],
            act_wr=mems["act"].write_port(),
            weight_rd=mems["weight"].read_port(),
            bias_rd=mems["bias"].read_port(),
            program_rd=mems["program"].read_port(),
            term_rd=mems["term"].read_port(domain="comb"),
        )
        ins = data.StructLayout({name: signed(cfg.field_bits) for name in FIELDS})(
            ports.program_rd.data
        )
        s = self._state(ins)
        first_tile = self._first_tile_positions(m, s, ins)
        self._address_generation(m, s, ins, ports)
        self._matmul_datapath(m, s, ports, self._pes(m))
        drain_sum = self._drain(m, s, ports)
        vector_result, vector_write = self._vector_unit(m, s, ins, ports)
        self._write_port(m, s, ports, drain_sum, vector_result, vector_write)
        self._controller(m, s, ins, ports, first_tile)
        return m

    def _state(self, ins: Any) -> "_State":
        """The controller's registers and phase strobes, named for the Verilog."""
        cfg = self.config
        rows, cols = cfg.rows, cfg.cols

        def reg(shape: Any = None, name: str | None = None) -> Signal:
            return Signal(signed(cfg.field_bits) if shape is None else shape, name=name)

        s = _State(
            pc=reg(range(cfg.program_depth), "pc"),
            busy=reg(1, "busy_state"),
            row_y=[reg(name=f"row{r}_y") for r in range(rows)],
            row_x=[reg(name=f"row{r}_x") for r in range(rows)],
            row_pa=[reg(name=f"row{r}_pa") for r in range(rows)],
            next_y=[reg(name=f"row{r}_next_y") for r in range(rows)],
            next_x=[reg(name=f"row{r}_next_x") for r in range(rows)],
            next_pa=[reg(name=f"row{r}_next_pa") for r in range(rows)],
            pixels_left=reg(name="pix_left"),
            couts_left=reg(name="cout_left"),
            rows_last=reg(range(rows), "rows_last"),
            cols_last=reg(range(cols), "cols_last"),
            more_pixels=reg(1, "more_pixels"),
            more_couts=reg(1, "more_couts"),
            weight_tile=reg(name="w_tile"),
            bias_tile=reg(name="b_tile"),
            out_tile=reg(name="out_tile"),
            out_chan=reg(name="out_chan"),
            drain_col_base=reg(name="drain_col_base"),
            step=reg(name="step"),
            kw=reg(name="kw"),
            kh=reg(name="kh"),
            koff=reg(name="koff"),
            drain_row=reg(range(rows), "drain_row"),
            drain_col=reg(range(cols), "drain_col"),
            pe_valid=reg(1, "pe_valid"),
            pe_clear=reg(1, "pe_clear"),
            row_read=[reg(1, f"row{r}_read") for r in range(rows)],
            row_read_addr=[
                reg(unsigned(_addr_bits(cfg.act_depth)), f"row{r}_read_addr") for r in range(rows)
            ],
            row_inbounds_d=[reg(1, f"inb{r}_d") for r in range(rows)],
            drain_acc=reg(signed(cfg.acc_bits), "drain_acc"),
            drain_write=reg(1, "drain_write"),
            drain_waddr=reg(name="drain_waddr"),
            vec_base=reg(name="vec_window_base"),
            vec_term=reg(name="vec_term"),
            vec_term_addr=reg(range(cfg.term_depth), "vec_term_addr"),
            vec_x=reg(name="vec_x"),
            vec_y=reg(name="vec_y"),
            vec_element=reg(name="vec_element"),
            vec_out_addr=reg(name="vec_out_addr"),
            vec_operand_valid=reg(1, "vec_operand_valid"),
            vec_first=reg(1, "vec_first_term"),
            vec_last=reg(1, "vec_last_term"),
            vec_align=reg(ALIGN_BITS, "vec_align"),
            vec_aligned=reg(signed(cfg.acc_bits), "vec_aligned"),
            vec_reduce_valid=reg(1, "vec_reduce_valid"),
            vec_reduce_first=reg(1, "vec_reduce_first"),
            vec_reduce_last=reg(1, "vec_reduce_last"),
            vec_reduced=reg(signed(cfg.acc_bits), "red"),
            rq_value=reg(signed(cfg.acc_bits + 1), "rq_value"),
            rq_valid=reg(1, "rq_valid"),
            rq_addr=reg(name="rq_addr"),
            rq_rshift=reg(unsigned((cfg.acc_bits + 1).bit_length()), "rq_rshift"),
            rq_lshift=reg(unsigned(max(cfg.max_lshift.bit_length(), 1)), "rq_lshift"),
            rq_half=reg(unsigned(cfg.acc_bits + 1), "rq_half"),
            rq_lo=reg(name="rq_lo"),
            rq_hi=reg(name="rq_hi"),
            computing=Signal(name="computing"),
            draining=Signal(name="draining"),
            vec_issue=Signal(name="vec_issue"),
            fetching=Signal(name="fetching"),
            last={name: reg(name=f"{name}_last") for name in _LOOP_BOUNDS},
        )
        return s

    # --- address generation ------------------------------------------------------------

    @staticmethod
    def _advance(pos: tuple[Value, Value, Value], ins: Any, d: str) -> tuple[Value, Value, Value]:
        """Position (y, x, pixel address) one step ``d`` ("one" pixel or a "tile") on."""
        y1, x1, pa1 = pos[0] + ins[f"{d}_dy"], pos[1] + ins[f"{d}_dx"], pos[2] + ins[f"{d}_dpa"]
        wrap = x1 >= ins.xlim
        return (
            Mux(wrap, y1 + ins.wrap_y, y1),
            Mux(wrap, x1 + ins.wrap_x, x1),
            Mux(wrap, pa1 + ins.wrap_pa, pa1),
        )

    def _first_tile_positions(
        self, m: Module, s: "_State", ins: Any
    ) -> list[tuple[Value, Value, Value]]:
        """Row positions of the first pixel tile: pixel 0, then one pixel further per row.
        A row's pixel address includes the input's base, so its read address is one add.

        Each position is a signal: as nested expressions every step would copy the one
        before into each of its three results (3^R terms: 6 MB of Verilog at 8 rows).
        """
        start_pa = Signal(signed(self.config.field_bits), name="row0_first_pa")
        m.d.comb += start_pa.eq(ins.start_pa + ins.in_base)
        chain: list[tuple[Value, Value, Value]] = [(ins.start_y, ins.start_x, start_pa)]
        for r in range(1, self.config.rows):
            fb = self.config.field_bits
            pos = tuple(Signal(signed(fb), name=f"row{r}_first_{n}") for n in ("y", "x", "pa"))
            m.d.comb += [
                sig.eq(v) for sig, v in zip(pos, self._advance(chain[-1], ins, "one"), strict=True)
            ]
            chain.append((pos[0], pos[1], pos[2]))
        return chain

    def _address_generation(self, m: Module, s: "_State", ins: Any, ports: "_Ports") -> None:
        """Row read ports: window reads while computing; port 0 also serves the vector unit
        and the host."""
        fb = self.config.field_bits
        host = ~s.busy
        term_rd = ports.term_rd
        s.term = data.StructLayout({"offset": signed(fb), "align": unsigned(ALIGN_BITS)})(
            term_rd.data
        )
        m.d.comb += term_rd.addr.eq(s.vec_term_addr)
        act_rd = ports.act_rd
        for r in range(self.config.rows):
            # A compute step's read goes to the port from registers, a cycle later: the
            # window's bounds test is not in the path to the block RAMs' enables.
            iy, ix = s.row_y[r] + s.kh, s.row_x[r] + s.kw
            inb = (iy >= 0) & (iy < ins.in_h) & (ix >= 0) & (ix < ins.in_w) & (s.rows_last >= r)
            read, address = s.row_read[r], s.row_read_addr[r]
            m.d.sync += [
                read.eq(s.computing & inb),
                address.eq(s.row_pa[r] + s.koff),
                s.row_inbounds_d[r].eq(read),
            ]
            if r == 0:
                vector_address = s.vec_base + s.term.offset
                m.d.comb += [
                    act_rd[0].addr.eq(
                        Mux(read, address, Mux(s.vec_issue, vector_address, self.i_rd_addr))
                    ),
                    act_rd[0].en.eq(read | s.vec_issue | host),
                ]
            else:
                m.d.comb += [act_rd[r].addr.eq(address), act_rd[r].en.eq(read)]

    # --- matmul datapath and drain -----------------------------------------------------

    def _matmul_datapath(
        self, m: Module, s: "_State", ports: "_Ports", pes: list[list[Any]]
    ) -> None:
        """PEs: activations by row, weight lanes by column."""
        cfg = self.config
        lane = cfg.weight_bits
        w_rd = ports.weight_rd
        # The weight read and the PEs' strobes follow the activation reads' register.
        w_read = Signal(name="w_read")
        w_addr = Signal.like(w_rd.addr, name="w_read_addr")
        clear = Signal(name="pe_clear_q")
        m.d.sync += [
            w_read.eq(s.computing),
            w_addr.eq(s.weight_tile + s.step),
            clear.eq(s.computing & (s.step == 0)),
            s.pe_valid.eq(w_read),
            s.pe_clear.eq(clear),
        ]
        m.d.comb += [w_rd.addr.eq(w_addr), w_rd.en.eq(w_read)]
        for r in range(cfg.rows):
            for c in range(cfg.cols):
                pe = pes[r][c]
                word = w_rd.data[c * lane : (c + 1) * lane]
                m.d.comb += [
                    pe.i_act.eq(Mux(s.row_inbounds_d[r], ports.act_rd[r].data, 0)),
                    pe.i_valid.eq(s.pe_valid),
                    pe.i_clear.eq(s.pe_clear),
                    pe.i_weight.eq(word.as_signed()) if cfg.pe == "mult" else pe.i_code.eq(word),
                ]
        s.accs = Array(Array(pe.o_acc for pe in row) for row in pes)

    def _drain(self, m: Module, s: "_State", ports: "_Ports") -> Signal:
        """Select an accumulator and add its bias; returns the sum to requantise."""
        b_rd = ports.bias_rd
        m.d.comb += [b_rd.addr.eq(s.bias_tile + s.drain_col), b_rd.en.eq(s.draining)]
        m.d.sync += [
            s.drain_write.eq(s.draining),
            s.drain_waddr.eq(s.drain_col_base + s.drain_row),
            s.drain_acc.eq(s.accs[s.drain_row][s.drain_col]),
        ]
        drain_sum = Signal(signed(self.config.acc_bits + 1), name="drain_sum")
        m.d.comb += drain_sum.eq(s.drain_acc + b_rd.data)
        return drain_sum

    # --- vector unit -------------------------------------------------------------------

    def _vector_unit(
        self, m: Module, s: "_State", ins: Any, ports: "_Ports"
    ) -> tuple[Signal, Value]:
        """Align (into a register), reduce; returns the running result and the strobe of
        an output's last operand (when it goes to the requantiser)."""
        m.d.sync += [
            s.vec_operand_valid.eq(s.vec_issue),
            s.vec_first.eq(s.vec_term == 0),
            s.vec_last.eq(s.vec_term == s.last["terms"]),
            s.vec_align.eq(s.term.align),
            # The read data's alignment, registered: the reduction starts from a register.
            s.vec_aligned.eq(ports.act_rd[0].data << s.vec_align),
            s.vec_reduce_valid.eq(s.vec_operand_valid),
            s.vec_reduce_first.eq(s.vec_first),
            s.vec_reduce_last.eq(s.vec_last),
        ]
        aligned = s.vec_aligned
        combined = Signal(signed(self.config.acc_bits + 1), name="vec_combined")
        maximum = Mux(aligned > s.vec_reduced, aligned, s.vec_reduced)
        reduced = Mux(ins.reduce == REDUCE_MAX, maximum, s.vec_reduced + aligned)
        m.d.comb += combined.eq(Mux(s.vec_reduce_first, aligned, reduced))
        vector_write = s.vec_reduce_valid & s.vec_reduce_last
        with m.If(s.vec_reduce_valid & ~s.vec_reduce_last):
            m.d.sync += s.vec_reduced.eq(combined)
        with m.If(vector_write):
            m.d.sync += s.vec_out_addr.eq(s.vec_out_addr + 1)
        return combined, vector_write

    # --- host port and activation write ------------------------------------------------

    def _write_port(
        self,
        m: Module,
        s: "_State",
        ports: "_Ports",
        drain_sum: Signal,
        vector_result: Signal,
        vector_write: Value,
    ) -> None:
        """Requantise the drained or reduced value and write it; otherwise the host's
        write, the host's read data and the status outputs."""
        host = ~s.busy
        m.d.sync += [
            s.rq_value.eq(Mux(s.drain_write, drain_sum, vector_result)),
            s.rq_valid.eq(s.drain_write | vector_write),
            s.rq_addr.eq(Mux(s.drain_write, s.drain_waddr, s.vec_out_addr)),
        ]
        result = self._requantize(m, s, s.rq_value)
        write, waddr = s.rq_valid, s.rq_addr
        for stage in range(REQUANT_STAGES):
            write_d = Signal(name=f"rq_valid_{stage + 1}")
            waddr_d = Signal.like(waddr, name=f"rq_addr_{stage + 1}")
            m.d.sync += [write_d.eq(write), waddr_d.eq(waddr)]
            write, waddr = write_d, waddr_d
        act_wr = ports.act_wr
        m.d.comb += [
            act_wr.en.eq(write | (host & self.i_wr_en)),
            act_wr.addr.eq(Mux(write, waddr, self.i_wr_addr)),
            act_wr.data.eq(Mux(write, result, self.i_wr_data)),
        ]
        m.d.comb += [self.o_rd_data.eq(ports.act_rd[0].data), self.o_busy.eq(s.busy)]
        with m.If(s.busy):
            m.d.sync += self.o_cycles.eq(self.o_cycles + 1)

    # --- control -----------------------------------------------------------------------

    def _controller(
        self,
        m: Module,
        s: "_State",
        ins: Any,
        ports: "_Ports",
        first_tile: list[tuple[Value, Value, Value]],
    ) -> None:
        """Fetch and decode; the matmul and vector states come from their own methods."""
        # A read port's enable defaults to 1: the instruction must hold outside FETCH.
        m.d.comb += [ports.program_rd.addr.eq(s.pc), ports.program_rd.en.eq(s.fetching)]
        with m.FSM(name="ctrl"):
            with m.State("IDLE"), m.If(self.i_start):
                m.d.sync += [s.pc.eq(0), s.busy.eq(1), self.o_cycles.eq(0)]
                m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += s.fetching.eq(1)
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += [s.last[name].eq(ins[name] - 1) for name in _LOOP_BOUNDS]
                with m.If(ins.op == OP_END):
                    m.d.sync += [s.busy.eq(0), self.o_done.eq(1)]
                    m.next = "DONE"
                with m.Elif(ins.op == OP_MATMUL):
                    m.next = "M_INIT"
                with m.Else():
                    m.next = "V_INIT"
            self._matmul_control(m, s, ins, first_tile)
            self._vector_control(m, s, ins)
            for wait in range(SETTLE_CYCLES):
                with m.State(f"SETTLE_{wait}"):
                    m.next = f"SETTLE_{wait + 1}" if wait + 1 < SETTLE_CYCLES else "FETCH"
            with m.State("DONE"), m.If(self.i_start):
                m.d.sync += [s.pc.eq(0), s.busy.eq(1), self.o_done.eq(0), self.o_cycles.eq(0)]
                m.next = "FETCH"

    @staticmethod
    def _load_rows(m: Module, s: "_State", positions: Sequence[tuple[Value, Value, Value]]) -> None:
        for r, (y, x, pa) in enumerate(positions):
            m.d.sync += [s.row_y[r].eq(y), s.row_x[r].eq(x), s.row_pa[r].eq(pa)]

    def _next_tile_rows(self, m: Module, s: "_State", ins: Any) -> None:
        """The next pixel tile's row positions (:meth:`_advance` by a tile) in two register
        steps: whether the row wraps, then the positions. A tile's rows are loaded at least
        four cycles before its drain ends (a compute step, the flush, a drain cycle), so
        they are ready by then."""
        for r in range(self.config.rows):
            wrap = Signal(name=f"row{r}_next_wraps")
            m.d.sync += wrap.eq(s.row_x[r] + ins.tile_dx >= ins.xlim)
            for pos, nxt, d in (
                (s.row_y, s.next_y, "y"),
                (s.row_x, s.next_x, "x"),
                (s.row_pa, s.next_pa, "pa"),
            ):
                step = Mux(wrap, ins[f"tile_d{d}"] + ins[f"wrap_{d}"], ins[f"tile_d{d}"])
                m.d.sync += nxt[r].eq(pos[r] + step)

    def _load_left(
        self, m: Module, s: "_State", *, pixels: Value, couts: Value | None = None
    ) -> None:
        """Load the pixels (and output channels) left, and with them the registers the
        drain's last-of-tile tests and the next-tile choice read (off the critical path:
        they are compared when loaded, not in the drain's last cycle)."""
        rows, cols = self.config.rows, self.config.cols
        m.d.sync += [
            s.pixels_left.eq(pixels),
            s.rows_last.eq(Mux(pixels < rows, pixels - 1, rows - 1)),
            s.more_pixels.eq(pixels > rows),
        ]
        if couts is not None:
            m.d.sync += [
                s.couts_left.eq(couts),
                s.cols_last.eq(Mux(couts < cols, couts - 1, cols - 1)),
                s.more_couts.eq(couts > cols),
            ]

    def _matmul_control(
        self, m: Module, s: "_State", ins: Any, first_tile: list[tuple[Value, Value, Value]]
    ) -> None:
        """M_INIT, M_COMP (Cin·k² steps), M_FLUSH (:data:`FLUSH_CYCLES`), M_DRAIN; then the
        next tile or FETCH."""
        rows, cols = self.config.rows, self.config.cols
        pixels_next = Signal.like(s.pixels_left, name="pix_left_next")
        couts_next = Signal.like(s.couts_left, name="cout_left_next")
        m.d.comb += [pixels_next.eq(s.pixels_left - rows), couts_next.eq(s.couts_left - cols)]
        self._next_tile_rows(m, s, ins)
        with m.State("M_INIT"):
            self._load_rows(m, s, first_tile)
            self._load_left(m, s, pixels=ins.pixels, couts=ins.cout)
            self._requant_parameters(m, s, ins)
            m.d.sync += [
                s.weight_tile.eq(ins.w_base),
                s.bias_tile.eq(ins.b_base),
                s.out_tile.eq(ins.out_base),
                s.out_chan.eq(ins.out_base),
                s.step.eq(0),
                s.kw.eq(0),
                s.kh.eq(0),
                s.koff.eq(0),
            ]
            m.next = "M_COMP"
        with m.State("M_COMP"):
            m.d.comb += s.computing.eq(1)
            self._step_counters(m, ins, s.last, s.step, s.kw, s.kh, s.koff)
            with m.If(s.step == s.last["ksteps"]):
                m.next = "M_FLUSH_0" if FLUSH_CYCLES > 1 else "M_FLUSH"
        # The last step's read and accumulation, before the drain selects an accumulator.
        for wait in range(FLUSH_CYCLES - 1):
            with m.State(f"M_FLUSH_{wait}"):
                m.next = f"M_FLUSH_{wait + 1}" if wait + 2 < FLUSH_CYCLES else "M_FLUSH"
        with m.State("M_FLUSH"):
            m.d.sync += [s.drain_row.eq(0), s.drain_col.eq(0), s.drain_col_base.eq(s.out_tile)]
            m.next = "M_DRAIN"
        with m.State("M_DRAIN"):
            m.d.comb += s.draining.eq(1)
            last_r = s.drain_row == s.rows_last
            last_c = s.drain_col == s.cols_last
            with m.If(last_r):
                m.d.sync += [
                    s.drain_row.eq(0),
                    s.drain_col.eq(s.drain_col + 1),
                    s.drain_col_base.eq(s.drain_col_base + ins.pixels),
                ]
            with m.Else():
                m.d.sync += s.drain_row.eq(s.drain_row + 1)
            with m.If(last_r & last_c):
                with m.If(s.more_pixels):
                    next_tile = [(s.next_y[r], s.next_x[r], s.next_pa[r]) for r in range(rows)]
                    self._load_rows(m, s, next_tile)
                    self._load_left(m, s, pixels=pixels_next)
                    m.d.sync += [
                        s.out_tile.eq(s.out_tile + rows),
                    ]
                    m.next = "M_COMP"
                with m.Elif(s.more_couts):
                    self._load_rows(m, s, first_tile)
                    self._load_left(m, s, pixels=ins.pixels, couts=couts_next)
                    m.d.sync += [
                        s.weight_tile.eq(s.weight_tile + ins.ksteps),
                        s.bias_tile.eq(s.bias_tile + cols),
                        s.out_chan.eq(s.out_chan + ins.out_cp),
                        s.out_tile.eq(s.out_chan + ins.out_cp),
                    ]
                    m.next = "M_COMP"
                with m.Else():
                    m.d.sync += s.pc.eq(s.pc + 1)
                    m.next = _AFTER_ISSUE

    def _vector_control(self, m: Module, s: "_State", ins: Any) -> None:
        """V_INIT, V_RUN: one operand (term) per cycle, ``terms`` per output element."""
        with m.State("V_INIT"):
            self._requant_parameters(m, s, ins)
            m.d.sync += [
                s.vec_base.eq(ins.in_base),
                s.vec_term.eq(0),
                s.vec_term_addr.eq(ins.term_base),
                s.vec_x.eq(0),
                s.vec_y.eq(0),
                s.vec_element.eq(0),
                s.vec_out_addr.eq(ins.out_base),
            ]
            m.next = "V_RUN"
        with m.State("V_RUN"):
            m.d.comb += s.vec_issue.eq(1)
            with m.If(s.vec_term == s.last["terms"]):
                m.d.sync += [
                    s.vec_term.eq(0),
                    s.vec_term_addr.eq(ins.term_base),
                    s.vec_element.eq(s.vec_element + 1),
                ]
                self._element_counters(m, ins, s.last, s.vec_base, s.vec_x, s.vec_y)
                with m.If(s.vec_element == s.last["elements"]):
                    m.d.sync += s.pc.eq(s.pc + 1)
                    m.next = _AFTER_ISSUE
            with m.Else():
                m.d.sync += [s.vec_term.eq(s.vec_term + 1), s.vec_term_addr.eq(s.vec_term_addr + 1)]

    @staticmethod
    def _step_counters(
        m: Module,
        ins: Any,
        last: dict[str, Signal],
        step: Signal,
        kw: Signal,
        kh: Signal,
        koff: Signal,
    ) -> None:
        """Reduction step (ci, kh, kw) and its input offset ``ci·H·W + kh·W + kw``."""
        with m.If(step == last["ksteps"]):
            m.d.sync += [step.eq(0), kw.eq(0), kh.eq(0), koff.eq(0)]
        with m.Else():
            m.d.sync += step.eq(step + 1)
            with m.If(kw == last["kernel"]):
                m.d.sync += kw.eq(0)
                with m.If(kh == last["kernel"]):
                    m.d.sync += [kh.eq(0), koff.eq(koff + ins.ci_step)]
                with m.Else():
                    m.d.sync += [kh.eq(kh + 1), koff.eq(koff + ins.kh_step)]
            with m.Else():
                m.d.sync += [kw.eq(kw + 1), koff.eq(koff + 1)]

    @staticmethod
    def _element_counters(
        m: Module, ins: Any, last: dict[str, Signal], ebase: Signal, vx: Signal, vy: Signal
    ) -> None:
        """Next vector output (c, oh, ow) and the read base of its window."""
        with m.If(vx == last["out_w"]):
            m.d.sync += vx.eq(0)
            with m.If(vy == last["out_h"]):
                m.d.sync += [vy.eq(0), ebase.eq(ebase + ins.step_c)]
            with m.Else():
                m.d.sync += [vy.eq(vy + 1), ebase.eq(ebase + ins.step_y)]
        with m.Else():
            m.d.sync += [vx.eq(vx + 1), ebase.eq(ebase + ins.step_x)]


# --- simulation --------------------------------------------------------------------------


@dataclass(frozen=True)
class SimResult:
    """Outputs of :func:`simulate`: ``outputs`` ``(N, output size)`` (flat) and the
    ``o_cycles`` of each inference."""

    outputs: np.ndarray
    cycles: list[int]


def simulate(array: PEArray, images: np.ndarray, *, max_cycles: int = 10_000_000) -> SimResult:
    """Run ``images`` (integers, ``(N, *input shape)``) through ``array`` in Amaranth's
    simulator, through the host ports as a testbench would.

    Raises
    ------
    RuntimeError
        If an inference does not finish within ``max_cycles``.
    """
    from amaranth.sim import Simulator

    program = array.program
    images = np.asarray(images, dtype=np.int64)
    flat = images.reshape(len(images), -1)
    if flat.shape[1] != program.input.size:
        raise ValueError(f"Images must have {program.input.size} values each, not {flat.shape[1]}")
    outputs: list[list[int]] = []
    cycles: list[int] = []

    async def bench(ctx: Any) -> None:
        for image in flat:
            ctx.set(array.i_wr_en, 1)
            for i, value in enumerate(image):
                ctx.set(array.i_wr_addr, program.input.base + i)
                ctx.set(array.i_wr_data, int(value))
                await ctx.tick()
            ctx.set(array.i_wr_en, 0)
            ctx.set(array.i_start, 1)
            await ctx.tick()
            ctx.set(array.i_start, 0)
            waited = 0
            while not ctx.get(array.o_done):
                await ctx.tick()
                waited += 1
                if waited > max_cycles:
                    raise RuntimeError(f"The array did not finish within {max_cycles} cycles")
            cycles.append(int(ctx.get(array.o_cycles)))
            values = []
            for i in range(program.output.size):
                ctx.set(array.i_rd_addr, program.output.base + i)
                await ctx.tick()
                values.append(int(ctx.get(array.o_rd_data)))
            outputs.append(values)

    sim = Simulator(array)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return SimResult(np.array(outputs, dtype=np.int64).reshape(len(images), -1), cycles)
