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
from typing import Any

from inq_hw.report.document import Block, Bullets, Heading, Image, Note, Paragraph, Table
from inq_hw.report.paper import PAPER_CITATION, PAPER_NETWORKS, PAPER_NOTES, PAPER_RESNET18_BITS
from inq_hw.report.plots import trade_off_points
from inq_hw.report.schema import hardware_accuracy, lookup, uniform_accuracy

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


def _verdict(rtl: dict[str, Any] | None) -> str:
    if rtl is None:
        return NOT_MEASURED
    simulator = " ".join(
        s for s in (rtl.get("simulator"), rtl.get("simulator_version")) if s is not None
    )
    where = f" ({simulator})" if simulator else ""
    if rtl["mismatched_samples"]:
        return f"MISMATCH: {rtl['mismatched_samples']} of {rtl['samples']} samples{where}"
    return f"bit-exact on {rtl['samples']} samples{where}"


# -- the sections ----------------------------------------------------------------------------


def build_document(results: dict[str, Any], images: list[Image]) -> list[Block]:
    """The whole report: header, summary, plots, per-bit tables, the paper, the run."""
    return [
        Heading(f"INQ bit-width trade-off report: {results['name']}", 1),
        Paragraph(_header(results)),
        *_summary(results),
        *_plots(images),
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
    bullets = [
        f"FP32 accuracy {percent(fp32)}; 8-bit uniform multiplier twin (integer) "
        f"{percent(uniform_accuracy(results))}.",
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
        "iCE40 LUT shift-add",
        "RTL simulation",
    )
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
                count(lookup(entry, "cost", "ice40", "lut", "shift_add")),
                _verdict(entry.get("rtl")),
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
            energy, area = (part["mult8"] / part["shift_add"] for part in pairs)
            ratios.append(f"{entry['bits']} bits {energy:.1f}x / {area:.1f}x")
    if not ratios:
        return []
    return [
        "Multiplier twin's energy / area over the shift-add design's (analytic): "
        + "; ".join(ratios)
        + "."
    ]


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
            "Columns: the INQ power-of-two design (shift-add hardware), its 8-bit uniform "
            "multiplier twin and the FP32 twin. Energy and area are analytic (45 nm, "
            "Horowitz ISSCC 2014); gates, LUTs, FFs, DSPs and Fmax come from synthesis. "
            f"'{NOT_MEASURED}': the run did not measure it; '{NOT_APPLICABLE}': no such figure."
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
    energy = designs(("cost", "analytic", "energy_pj"), lambda v: significant(v, 1e-3), True)
    area = designs(("cost", "analytic", "area_um2"), lambda v: significant(v, 1e-6), True)
    rows = [
        (
            "accuracy, float",
            percent(accuracy["inq"]),
            percent(lookup(results, "uniform8", "accuracy")),
            percent(results["fp32"]["accuracy"]),
        ),
        (
            "accuracy, integer",
            percent(accuracy.get("integer")),
            percent(lookup(results, "uniform8", "integer_accuracy")),
            na,
        ),
        ("accuracy, one-shot power-of-two", percent(accuracy.get("one_shot")), na, na),
        ("float/integer agreement", percent(accuracy.get("agreement")), na, na),
        ("weights", count(weights.get("count")), na, na),
        ("zero weights", percent(weights.get("zero_fraction")), na, na),
        (
            "weight memory (bits)",
            count(weights.get("memory_bits")),
            count(weights.get("baseline_memory_bits")),
            na,
        ),
        ("energy per inference (nJ, analytic)", *energy),
        ("area (mm², analytic)", *area),
        ("generic gates (Yosys)", *designs(("cost", "generic", "gates"), count)),
        (
            "transistors (Yosys, CMOS estimate)",
            *designs(("cost", "generic", "transistors"), significant),
        ),
        ("iCE40 LUT", *designs(("cost", "ice40", "lut"), count)),
        ("iCE40 FF", *designs(("cost", "ice40", "ff"), count)),
        ("iCE40 DSP", *designs(("cost", "ice40", "dsp"), count)),
        (
            "iCE40 Fmax (MHz, nextpnr)",
            *designs(("cost", "ice40", "fmax_mhz"), lambda v: significant(v, 1.0, 4)),
        ),
        *(_nangate45_rows(designs) if lookup(entry, "cost", "nangate45") else []),
        ("RTL simulation", _verdict(rtl), na, na),
        ("RTL samples simulated", count(rtl_part.get("samples")), na, na),
        ("RTL mismatched samples", count(rtl_part.get("mismatched_samples")), na, na),
        ("cycles per image", count(rtl_part.get("cycles_per_image")), na, na),
        ("latency (cycles)", count(rtl_part.get("latency_cycles")), na, na),
        ("timing matches manifest", _yes_no(rtl_part.get("timing_matches_manifest")), na, na),
    ]
    bits = entry["bits"]
    headers = ("", f"INQ {bits}-bit (shift-add)", "8-bit uniform (multiplier twin)", "FP32")
    return Table(headers, tuple(rows))


def _nangate45_rows(designs: Any) -> list[tuple[str, str, str, str]]:
    """Nangate45 figures of the synthesised slices, and the analytic ones of the same
    slices on their own rows (side by side, never mixed)."""
    keys = (
        ("Nangate45 area (µm², slices)", "area_um2"),
        ("analytic area, same slices (µm²)", "analytic_area_um2"),
        ("Nangate45 critical path (ns, OpenSTA)", "critical_ns"),
        ("Nangate45 power (mW at 100 MHz, measured activity)", "power_mw"),
        ("Nangate45 energy per inference (pJ, slices)", "energy_pj"),
        ("analytic energy, same slices (pJ)", "analytic_energy_pj"),
    )
    return [(label, *designs(("cost", "nangate45", key), significant)) for label, key in keys]


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


def _stage_table(results: dict[str, Any]) -> Block:
    stages: dict[str, list[str]] = {}
    columns = ["all", *(f"{e['bits']}-bit" for e in results["bits"])]
    parts = [
        results.get("stage_seconds") or {},
        *(e.get("stage_seconds") or {} for e in results["bits"]),
    ]
    for column, part in enumerate(parts):
        for stage, seconds in part.items():
            stages.setdefault(stage, [NOT_APPLICABLE] * len(parts))[column] = f"{seconds:.1f}"
    if not stages:
        return Paragraph(f"Stage times: {NOT_MEASURED}.")
    rows = tuple((stage, *cells) for stage, cells in stages.items())
    return Table(("stage (seconds)", *columns), rows)
