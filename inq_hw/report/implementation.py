"""The report's whole-network section: each bit-width's dataflow top placed and routed.

Rows come from ``bits[i].implementation`` of ``results.json`` (the flow's implementation
stage, :func:`inq_hw.implement.implement_rtl`): per design (the shift-add top, its 8-bit
multiplier twin with DSP blocks, the twin on LUTs only) the top's resources, their share
of the device, Fmax from nextpnr, whether the clock constraint was met, images per second
at Fmax and microseconds per image. The derived figures are the ratios twin ÷ shift-add
(the report's one ratio direction); a design the device cannot hold reads "does not fit".
"""

from typing import Any

from inq_hw.report.document import Block, Bullets, Heading, Paragraph, Table
from inq_hw.report.schema import IMPLEMENTED_DESIGNS, lookup
from inq_hw.report.sections import NOT_APPLICABLE, NOT_MEASURED, count

__all__ = ["DESIGN_NAMES", "implementation_section", "implemented"]

#: How the report names each implemented design.
DESIGN_NAMES = {
    "shift_add": "shift-add",
    "mult8": "mult8 twin, DSP",
    "mult8_lut": "mult8 twin, LUT only",
}
_RESOURCES = ("lut", "ff", "carry", "bram", "dsp")
_FILLED = ("lut", "ff", "bram", "dsp")
DOES_NOT_FIT = "does not fit"


def implemented(results: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """``(bits, design, figures)`` of every implemented or refused design, in order."""
    rows = []
    for entry in results["bits"]:
        designs = lookup(entry, "implementation", "designs") or {}
        for design in IMPLEMENTED_DESIGNS:
            if designs.get(design) is not None:
                rows.append((entry["bits"], design, designs[design]))
    return rows


def _fixed(value: float | None, decimals: int) -> str:
    return NOT_MEASURED if value is None else f"{value:,.{decimals}f}"


def _fill(shares: dict[str, Any]) -> str:
    """``LUT 23.4%, FF 9.1%, BRAM 0.0%``: the device's share of each resource it has."""
    parts = [
        f"{name.upper()} {100 * shares[name]:.1f}%"
        for name in _FILLED
        if shares.get(name) is not None
    ]
    return ", ".join(parts) or NOT_MEASURED


def _ratio(twin: float | None, shift_add: float | None) -> str:
    if twin is None or not shift_add:
        return NOT_APPLICABLE
    return f"{twin / shift_add:.2f}x"


def _timing(figures: dict[str, Any], clock: float | None) -> str:
    met = figures.get("timing_met")
    if met is None:
        return NOT_MEASURED
    at = f" at {clock:g} MHz" if clock is not None else ""
    return ("met" if met else "NOT met") + at


def _row(
    entry: dict[str, Any], design: str, figures: dict[str, Any], base: dict[str, Any] | None
) -> tuple[str, ...]:
    name = DESIGN_NAMES[design]
    if figures.get("refused") is not None:
        return (str(entry["bits"]), name, DOES_NOT_FIT, *[NOT_APPLICABLE] * 11)
    used = figures.get("resources") or {}
    clock = lookup(entry, "implementation", "clock_mhz")
    twin = design != "shift_add" and base is not None and base.get("refused") is None
    return (
        str(entry["bits"]),
        name,
        *(count(used.get(key)) for key in _RESOURCES),
        _fill(figures.get("device_share") or {}),
        _fixed(figures.get("fmax_mhz"), 1),
        _timing(figures, clock),
        _fixed(figures.get("images_per_second"), 0),
        _fixed(figures.get("us_per_image"), 2),
        _ratio(used.get("lut"), lookup(base, "resources", "lut")) if twin else NOT_APPLICABLE,
        _ratio(figures.get("images_per_second"), lookup(base, "images_per_second"))
        if twin
        else NOT_APPLICABLE,
    )


def _device(results: dict[str, Any]) -> str:
    for entry in results["bits"]:
        part = entry.get("implementation")
        if part is not None:
            name = part["device"] + (f" ({part['part']})" if part.get("part") else "")
            return f"{name}, clock constraint {part['clock_mhz']:g} MHz"
    return NOT_MEASURED


def _folding(results: dict[str, Any]) -> str:
    foldings: dict[str, int] = {}
    fitted: list[str] = []
    for entry in results["bits"]:
        foldings.update(lookup(entry, "implementation", "folding") or {})
        for design, folding in (lookup(entry, "implementation", "foldings") or {}).items():
            chosen = ", ".join(f"{k} {v}" for k, v in folding.items())
            fitted.append(f"{entry['bits']}-bit {DESIGN_NAMES[design]}: {chosen}")
    if fitted:
        return "folding fitted to the device per top: " + "; ".join(fitted)
    if any(lookup(e, "implementation", "fit") for e in results["bits"]) and foldings:
        return "folding fitted to the device: " + ", ".join(f"{k} {v}" for k, v in foldings.items())
    if not foldings:
        return "folding not recorded"
    values = set(foldings.values())
    if len(values) == 1:
        return f"folding {values.pop()} on every layer"
    return "folding " + ", ".join(f"{k} {v}" for k, v in foldings.items())


def _widths(results: dict[str, Any]) -> str:
    """``2 bits`` or ``2, 3 bits``: the bit-widths implemented (the flow's --implement-bits)."""
    widths = [str(e["bits"]) for e in results["bits"] if e.get("implementation") is not None]
    return ", ".join(widths) + " bits"


def _refusals(results: dict[str, Any]) -> list[str]:
    return [
        f"{bits}-bit {DESIGN_NAMES[design]}: {figures['refused']}"
        for bits, design, figures in implemented(results)
        if figures.get("refused") is not None
    ]


def implementation_section(results: dict[str, Any]) -> list[Block]:
    """The whole-network table, or one line saying it was not measured."""
    rows = []
    for entry in results["bits"]:
        designs = lookup(entry, "implementation", "designs") or {}
        base = designs.get("shift_add")
        for design in IMPLEMENTED_DESIGNS:
            if designs.get(design) is not None:
                rows.append(_row(entry, design, designs[design], base))
    heading = Heading("Whole network on an FPGA")
    if not rows:
        return [heading, Paragraph(f"Place and route of the whole network: {NOT_MEASURED}.")]
    headers = (
        "bits",
        "design",
        "LUT4",
        "FF",
        "carry",
        "BRAM",
        "DSP",
        "device fill",
        "Fmax (MHz)",
        "timing",
        "images/s at Fmax",
        "µs per image",
        "LUT twin ÷ shift-add",
        "images/s twin ÷ shift-add",
    )
    blocks: list[Block] = [
        heading,
        Paragraph(
            f"The whole dataflow top ({_folding(results)}) of {_widths(results)} and its "
            f"8-bit multiplier twin, synthesised (Yosys), placed and routed (nextpnr) with a "
            f"bitstream on {_device(results)}. Figures are the top's alone (the pin wrapper "
            "excluded); device fill is the share of the device's LUTs, flip-flops, block "
            "RAMs and DSPs; Fmax is nextpnr's; images/s is Fmax ÷ the interval in cycles, "
            "µs per image its inverse. The twin with DSPs maps its multipliers to the "
            "device's DSP blocks, the LUT-only twin to logic (a fair LUT count). Ratios are "
            "twin ÷ shift-add: LUTs above 1, the twin is larger; images/s below 1, it is slower."
        ),
        Table(headers, tuple(rows)),
    ]
    refusals = _refusals(results)
    if refusals:
        blocks.append(Bullets(tuple(f"{DOES_NOT_FIT}: {text}" for text in refusals)))
    return blocks
