"""The programmable PE array: R×C shift-MAC PEs (or their multiplier twins), on-chip
memories initialised with a compiled program, and a controller that runs the layers of an
integer model package one after another (ARCHITECTURE.md, "Programmable PE array").

Datapath. A MATMUL instruction (Conv2d, Linear) folds the layer onto the array in tiles of
R output pixels (rows, raster order) × C output channels (columns). Each compute cycle
every row reads one activation through its own read port of the activation memory (zero
where the window leaves the image: padding) and every column gets one lane of a weight
word (C lanes of b-bit codes, or 8-bit integers in the twin); PE (r, c) accumulates
``x_r · w_c`` (:class:`~rtl_gen.pe.ShiftMAC`: a barrel shift and one adder). After the
``Cin·k²`` steps the tile drains one output per cycle: accumulator + bias, then the
requantiser (round half up by a runtime shift, or a left shift, then saturation to
``[lo, hi]``: exactly :func:`inq_hw.intmodel.arith.requantize`), into the activation
memory. A VECTOR instruction (MaxPool, AvgPool, ReLU, residual Add) reads one operand per
cycle through row 0's port, aligns it by a shift, reduces it (sum or max) and requantises
each output the same way. :mod:`rtl_gen.pe_program` computes every address, loop bound
and shift, so the controller has counters and adders only; :mod:`sim.cycle_model`
predicts its cycle count exactly.

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
    OP_END,
    OP_MATMUL,
    REDUCE_MAX,
    Program,
    instruction_word,
)

__all__ = ["ALIGN_BITS", "CYCLE_BITS", "PEArray", "SimResult", "simulate"]

#: Width of ``o_cycles``.
CYCLE_BITS = 32
#: Width of a term's alignment shift.
ALIGN_BITS = 5


def _addr_bits(depth: int) -> int:
    return max(ceil_log2(depth), 1)


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

    def _requantize(self, m: Module, value: Value, ins: Any) -> Value:
        """Golden requantisation with the instruction's runtime shift and bounds."""
        cfg = self.config
        width = cfg.acc_bits + 1
        rs = ins.rshift.as_unsigned()[: width.bit_length()]
        ls = ins.lshift.as_unsigned()[: max(cfg.max_lshift.bit_length(), 1)]
        half = (Const(1, 1) << rs) >> 1
        rounded = Signal(signed(width + 1))
        m.d.comb += rounded.eq(value + half)
        shifted = Signal(signed(width + (1 << len(ls))))
        m.d.comb += shifted.eq(Mux(ls != 0, value << ls, rounded >> rs))
        result = Signal(signed(cfg.act_bits))
        with m.If(shifted > ins.hi):
            m.d.comb += result.eq(ins.hi)
        with m.Elif(shifted < ins.lo):
            m.d.comb += result.eq(ins.lo)
        with m.Else():
            m.d.comb += result.eq(shifted)
        return result

    # --- elaboration -------------------------------------------------------------------

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.config
        fb, rows, cols = cfg.field_bits, cfg.rows, cfg.cols
        mems = self._memories(m)
        act_rd = [mems["act"].read_port() for _ in range(rows)]
        act_wr = mems["act"].write_port()
        w_rd = mems["weight"].read_port()
        b_rd = mems["bias"].read_port()
        p_rd = mems["program"].read_port()
        t_rd = mems["term"].read_port(domain="comb")
        ins = data.StructLayout({name: signed(fb) for name in FIELDS})(p_rd.data)
        pes = self._pes(m)

        def reg(shape: Any = None, name: str | None = None) -> Signal:
            return Signal(signed(fb) if shape is None else shape, name=name)

        pc = reg(range(cfg.program_depth), "pc")
        busy = reg(1, "busy_state")
        # Matmul state: row positions, tile bookkeeping, reduction counters, drain.
        ry = [reg(name=f"row{r}_y") for r in range(rows)]
        rx = [reg(name=f"row{r}_x") for r in range(rows)]
        rpa = [reg(name=f"row{r}_pa") for r in range(rows)]
        pix_left, cout_left = reg(name="pix_left"), reg(name="cout_left")
        w_tile, b_tile = reg(name="w_tile"), reg(name="b_tile")
        out_tile, out_chan, col_base = reg(name="out_tile"), reg(name="out_chan"), reg()
        step, kw, kh, koff = reg(name="step"), reg(name="kw"), reg(name="kh"), reg(name="koff")
        dr, dc = reg(range(rows), "dr"), reg(range(cols), "dc")
        pe_valid, pe_clear = reg(1), reg(1)
        inb_d = [reg(1, f"inb{r}_d") for r in range(rows)]
        drain_acc, mm_wv, mm_waddr = reg(signed(cfg.acc_bits)), reg(1), reg()
        # Vector state.
        ebase, t, vx, vy, e, vout = reg(), reg(), reg(), reg(), reg(), reg()
        vd, vfirst, vlast = reg(1), reg(1), reg(1)
        valign = reg(ALIGN_BITS)
        red = reg(signed(cfg.acc_bits), "red")

        rows_valid = Mux(pix_left < rows, pix_left, rows)
        cols_valid = Mux(cout_left < cols, cout_left, cols)

        def advance(pos: tuple[Value, Value, Value], d: str) -> tuple[Value, Value, Value]:
            y1, x1, pa1 = pos[0] + ins[f"{d}_dy"], pos[1] + ins[f"{d}_dx"], pos[2] + ins[f"{d}_dpa"]
            wrap = x1 >= ins.xlim
            return (
                Mux(wrap, y1 + ins.wrap_y, y1),
                Mux(wrap, x1 + ins.wrap_x, x1),
                Mux(wrap, pa1 + ins.wrap_pa, pa1),
            )

        # Row positions of the first pixel tile: pixel 0, then one pixel further per row.
        # Each position is a signal: as nested expressions every step would copy the one
        # before into each of its three results (3^R terms: 6 MB of Verilog at 8 rows).
        chain: list[tuple[Value, Value, Value]] = [(ins.start_y, ins.start_x, ins.start_pa)]
        for r in range(1, rows):
            pos = tuple(reg(name=f"row{r}_first_{n}") for n in ("y", "x", "pa"))
            m.d.comb += [s.eq(v) for s, v in zip(pos, advance(chain[-1], "one"), strict=True)]
            chain.append((pos[0], pos[1], pos[2]))

        def load_rows(positions: Sequence[tuple[Value, Value, Value]]) -> None:
            for r, (y, x, pa) in enumerate(positions):
                m.d.sync += [ry[r].eq(y), rx[r].eq(x), rpa[r].eq(pa)]

        computing = Signal()
        draining = Signal()
        vissue = Signal()
        host = ~busy

        # Row read ports: window reads while computing; port 0 also serves the vector unit
        # and the host.
        term = data.StructLayout({"offset": signed(fb), "align": unsigned(ALIGN_BITS)})(t_rd.data)
        m.d.comb += t_rd.addr.eq(ins.term_base + t)
        for r in range(rows):
            iy, ix = ry[r] + kh, rx[r] + kw
            inb = (iy >= 0) & (iy < ins.in_h) & (ix >= 0) & (ix < ins.in_w) & (r < rows_valid)
            address = ins.in_base + rpa[r] + koff
            m.d.sync += inb_d[r].eq(inb)
            if r == 0:
                m.d.comb += [
                    act_rd[0].addr.eq(
                        Mux(computing, address, Mux(vissue, ebase + term.offset, self.i_rd_addr))
                    ),
                    act_rd[0].en.eq((computing & inb) | vissue | host),
                ]
            else:
                m.d.comb += [act_rd[r].addr.eq(address), act_rd[r].en.eq(computing & inb)]
        m.d.comb += self.o_rd_data.eq(act_rd[0].data)

        # PEs: activations by row, weight lanes by column.
        lane = cfg.weight_bits
        m.d.comb += [w_rd.addr.eq(w_tile + step), w_rd.en.eq(computing)]
        m.d.sync += [pe_valid.eq(computing), pe_clear.eq(computing & (step == 0))]
        for r in range(rows):
            for c in range(cols):
                pe = pes[r][c]
                word = w_rd.data[c * lane : (c + 1) * lane]
                m.d.comb += [
                    pe.i_act.eq(Mux(inb_d[r], act_rd[r].data, 0)),
                    pe.i_valid.eq(pe_valid),
                    pe.i_clear.eq(pe_clear),
                    pe.i_weight.eq(word.as_signed()) if cfg.pe == "mult" else pe.i_code.eq(word),
                ]

        # Drain: select an accumulator, add its bias, requantise, write.
        accs = Array(Array(pe.o_acc for pe in row) for row in pes)
        m.d.comb += [b_rd.addr.eq(b_tile + dc), b_rd.en.eq(draining)]
        m.d.sync += [
            mm_wv.eq(draining),
            mm_waddr.eq(col_base + dr),
            drain_acc.eq(accs[dr][dc]),
        ]
        drain_sum = Signal(signed(cfg.acc_bits + 1))
        m.d.comb += drain_sum.eq(drain_acc + b_rd.data)

        # Vector unit: align, reduce, requantise the last operand of each output.
        x = Signal(signed(cfg.acc_bits))
        m.d.comb += x.eq(act_rd[0].data << valign)
        combined = Signal(signed(cfg.acc_bits + 1))
        maximum = Mux(x > red, x, red)
        m.d.comb += combined.eq(Mux(vfirst, x, Mux(ins.reduce == REDUCE_MAX, maximum, red + x)))
        m.d.sync += [vd.eq(vissue), vfirst.eq(t == 0), vlast.eq(t == ins.terms - 1)]
        m.d.sync += valign.eq(term.align)
        v_write = vd & vlast
        with m.If(vd & ~vlast):
            m.d.sync += red.eq(combined)
        with m.If(v_write):
            m.d.sync += vout.eq(vout + 1)

        result = self._requantize(m, Mux(mm_wv, drain_sum, combined), ins)
        m.d.comb += [
            act_wr.en.eq(mm_wv | v_write | (host & self.i_wr_en)),
            act_wr.addr.eq(Mux(mm_wv, mm_waddr, Mux(v_write, vout, self.i_wr_addr))),
            act_wr.data.eq(Mux(mm_wv | v_write, result, self.i_wr_data)),
        ]

        # Status.
        m.d.comb += self.o_busy.eq(busy)
        with m.If(busy):
            m.d.sync += self.o_cycles.eq(self.o_cycles + 1)

        fetching = Signal()
        # A read port's enable defaults to 1: the instruction must hold outside FETCH.
        m.d.comb += [p_rd.addr.eq(pc), p_rd.en.eq(fetching)]
        with m.FSM(name="ctrl"):
            with m.State("IDLE"), m.If(self.i_start):
                m.d.sync += [pc.eq(0), busy.eq(1), self.o_cycles.eq(0)]
                m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += fetching.eq(1)
                m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(ins.op == OP_END):
                    m.d.sync += [busy.eq(0), self.o_done.eq(1)]
                    m.next = "DONE"
                with m.Elif(ins.op == OP_MATMUL):
                    m.next = "M_INIT"
                with m.Else():
                    m.next = "V_INIT"
            with m.State("M_INIT"):
                load_rows(chain)
                m.d.sync += [
                    pix_left.eq(ins.pixels),
                    cout_left.eq(ins.cout),
                    w_tile.eq(ins.w_base),
                    b_tile.eq(ins.b_base),
                    out_tile.eq(ins.out_base),
                    out_chan.eq(ins.out_base),
                    step.eq(0),
                    kw.eq(0),
                    kh.eq(0),
                    koff.eq(0),
                ]
                m.next = "M_COMP"
            with m.State("M_COMP"):
                m.d.comb += computing.eq(1)
                self._step_counters(m, ins, step, kw, kh, koff)
                with m.If(step == ins.ksteps - 1):
                    m.next = "M_FLUSH"
            with m.State("M_FLUSH"):
                m.d.sync += [dr.eq(0), dc.eq(0), col_base.eq(out_tile)]
                m.next = "M_DRAIN"
            with m.State("M_DRAIN"):
                m.d.comb += draining.eq(1)
                last_r, last_c = dr == rows_valid - 1, dc == cols_valid - 1
                with m.If(last_r):
                    m.d.sync += [dr.eq(0), dc.eq(dc + 1), col_base.eq(col_base + ins.pixels)]
                with m.Else():
                    m.d.sync += dr.eq(dr + 1)
                with m.If(last_r & last_c):
                    with m.If(pix_left > rows):
                        load_rows([advance((ry[r], rx[r], rpa[r]), "tile") for r in range(rows)])
                        m.d.sync += [pix_left.eq(pix_left - rows), out_tile.eq(out_tile + rows)]
                        m.next = "M_COMP"
                    with m.Elif(cout_left > cols):
                        load_rows(chain)
                        m.d.sync += [
                            pix_left.eq(ins.pixels),
                            cout_left.eq(cout_left - cols),
                            w_tile.eq(w_tile + ins.ksteps),
                            b_tile.eq(b_tile + cols),
                            out_chan.eq(out_chan + ins.out_cp),
                            out_tile.eq(out_chan + ins.out_cp),
                        ]
                        m.next = "M_COMP"
                    with m.Else():
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
            with m.State("V_INIT"):
                m.d.sync += [
                    ebase.eq(ins.in_base),
                    t.eq(0),
                    vx.eq(0),
                    vy.eq(0),
                    e.eq(0),
                    vout.eq(ins.out_base),
                ]
                m.next = "V_RUN"
            with m.State("V_RUN"):
                m.d.comb += vissue.eq(1)
                with m.If(t == ins.terms - 1):
                    m.d.sync += [t.eq(0), e.eq(e + 1)]
                    self._element_counters(m, ins, ebase, vx, vy)
                    with m.If(e == ins.elements - 1):
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
                with m.Else():
                    m.d.sync += t.eq(t + 1)
            with m.State("DONE"), m.If(self.i_start):
                m.d.sync += [pc.eq(0), busy.eq(1), self.o_done.eq(0), self.o_cycles.eq(0)]
                m.next = "FETCH"
        return m

    @staticmethod
    def _step_counters(
        m: Module, ins: Any, step: Signal, kw: Signal, kh: Signal, koff: Signal
    ) -> None:
        """Reduction step (ci, kh, kw) and its input offset ``ci·H·W + kh·W + kw``."""
        with m.If(step == ins.ksteps - 1):
            m.d.sync += [step.eq(0), kw.eq(0), kh.eq(0), koff.eq(0)]
        with m.Else():
            m.d.sync += step.eq(step + 1)
            with m.If(kw == ins.kernel - 1):
                m.d.sync += kw.eq(0)
                with m.If(kh == ins.kernel - 1):
                    m.d.sync += [kh.eq(0), koff.eq(koff + ins.ci_step)]
                with m.Else():
                    m.d.sync += [kh.eq(kh + 1), koff.eq(koff + ins.kh_step)]
            with m.Else():
                m.d.sync += [kw.eq(kw + 1), koff.eq(koff + 1)]

    @staticmethod
    def _element_counters(m: Module, ins: Any, ebase: Signal, vx: Signal, vy: Signal) -> None:
        """Next vector output (c, oh, ow) and the read base of its window."""
        with m.If(vx == ins.out_w - 1):
            m.d.sync += vx.eq(0)
            with m.If(vy == ins.out_h - 1):
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
