"""An AXI4-Stream face for the dataflow top: the ports a hardware team's DMA expects.

:class:`AxiStreamWrapper` puts AMBA AXI4-Stream (IHI 0051) ports around a
:class:`~rtl_gen.dataflow.DataflowTop`: ``aclk``, an active-low synchronous reset
``aresetn``, a slave stream of input pixels and a master stream of one result beat per
image. Both ``tdata`` vectors are padded to a multiple of 8 bits (AXI4-Stream ``TDATA`` is
a whole number of bytes); :func:`axis_layouts` states the field order, widths, signedness
and padding, and the IP kit writes the same figures into the Verilog header comment and the
manifest.

Framing: the top knows how many pixels an image has, so the wrapper frames images by
counting beats and *checks* ``s_axis_tlast`` rather than obeying it. A beat whose
``tlast`` disagrees with "this is the last pixel of an image" (early, late or missing) is
still processed as the counted pixel it is, and raises the sticky ``frame_error`` output,
which only ``aresetn`` clears: a host that sees it knows every result since the error is
misaligned and resets the core. Counting keeps the no-loss, no-duplication guarantee of
the handshake independent of what ``tlast`` carries.

Example usage::

    top = build_dataflow(model)
    ip = AxiStreamWrapper(top)
    verilog.convert(ip, name="inq_axis", emit_src=False)
"""

from dataclasses import dataclass
from typing import Any

from amaranth.hdl import ClockDomain, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from rtl_gen.dataflow import DataflowTop

__all__ = ["AxiStreamWrapper", "StreamLayout", "axis_layouts"]


def _bytes(bits: int) -> int:
    """``bits`` rounded up to a whole number of bytes, in bits."""
    return -(-bits // 8) * 8


@dataclass(frozen=True)
class StreamLayout:
    """The fields of one ``tdata`` vector, lowest bits first, and its padded width.

    ``fields`` holds ``(name, lsb, bits, signed)``; the bits above the last field up to
    ``width`` are padding (zero on the master side, ignored on the slave side).
    """

    fields: tuple[tuple[str, int, int, bool], ...]
    width: int

    @property
    def used(self) -> int:
        """Bits carrying data."""
        return sum(bits for _, _, bits, _ in self.fields)

    def to_dict(self) -> dict[str, Any]:
        fields = [
            {"name": name, "lsb": lsb, "bits": bits, "signed": signed}
            for name, lsb, bits, signed in self.fields
        ]
        return {"width": self.width, "used_bits": self.used, "fields": fields}


def _packed(fields: list[tuple[str, int, bool]]) -> StreamLayout:
    placed, lsb = [], 0
    for name, bits, signed in fields:
        placed.append((name, lsb, bits, signed))
        lsb += bits
    return StreamLayout(tuple(placed), _bytes(lsb))


def _layout_comment(layout: StreamLayout, port: str) -> list[str]:
    lines = [f"// {port}: {layout.width} bits, lowest first:"]
    for name, lsb, bits, signed in layout.fields:
        kind = "signed" if signed else "unsigned"
        lines.append(f"//   [{lsb + bits - 1}:{lsb}] {name} ({kind} {bits}-bit)")
    if layout.used < layout.width:
        lines.append(f"//   [{layout.width - 1}:{layout.used}] padding (zero out, ignored in)")
    return lines


def axis_layouts(top: DataflowTop) -> tuple[StreamLayout, StreamLayout]:
    """The slave (pixel) and master (result) ``tdata`` layouts of ``top``'s wrapper.

    A pixel beat holds channel 0 in the low bits, then channel 1, …; a result beat holds
    logit 0 in the low bits, …, the last logit, then the class (argmax, unsigned).
    """
    first, last = top.first, top.last
    pixel = [(f"channel{c}", first.fmt.bits, first.fmt.signed) for c in range(first.elems)]
    result = [(f"logit{k}", last.fmt.bits, last.fmt.signed) for k in range(last.elems)]
    label_bits = top.out_layout.size - last.elems * last.fmt.bits
    return _packed(pixel), _packed([*result, ("class", label_bits, False)])


class AxiStreamWrapper(wiring.Component):
    """A dataflow top behind AXI4-Stream ports (see module docstring).

    Parameters
    ----------
    top : DataflowTop
        The network; the wrapper owns it as a submodule.

    Members
    -------
    aclk : In(1)
        Clock; every register of the core is on its rising edge.
    aresetn : In(1)
        Active-low reset, synchronous to ``aclk``.
    s_axis_tdata : In(unsigned(8·n))
        One pixel, all channels (:func:`axis_layouts`).
    s_axis_tvalid, s_axis_tlast : In(1)
        Pixel offered; last pixel of an image.
    s_axis_tready : Out(1)
        The core takes the pixel this cycle.
    m_axis_tdata : Out(unsigned(8·m))
        One image's logits and class.
    m_axis_tvalid, m_axis_tlast : Out(1)
        Result offered (held, with its data, until taken); ``tlast`` on every beat.
    m_axis_tready : In(1)
        The sink takes the result this cycle.
    frame_error : Out(1)
        Sticky: some ``s_axis_tlast`` disagreed with the pixel count since reset.

    Raises
    ------
    TypeError
        ``top`` is not a :class:`DataflowTop`.
    """

    def __init__(self, top: DataflowTop) -> None:
        if not isinstance(top, DataflowTop):
            raise TypeError(f"Top must be a DataflowTop, not {top!r}")
        self.top = top
        self.s_layout, self.m_layout = axis_layouts(top)
        super().__init__(
            {
                "aclk": In(1),
                "aresetn": In(1),
                "s_axis_tdata": In(unsigned(self.s_layout.width)),
                "s_axis_tvalid": In(1),
                "s_axis_tready": Out(1),
                "s_axis_tlast": In(1),
                "m_axis_tdata": Out(unsigned(self.m_layout.width)),
                "m_axis_tvalid": Out(1),
                "m_axis_tready": In(1),
                "m_axis_tlast": Out(1),
                "frame_error": Out(1),
            }
        )

    def header_comment(self, name: str) -> str:
        """A Verilog comment stating module ``name``'s two ``tdata`` layouts."""
        lines = [f"// {name}: AXI4-Stream IP written by inq-hw (layouts also in manifest.json)"]
        lines += _layout_comment(self.s_layout, "s_axis_tdata")
        lines += _layout_comment(self.m_layout, "m_axis_tdata")
        return "\n".join(lines) + "\n"

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.domains.sync = sync = ClockDomain("sync", local=True)
        m.d.comb += [sync.clk.eq(self.aclk), sync.rst.eq(~self.aresetn)]
        m.submodules.top = top = self.top
        i, o = top.i, top.o
        m.d.comb += [
            i.payload.eq(self.s_axis_tdata[: self.s_layout.used]),
            i.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(i.ready),
            self.m_axis_tdata.eq(o.payload),  # zero-extended: the padding is zero
            self.m_axis_tvalid.eq(o.valid),
            o.ready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(1),
        ]
        self._check_tlast(m, i.valid & i.ready)
        return m

    def _check_tlast(self, m: Module, taken: Any) -> None:
        """Count the pixels taken; flag a ``tlast`` off the last pixel of an image."""
        beats = self.top.first.beats
        count = Signal(unsigned(max(1, ceil_log2(beats))))
        last = count == beats - 1
        with m.If(taken):
            m.d.sync += count.eq(0 if beats == 1 else count + 1)
            with m.If(last):
                m.d.sync += count.eq(0)
            with m.If(self.s_axis_tlast != last):
                m.d.sync += self.frame_error.eq(1)
