"""The report of a design-space sweep: sweep.json in; sweep.md, sweep.html and PNGs out.

A *design* is one bit-width of one configuration (a point without its seed); its figures
are the mean and spread over the seeds the sweep ran. For each hardware figure some design
has (LUTs of the placed and routed top, LUTs of the synthesised unit slices, analytic
energy per inference, images/s at Fmax), the report draws accuracy against it and lists
the Pareto front: the designs no other design beats in both, on their means. A figure no
point has (a stage the sweep skipped) is named as absent, not left out silently.

Points whose flow trains the uniform twin at each width (``twin = "uniform"``) give two
designs per bit-width, the power-of-two one (``po2``) and its uniform twin (``uniform``),
both on every front; a section compares them at equal width, paired by seed (the same FP32
model, partition and epochs), and says where power-of-two wins and by how much.
"""

import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inq_hw.report.document import (
    Block,
    Heading,
    Image,
    Note,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from inq_hw.report.schema import lookup

__all__ = [
    "METRICS",
    "SWEEP_FORMAT",
    "SWEEP_VERSION",
    "compare_formats",
    "render_sweep_report",
    "summarize",
]

SWEEP_FORMAT = "inq-hw-sweep"
SWEEP_VERSION = 1


@dataclass(frozen=True)
class Metric:
    """A hardware figure of a flow's bit-width entry, and how to read it."""

    key: str
    short: str  # a table's column
    label: str
    higher_is_better: bool
    read: Callable[[dict[str, Any], str], float | None]  # (entry, "po2" or "uniform")
    absent: str  # why a point may lack it


#: The flow's design keys of each weight format: cost figures, and the placed top (the
#: uniform twin on LUTs only where it was implemented so, for a LUT-for-LUT comparison).
_COST_KEY = {"po2": "shift_add", "uniform": "mult8"}
_PLACED_KEYS = {"po2": ("shift_add",), "uniform": ("mult8_lut", "mult8")}


def _placed(entry: dict[str, Any], form: str, *keys: str) -> float | None:
    designs = lookup(entry, "implementation", "designs") or {}
    figures = next((designs[k] for k in _PLACED_KEYS[form] if designs.get(k)), None)
    if not isinstance(figures, dict) or figures.get("refused"):
        return None
    value = lookup(figures, *keys)
    return float(value) if isinstance(value, int | float) else None


def _cost(entry: dict[str, Any], form: str, target: str, figure: str) -> float | None:
    value = lookup(entry, "cost", target, figure, _COST_KEY[form])
    return float(value) if isinstance(value, int | float) else None


def _accuracy(entry: dict[str, Any], form: str) -> float | None:
    """Integer test accuracy of the power-of-two design or of its trained uniform twin."""
    value = (
        lookup(entry, "accuracy", "integer") if form == "po2" else lookup(entry, "twin", "integer")
    )
    return float(value) if isinstance(value, int | float) else None


METRICS = (
    Metric(
        "lut",
        "LUT (top)",
        "LUTs of the whole top, placed and routed",
        False,
        lambda e, f: _placed(e, f, "resources", "lut"),
        "no implementation stage (skip_implementation, implement_bits, or refused: too large)",
    ),
    Metric(
        "lut_ice40",
        "iCE40 LUT4 (slices)",
        "iCE40 LUT4 of the unit slices",
        False,
        lambda e, f: _cost(e, f, "ice40", "lut"),
        "no iCE40 synthesis (targets without ice40, or skip_synthesis)",
    ),
    Metric(
        "lut_ecp5",
        "ECP5 LUT4 (slices)",
        "ECP5 LUT4 of the unit slices",
        False,
        lambda e, f: _cost(e, f, "ecp5", "lut"),
        "no ECP5 synthesis (targets without ecp5, or skip_synthesis)",
    ),
    Metric(
        "energy_nj",
        "energy (nJ)",
        "energy per inference, nJ (analytic 45 nm)",
        False,
        lambda e, f: None if (pj := _cost(e, f, "analytic", "energy_pj")) is None else pj / 1e3,
        "no analytic cost (targets without analytic)",
    ),
    Metric(
        "images_per_second",
        "images/s",
        "images/s of the placed and routed top at its Fmax",
        True,
        lambda e, f: _placed(e, f, "images_per_second"),
        "no implementation stage, or no Fmax",
    ),
)


def _stats(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "mean": statistics.fmean(values),
        "std": spread,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarize(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The designs of sweep.json's points: one per (group, bit-width, weight format), with
    the mean and spread (sample standard deviation, min, max) of every figure over the
    seeds. The format is ``po2``, or ``uniform`` for a point's trained uniform twin."""
    designs: dict[tuple[str, int, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    several = any(len(p.get("results", {}).get("bits", [])) > 1 for p in points)
    entries_of = [(p, e) for p in points for e in p.get("results", {}).get("bits", [])]
    twins = any(e.get("twin") for _, e in entries_of)
    for point, entry in entries_of:
        for form in ("po2", "uniform") if entry.get("twin") else ("po2",):
            designs.setdefault((point["group"], entry["bits"], form), []).append((point, entry))
    summary = []
    for (group, bits, form), members in designs.items():
        entries = [entry for _, entry in members]
        figures = {
            m.key: _stats([v for e in entries if (v := m.read(e, form)) is not None])
            for m in METRICS
        }
        name = f"{group} {bits}-bit" if several else group
        summary.append(
            {
                "design": f"{name} {form}" if twins else name,
                "group": group,
                "bits": bits,
                "format": form,
                "axes": {k: v for k, v in members[0][0]["axes"].items() if k != "seed"},
                "points": [point["name"] for point, _ in members],
                "seeds": [point["axes"].get("seed") for point, _ in members],
                "accuracy": _stats([v for e in entries if (v := _accuracy(e, form)) is not None]),
                "fp32_accuracy": _stats([p["results"]["fp32"]["accuracy"] for p, _ in members]),
                "figures": figures,
            }
        )
    return summary


def compare_formats(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Power-of-two against its uniform twin at equal bit-width, per (group, bit-width):
    the per-seed differences (po2 − uniform accuracy, uniform ÷ po2 figures), paired by
    point, with their mean and spread."""
    pairs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for point in points:
        for entry in point.get("results", {}).get("bits", []):
            if entry.get("twin"):
                pairs.setdefault((point["group"], entry["bits"]), []).append(entry)
    rows = []
    for (group, bits), entries in pairs.items():
        gaps = [
            po2 - uniform
            for e in entries
            if (po2 := _accuracy(e, "po2")) is not None
            and (uniform := _accuracy(e, "uniform")) is not None
        ]
        ratios = {}
        for m in METRICS:
            values = [
                ours / theirs if m.higher_is_better else theirs / ours
                for e in entries
                if (ours := m.read(e, "po2")) and (theirs := m.read(e, "uniform"))
            ]
            ratios[m.key] = _stats(values)
        rows.append(
            {
                "group": group,
                "bits": bits,
                "po2": _stats([v for e in entries if (v := _accuracy(e, "po2")) is not None]),
                "uniform": _stats(
                    [v for e in entries if (v := _accuracy(e, "uniform")) is not None]
                ),
                "gap": _stats(gaps),
                "advantage": ratios,
            }
        )
    return sorted(rows, key=lambda r: (r["group"], r["bits"]))


def pareto_designs(designs: list[dict[str, Any]], metric: Metric) -> list[dict[str, Any]]:
    """The designs on the front of mean accuracy against mean ``metric``, by the figure."""
    from inq_hw.report.plots import pareto_front

    have = [d for d in designs if d["figures"].get(metric.key) and d["accuracy"]]
    sign = -1.0 if metric.higher_is_better else 1.0
    pairs = [(sign * d["figures"][metric.key]["mean"], d["accuracy"]["mean"]) for d in have]
    front = [have[i] for i in pareto_front(pairs)]
    return sorted(front, key=lambda d: d["figures"][metric.key]["mean"])


# --- the document -----------------------------------------------------------------------------


def _spread(stats: dict[str, Any] | None, form: Callable[[float], str]) -> str:
    if stats is None:
        return "absent"
    if stats["n"] == 1:
        return f"{form(stats['mean'])} (1 seed)"
    return (
        f"{form(stats['mean'])} ± {form(stats['std'])} "
        f"({form(stats['min'])}–{form(stats['max'])}, {stats['n']} seeds)"
    )


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _figure(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _links(design: dict[str, Any], ext: str) -> str:
    return ", ".join(f"[{name}](points/{name}/report.{ext})" for name in design["points"])


def _front_plot(designs: list[dict[str, Any]], metric: Metric) -> bytes | None:
    from inq_hw.report.plots import _figure as figure
    from inq_hw.report.plots import _png, log_scale

    have = [d for d in designs if d["figures"].get(metric.key) and d["accuracy"]]
    if not have:
        return None
    front = {d["design"] for d in pareto_designs(designs, metric)}
    fig = figure(6.5, 4.5)
    ax = fig.subplots()
    for d in have:
        x, y = d["figures"][metric.key], d["accuracy"]
        on = d["design"] in front
        ax.errorbar(
            x["mean"],
            100 * y["mean"],
            xerr=x["std"],
            yerr=100 * y["std"],
            fmt="o" if on else ".",
            color="tab:green" if on else "tab:gray",
            capsize=3,
        )
        ax.annotate(
            d["design"],
            (x["mean"], 100 * y["mean"]),
            fontsize=7,
            xytext=(5, 4),
            textcoords="offset points",
        )
    line = sorted(
        (d for d in have if d["design"] in front), key=lambda d: d["figures"][metric.key]["mean"]
    )
    ax.plot(
        [d["figures"][metric.key]["mean"] for d in line],
        [100 * d["accuracy"]["mean"] for d in line],
        "g-",
        lw=1,
    )
    values = [d["figures"][metric.key]["mean"] for d in have]
    if min(values) > 0 and max(values) / min(values) > 20:
        log_scale(ax, "x")
    ax.set_xlabel(metric.label)
    ax.set_ylabel("integer test accuracy (%), mean ± std over seeds")
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig)


def _machine(record: dict[str, Any]) -> str:
    m = record["machine"]
    workers = record.get("workers") or []
    hosts = ", ".join(f"{w['host']} ({w['cpu']}, torch {w['torch']})" for w in workers)
    return (
        f"Driver: {m['host']}, {m['cpu']}, {m['cpus']} CPUs, Python {m['python']}, torch "
        f"{m['torch']} ({m['torch_cpu_capability']} kernels); stages train on "
        f"{m['training_threads']} thread. "
        f"Stages computed in this run on: {hosts or 'none (every stage read back)'}."
    )


def build_sweep_document(record: dict[str, Any], images: dict[str, bytes], ext: str) -> list[Block]:
    """The sweep report's blocks; point links go to each point's ``report.<ext>``."""
    designs = record["groups"]
    points = record["points"]
    executor = record["executor"]
    blocks: list[Block] = [
        Heading(f"Design-space sweep: {record['name']}", 1),
        Paragraph(
            f"{len(points)} points: {len(designs)} designs × seeds "
            f"{record['sweep']['seeds']} (a point naming its own seed runs that one), on the "
            f"{executor['kind']} executor with {executor['jobs']} job(s) in flight, "
            f"{record['sweep_seconds']} s. Figures are means ± sample standard deviation over "
            "the seeds, with min–max; each point links to its own flow report."
        ),
        Paragraph(_machine(record)),
    ]
    if failed := [p for p in points if p["status"] != "done"]:
        blocks.append(
            Note("Failed points: " + "; ".join(f"{p['name']}: {p['error']}" for p in failed))
        )
    blocks += [Heading("Every design"), _designs_table(designs, ext)]
    blocks += _formats_section(record.get("formats") or [])
    for metric in METRICS:
        blocks += _metric_section(designs, metric, images, ext)
    return blocks


def _designs_table(designs: list[dict[str, Any]], ext: str) -> Table:
    headers = ("design", "integer accuracy", "FP32", *(m.short for m in METRICS), "points")
    rows = tuple(
        (
            d["design"],
            _spread(d["accuracy"], _percent),
            _spread(d["fp32_accuracy"], _percent),
            *(_spread(d["figures"][m.key], _figure) for m in METRICS),
            _links(d, ext),
        )
        for d in designs
    )
    return Table(headers, rows)


def _formats_section(rows: list[dict[str, Any]]) -> list[Block]:
    """Power-of-two against uniform at each bit-width, paired by seed."""
    if not rows:
        return []
    have = [m for m in METRICS if any(r["advantage"].get(m.key) for r in rows)]
    table = Table(
        (
            "design",
            "po2 accuracy",
            "uniform accuracy",
            "po2 − uniform (points)",
            *(f"uniform ÷ po2, {m.short}" for m in have),
        ),
        tuple(
            (
                f"{r['group']} {r['bits']}-bit",
                _spread(r["po2"], _percent),
                _spread(r["uniform"], _percent),
                _spread(r["gap"], lambda v: f"{100 * v:+.2f}"),
                *(_spread(r["advantage"][m.key], lambda v: f"{v:.2f}x") for m in have),
            )
            for r in rows
        ),
    )
    return [
        Heading("Power-of-two against uniform at equal bit-width"),
        Paragraph(
            "Each point trains both from the same FP32 model with the same incremental "
            "re-training (partition, schedule, epochs, seed); only the weight format differs. "
            "Differences and ratios are per seed, then mean ± std (min–max). A ratio above "
            "1x: the uniform twin needs more (for images/s: the power-of-two top is faster)."
        ),
        table,
    ]


def _metric_section(
    designs: list[dict[str, Any]], metric: Metric, images: dict[str, bytes], ext: str
) -> list[Block]:
    blocks: list[Block] = [Heading(f"Accuracy against {metric.label}")]
    missing = [d["design"] for d in designs if not d["figures"].get(metric.key)]
    if len(missing) == len(designs):
        return [*blocks, Paragraph(f"Absent: no point has this figure ({metric.absent}).")]
    file = f"sweep_{metric.key}.png"
    if file in images:
        blocks.append(Image(file, f"Integer accuracy against {metric.label}", images[file]))
    front = pareto_designs(designs, metric)
    rows = tuple(
        (
            d["design"],
            _spread(d["accuracy"], _percent),
            _spread(d["figures"][metric.key], _figure),
            _links(d, ext),
        )
        for d in front
    )
    blocks += [
        Paragraph(
            "The Pareto front (no other design has both a better mean accuracy and a "
            "better mean figure):"
        ),
        Table(("design", "integer accuracy", metric.short, "points"), rows),
    ]
    if missing:
        blocks.append(Paragraph(f"Absent for {', '.join(missing)} ({metric.absent})."))
    return blocks


def render_sweep_report(record: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``sweep.md``, a self-contained ``sweep.html`` and the front plots into
    ``out_dir`` (each atomically, rendered in memory first)."""
    from inq_hw.files import atomic_write

    images = {
        f"sweep_{m.key}.png": png
        for m in METRICS
        if (png := _front_plot(record["groups"], m)) is not None
    }
    files = dict(images)
    files["sweep.md"] = to_markdown(build_sweep_document(record, images, "md")).encode()
    html = to_html(build_sweep_document(record, images, "html"), title=f"Sweep {record['name']}")
    files["sweep.html"] = _html_links(html).encode()
    written = []
    for name, data in files.items():
        written.append(atomic_write(out_dir / name, _writer(data)))
    return written


def _html_links(text: str) -> str:
    """``[name](path)`` in table cells (escaped text) → a link."""
    return re.sub(r"\[([^\[\]]+)\]\(([^()\s\"<>]+)\)", r'<a href="\2">\1</a>', text)


def _writer(data: bytes) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return write
