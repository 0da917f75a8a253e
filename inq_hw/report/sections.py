"""The report's content: validated results in, document blocks out.

Every figure comes straight from ``results.json`` (percentages of its fractions, nJ of its
pJ, mm² of its µm²), so the report and the results cannot disagree; the only derived
numbers are differences to FP32 and the twin-over-shift-add ratios, named as such.
A part the results lack reads "not measured"; a cell that has no meaning (a multiplier
twin has no one-shot accuracy) reads "—". The paper's figures are in a section of their
own, labelled as the paper's.
"""

import json
import math
import re
from typing import Any

from inq_hw.report.document import Block, Bullets, Heading, Image, Note, Paragraph, Table
from inq_hw.report.paper import PAPER_CITATION, PAPER_NETWORKS, PAPER_NOTES, PAPER_RESNET18_BITS
from inq_hw.report.plots import trade_off_points
from inq_hw.report.schema import (
    hardware_accuracy,
    lookup,
    twin_accuracy,
    twin_label,
    uniform_accuracy,
)

__all__ = [
    "NOT_APPLICABLE",
    "NOT_MEASURED",
    "build_document",
    "count",
    "percent",
    "points",
    "significant",
]

NOT_MEASURED = "not measured"
NOT_APPLICABLE = "—"
#: Integer accuracy within this of FP32 counts as lossless (ARCHITECTURE.md: 0.5 %).
LOSSLESS_POINTS = 0.5


def percent(value: float | None) -> str:
    """``0.99164`` → ``"99.16%"``."""
    return NOT_MEASURED if value is None else f"{100 * value:.2f}%"


def count(value: int | None) -> str:
    """``15248`` → ``"15,248"``."""
    return NOT_MEASURED if value is None else f"{value:,}"


def significant(value: float | None, scale: float = 1.0, digits: int = 4) -> str:
    """``value * scale`` to ``digits`` significant digits, never in exponent notation."""
    if value is None:
        return NOT_MEASURED
    scaled = value * scale
    if scaled == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(scaled))))
    return f"{scaled:,.{decimals}f}"


def points(difference: float) -> str:
    """A difference of fractions in signed percentage points: ``0.0071`` → ``"+0.71"``."""
    return f"{round(100 * difference, 2) + 0.0:+.2f}"  # + 0.0: never "-0.00"


def _verdict(rtl: dict[str, Any] | None, test_samples: int | None) -> str:
    """``bit-exact on 8 of 359 test images (verilator 5.036)``: how many of the test set."""
    if rtl is None:
        return NOT_MEASURED
    simulator = " ".join(
        s for s in (rtl.get("simulator"), rtl.get("simulator_version")) if s is not None
    )
    where = f" ({simulator})" if simulator else ""
    of = (
        f"{rtl['samples']:,} of {test_samples:,} test images"
        if test_samples is not None
        else f"{rtl['samples']:,} test images (test-set size not recorded)"
    )
    if rtl["mismatched_samples"]:
        return f"MISMATCH on {rtl['mismatched_samples']:,} of {of}{where}"
    return f"bit-exact on {of}{where}"


def _test_samples(results: dict[str, Any]) -> int | None:
    return lookup(results, "dataset", "test_samples")


def _slice_outputs(results: dict[str, Any]) -> int | None:
    """Outputs per synthesised slice: the results' own figure, else the flow option."""
    for entry in results["bits"]:
        outputs = lookup(entry, "cost", "ice40", "slice_outputs")
        if outputs is not None:
            return int(outputs)
    outputs = lookup(results, "config", "synth_outputs")
    return outputs if isinstance(outputs, int) else None


def _slices(results: dict[str, Any]) -> str:
    """``2-output slices``: what the synthesis figures measure (never the whole network)."""
    outputs = _slice_outputs(results)
    return f"{outputs}-output slices" if outputs is not None else "per-layer slices"


def _folding(results: dict[str, Any]) -> str:
    """The folding of the simulated dataflow top: ``folding 8`` or ``folding conv1 8, ...``."""
    foldings: dict[str, int] = {}
    for entry in results["bits"]:
        foldings.update(lookup(entry, "rtl", "folding") or {})
    if not foldings:
        config = lookup(results, "config", "folding")
        foldings = config if isinstance(config, dict) else {}
    values = set(foldings.values())
    if len(values) == 1:
        return f"folding {values.pop()} on every layer"
    if foldings:
        return "folding " + ", ".join(f"{k} {v}" for k, v in foldings.items())
    return "folding not recorded"


# -- the sections ----------------------------------------------------------------------------


def build_document(results: dict[str, Any], images: list[Image]) -> list[Block]:
    """The whole report: header, summary, plots, the whole network on an FPGA, per-bit
    tables, the paper, the run."""
    from inq_hw.report.implementation import implementation_section  # it reads this module

    return [
        Heading(f"INQ bit-width trade-off report: {results['name']}", 1),
        Paragraph(_header(results)),
        *_summary(results),
        *_designs_note(results),
        *_plots(images),
        *implementation_section(results),
        *_per_bits(results),
        *_paper(results),
        *_run(results),
    ]


def _header(results: dict[str, Any]) -> str:
    dataset = results.get("dataset") or {}
    samples = dataset.get("test_samples")
    parts = [
        f"Data set: {dataset.get('name', NOT_MEASURED)}"
        + (f" ({samples:,} test samples)" if samples is not None else ""),
        f"created {results.get('created', NOT_MEASURED)}",
    ]
    cpus = lookup(results, "machine", "cpus")
    if cpus is not None:
        parts.append(f"on {cpus} CPUs")
    return ", ".join(parts) + ". Every figure below is from results.json beside this report."


def _summary(results: dict[str, Any]) -> list[Block]:
    fp32 = results["fp32"]["accuracy"]
    trained = [e for e in results["bits"] if e.get("twin")]
    twin = (
        "uniform multiplier twins trained at each width (integer) "
        + ", ".join(
            f"{percent(twin_accuracy(results, e, 'integer'))} at {e['bits']} bits" for e in trained
        )
        if trained
        else f"8-bit uniform multiplier twin (integer) {percent(uniform_accuracy(results))}"
    )
    bullets = [
        f"FP32 accuracy {percent(fp32)}; {twin}.",
        _lossless(results, fp32),
        *_savings(results),
        _front(results),
        _rtl_summary(results),
    ]
    headers = (
        "bits",
        "INQ float",
        "integer",
        "agreement",
        "integer − FP32 (points)",
        "energy shift-add (nJ)",
        "energy mult8 twin (nJ)",
        "energy twin ÷ shift-add",
        f"iCE40 LUT shift-add ({_slices(results)})",
        "RTL simulation",
    )
    tested = _test_samples(results)
    rows = []
    for entry in results["bits"]:
        integer = lookup(entry, "accuracy", "integer")
        energy = lookup(entry, "cost", "analytic", "energy_pj") or {}
        rows.append(
            (
                str(entry["bits"]),
                percent(entry["accuracy"]["inq"]),
                percent(integer),
                percent(lookup(entry, "accuracy", "agreement")),
                NOT_MEASURED if integer is None else points(integer - fp32),
                significant(energy.get("shift_add"), 1e-3),
                significant(energy.get("mult8"), 1e-3),
                _ratio(energy.get("mult8"), energy.get("shift_add")),
                count(lookup(entry, "cost", "ice40", "lut", "shift_add")),
                _verdict(entry.get("rtl"), tested),
            )
        )
    return [Heading("Summary"), Bullets(tuple(bullets)), Table(headers, tuple(rows))]


def _lossless(results: dict[str, Any], fp32: float) -> str:
    kept = [
        e["bits"] for e in results["bits"] if 100 * (fp32 - hardware_accuracy(e)) <= LOSSLESS_POINTS
    ]
    if not kept:
        return f"No bit-width keeps the hardware accuracy within {LOSSLESS_POINTS} points of FP32."
    return (
        f"Smallest bit-width whose hardware (integer) accuracy is within {LOSSLESS_POINTS} "
        f"points of FP32: {min(kept)} bits."
    )


def _savings(results: dict[str, Any]) -> list[str]:
    """The shift-add design's analytic energy and area against its twin, per bit-width."""
    ratios = []
    for entry in results["bits"]:
        analytic = lookup(entry, "cost", "analytic") or {}
        pairs = [(analytic.get(key) or {}) for key in ("energy_pj", "area_um2")]
        if all(part.get("shift_add") and part.get("mult8") for part in pairs):
            energy, area = (_ratio(part["mult8"], part["shift_add"]) for part in pairs)
            ratios.append(f"{entry['bits']} bits {energy} energy, {area} area")
    if not ratios:
        return []
    return [
        "Multiplier twin ÷ shift-add design (analytic, unrolled units): " + "; ".join(ratios) + "."
    ]


def _ratio(twin: float | None, shift_add: float | None) -> str:
    """The one ratio direction of the report: twin ÷ shift-add, ``85.7x``."""
    if twin is None or not shift_add:
        return NOT_MEASURED
    return f"{twin / shift_add:.1f}x"


def _designs_note(results: dict[str, Any]) -> list[Block]:
    """Which design every figure belongs to: they are three different pieces of hardware."""
    return [
        Heading("Which design each figure measures"),
        Bullets(
            (
                "Cycles per image and latency: the folded streaming dataflow top that was "
                f"simulated ({_folding(results)}).",
                "Energy and area (analytic, 45 nm, Horowitz ISSCC 2014): the fully unrolled "
                "constant-weight units, one per layer output, priced per operation.",
                f"iCE40 LUTs, Yosys gates and Nangate45 figures: synthesis of "
                f"{_slices(results)} (each layer's unit cut to its first outputs), summed over "
                "the layers; not the whole-network design"
                + (
                    ", whose place and route is in 'Whole network on an FPGA'."
                    if _any_implementation(results)
                    else ", which was not implemented."
                ),
                "Units: energy in nJ per inference, area in mm²; every ratio is "
                "twin ÷ shift-add (above 1: the shift-add design is cheaper).",
            )
        ),
    ]


def _any_implementation(results: dict[str, Any]) -> bool:
    return any(entry.get("implementation") is not None for entry in results["bits"])


def _front(results: dict[str, Any]) -> str:
    front = [p for p in trade_off_points(results) if p.pareto]
    if not front:
        return f"Accuracy against energy: {NOT_MEASURED} (no analytic energy)."
    names = ", ".join(
        f"{p.label} ({percent(p.accuracy)}, {significant(p.energy_pj, 1e-3)} nJ)"
        for p in sorted(front, key=lambda p: p.energy_pj)
    )
    return f"Pareto front of accuracy against energy per inference: {names}."


def _rtl_summary(results: dict[str, Any]) -> str:
    simulated = [e for e in results["bits"] if e.get("rtl") is not None]
    if not simulated:
        return f"RTL simulation: {NOT_MEASURED}."
    failed = [e["bits"] for e in simulated if e["rtl"]["mismatched_samples"]]
    if failed:
        return f"RTL simulation: MISMATCHES against the integer model at {failed} bits."
    widths = ", ".join(str(e["bits"]) for e in simulated)
    return f"RTL simulation: bit-exact against the integer model at {widths} bits."


def _plots(images: list[Image]) -> list[Block]:
    if not images:
        return [Heading("Plots"), Paragraph(f"Plots: {NOT_MEASURED}.")]
    return [Heading("Plots"), *images]


def _per_bits(results: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = [
        Heading("Per bit-width results"),
        Paragraph(
            "Columns: the INQ power-of-two design (shift-add hardware), its uniform "
            "multiplier twin (8-bit, or trained at the same width) and the FP32 twin. Energy "
            "and area are analytic (unrolled units, 45 nm); gates and LUTs come from "
            f"synthesis of {_slices(results)}; cycles "
            f"from the folded dataflow top ({_folding(results)}). "
            f"'{NOT_MEASURED}': the run did not measure it; '{NOT_APPLICABLE}': no such figure. "
            "iCE40 FF, DSP and Fmax rows appear only where a design has a figure other "
            "than 0 (the synthesised slices are combinational, and unplaced)."
        ),
    ]
    for entry in results["bits"]:
        blocks += [Heading(f"{entry['bits']}-bit", 3), _bit_table(results, entry)]
    return blocks


def _bit_table(results: dict[str, Any], entry: dict[str, Any]) -> Table:
    na = NOT_APPLICABLE

    def designs(keys: tuple[str, ...], fmt: Any, fp32: bool = False) -> tuple[str, str, str]:
        part = lookup(entry, *keys) or {}
        return (
            fmt(part.get("shift_add")),
            fmt(part.get("mult8")),
            fmt(part.get("fp32")) if fp32 else na,
        )

    accuracy, weights, rtl = entry["accuracy"], entry.get("weights") or {}, entry.get("rtl")
    rtl_part = rtl or {}
    energy = designs(("cost", "analytic", "energy_pj"), _nj, True)
    area = designs(("cost", "analytic", "area_um2"), _mm2, True)
    slices = _slices(results)
    folding = _folding(results)
    rows = [
        (
            "accuracy, float",
            percent(accuracy["inq"]),
            percent(twin_accuracy(results, entry, "float")),
            percent(results["fp32"]["accuracy"]),
        ),
        (
            "accuracy, integer",
            percent(accuracy.get("integer")),
            percent(twin_accuracy(results, entry, "integer")),
            na,
        ),
        (
            "accuracy, one-shot (no re-training)",
            percent(accuracy.get("one_shot")),
            percent(lookup(entry, "twin", "one_shot")) if entry.get("twin") else na,
            na,
        ),
        ("float/integer agreement", percent(accuracy.get("agreement")), na, na),
        ("weights", count(weights.get("count")), na, na),
        ("zero weights", percent(weights.get("zero_fraction")), na, na),
        (
            "weight memory (bits)",
            count(weights.get("memory_bits")),
            count(weights.get("baseline_memory_bits")),
            na,
        ),
        ("energy per inference (nJ, analytic, unrolled units)", *energy),
        ("area (mm², analytic, unrolled units)", *area),
        (f"generic gates (Yosys, {slices})", *designs(("cost", "generic", "gates"), count)),
        (
            f"transistors (Yosys CMOS estimate, {slices})",
            *designs(("cost", "generic", "transistors"), significant),
        ),
        (f"iCE40 LUT ({slices})", *designs(("cost", "ice40", "lut"), count)),
        *_nonzero_rows(
            (
                (f"iCE40 FF ({slices})", designs(("cost", "ice40", "ff"), count)),
                (f"iCE40 DSP ({slices})", designs(("cost", "ice40", "dsp"), count)),
                (
                    f"iCE40 Fmax (MHz, nextpnr, {slices})",
                    designs(("cost", "ice40", "fmax_mhz"), lambda v: significant(v, 1.0, 4)),
                ),
            )
        ),
        *(_nangate45_rows(designs, slices) if lookup(entry, "cost", "nangate45") else []),
        ("RTL simulation", _verdict(rtl, _test_samples(results)), na, na),
        ("RTL samples simulated", count(rtl_part.get("samples")), na, na),
        ("RTL mismatched samples", count(rtl_part.get("mismatched_samples")), na, na),
        (
            f"cycles per image (dataflow top, {folding})",
            count(rtl_part.get("cycles_per_image")),
            na,
            na,
        ),
        (
            f"latency (cycles, dataflow top, {folding})",
            count(rtl_part.get("latency_cycles")),
            na,
            na,
        ),
        ("timing matches manifest", _yes_no(rtl_part.get("timing_matches_manifest")), na, na),
    ]
    bits = entry["bits"]
    headers = ("", f"INQ {bits}-bit (shift-add)", twin_label(entry), "FP32")
    return Table(headers, tuple(rows))


def _nj(value: float | None) -> str:
    """pJ of results.json as the report's nJ."""
    return significant(value, 1e-3)


def _mm2(value: float | None) -> str:
    """µm² of results.json as the report's mm²."""
    return significant(value, 1e-6)


def _nonzero_rows(rows: tuple[tuple[str, tuple[str, ...]], ...]) -> list[tuple[str, ...]]:
    """The rows where some design has a figure other than 0 (an all-0 or unmeasured row of
    combinational, unplaced slices says nothing)."""
    empty = {"0", NOT_MEASURED, NOT_APPLICABLE}
    return [(label, *cells) for label, cells in rows if set(cells) - empty]


def _nangate45_rows(designs: Any, slices: str) -> list[tuple[str, str, str, str]]:
    """Nangate45 figures of the synthesised slices, and the analytic ones of the same
    slices on their own rows (side by side, never mixed), in the report's nJ and mm²."""
    keys = (
        (f"Nangate45 area (mm², {slices})", "area_um2", _mm2),
        ("analytic area, same slices (mm²)", "analytic_area_um2", _mm2),
        ("Nangate45 critical path (ns, OpenSTA)", "critical_ns", significant),
        ("Nangate45 power (mW at 100 MHz, measured activity)", "power_mw", significant),
        (f"Nangate45 energy per inference (nJ, {slices})", "energy_pj", _nj),
        ("analytic energy, same slices (nJ)", "analytic_energy_pj", _nj),
    )
    return [(label, *designs(("cost", "nangate45", key), fmt)) for label, key, fmt in keys]


def _yes_no(value: bool | None) -> str:
    return NOT_MEASURED if value is None else ("yes" if value else "NO")


def _paper(results: dict[str, Any]) -> list[Block]:
    ours = {e["bits"]: e for e in results["bits"]}
    fp32 = results["fp32"]["accuracy"]
    dataset = lookup(results, "dataset", "name") or "our data set"
    beside = []
    for paper in PAPER_RESNET18_BITS:
        entry = ours.get(paper.bits)
        mine = None if entry is None else entry["accuracy"]["inq"]
        beside.append(
            (
                f"{paper.bits}" + (" (ternary)" if paper.bits == 2 else ""),
                f"{paper.inq_top1:.2f}%",
                f"{paper.top1_change:+.2f}",
                percent(mine) if entry is not None else "not run",
                "not run" if mine is None else points(mine - fp32),
            )
        )
    networks = tuple(
        (
            p.network,
            f"{p.fp32_top1}% / {p.fp32_top5}%",
            f"{p.inq_top1}% / {p.inq_top5}%",
            f"{p.top1_change:+.2f}",
        )
        for p in PAPER_NETWORKS
    )
    return [
        Heading("Beside the paper's ImageNet results"),
        Note(
            "The figures in the paper columns below are the paper's own published ImageNet "
            f"results, not ours ({PAPER_CITATION}); several are reported from secondary "
            "copies of the paper. They were not measured by inq-hw. Our columns are this "
            f"run's {results['name']} on {dataset}, a far smaller task: compare the trend "
            "(accuracy change against FP32 as the bit-width falls), not the numbers."
        ),
        Table(
            (
                "bits",
                "paper: ResNet-18 INQ top-1 (ImageNet)",
                "paper: change vs its FP32 68.27% (points)",
                f"ours: INQ float ({dataset})",
                f"ours: change vs our FP32 {percent(fp32)} (points)",
            ),
            tuple(beside),
        ),
        Paragraph("The paper's headline table (ImageNet top-1 / top-5, INQ at 5 bits):"),
        Table(
            (
                "paper: network",
                "paper: FP32 reference",
                "paper: INQ 5-bit",
                "paper: top-1 change (points)",
            ),
            networks,
        ),
        Bullets(tuple(f"Paper: {note}" for note in PAPER_NOTES)),
    ]


def _run(results: dict[str, Any]) -> list[Block]:
    config = results.get("config") or {}
    blocks: list[Block] = [Heading("The run")]
    if config:
        rows = tuple(
            (str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()
        )
        blocks += [
            Paragraph("Configuration (every flow option):"),
            Table(("option", "value"), rows),
        ]
    else:
        blocks.append(Paragraph(f"Configuration: {NOT_MEASURED}."))
    machine = results.get("machine") or {}
    if machine:
        rows = tuple(
            (str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in machine.items()
        )
        blocks += [Paragraph("Machine:"), Table(("", "value"), rows)]
    blocks.append(_stage_table(results))
    return blocks


_PER_BITS = re.compile(r"^(?P<stage>.+?) (?P<bits>\d+)-bit$")


def _stage_table(results: dict[str, Any]) -> Block:
    """One row per stage, one column per bit-width (and one for stages run once).

    The flow names a per-bit stage ``"simulate 3-bit"``; that time goes to row
    ``simulate``, column ``3-bit``, as do the times an entry's own ``stage_seconds`` holds.
    """
    widths = [e["bits"] for e in results["bits"]]
    columns = [None, *widths]
    stages: dict[str, list[str]] = {}

    def put(stage: str, bits: int | None, seconds: float) -> None:
        match = _PER_BITS.match(stage)
        if bits is None and match and int(match["bits"]) in widths:
            stage, bits = match["stage"], int(match["bits"])
        stages.setdefault(stage, [NOT_APPLICABLE] * len(columns))[columns.index(bits)] = (
            f"{seconds:.1f}"
        )

    for stage, seconds in (results.get("stage_seconds") or {}).items():
        put(stage, None, seconds)
    for entry in results["bits"]:
        for stage, seconds in (entry.get("stage_seconds") or {}).items():
            put(stage, entry["bits"], seconds)
    if not stages:
        return Paragraph(f"Stage times: {NOT_MEASURED}.")
    rows = tuple((stage, *cells) for stage, cells in stages.items())
    if all(cells[0] == NOT_APPLICABLE for cells in stages.values()):
        columns, rows = widths, tuple((row[0], *row[2:]) for row in rows)
    headers = ("stage (seconds)", *("once" if c is None else f"{c}-bit" for c in columns))
    return Table(headers, rows)
