"""The report's plots: matplotlib figures rendered to PNG bytes (Agg, no pyplot state).

Each plot is a function of the validated results returning PNG bytes, or None when the
results hold nothing to plot (a stage not measured); :data:`PLOTS` lists them with their
file names and captions. Nothing here writes a file: the renderer writes every output only
once all of them exist, so a failing plot leaves the report directory untouched.
"""

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inq_hw.report.schema import hardware_accuracy, lookup, uniform_accuracy

__all__ = [
    "PLOTS",
    "Plot",
    "TradeOff",
    "log_scale",
    "pareto_front",
    "throughput_plot",
    "trade_off_points",
]

_DESIGN_STYLE = {
    "shift_add": ("power-of-two shift-add", "o-", "tab:blue"),
    "mult8": ("8-bit uniform multiplier twin", "s--", "tab:red"),
    "fp32": ("FP32 twin", "^:", "tab:gray"),
}

_SHORT = {"shift_add": "shift-add", "mult8": "mult8 twin", "fp32": "FP32 twin"}


@dataclass(frozen=True)
class Plot:
    file: str
    caption: str
    make: Callable[[dict[str, Any]], bytes | None]


@dataclass(frozen=True)
class TradeOff:
    """One design on the accuracy-energy plane."""

    label: str
    design: str
    bits: int | None
    energy_pj: float
    accuracy: float
    pareto: bool = False


def trade_off_points(results: dict[str, Any]) -> list[TradeOff]:
    """Every design with a measured accuracy and analytic energy, the Pareto front marked.

    The shift-add design at each bit-width is placed at its integer accuracy (what the
    hardware computes; the float INQ accuracy where the integer one is missing); the
    multiplier twin at the 8-bit uniform accuracy; the FP32 twin once, at FP32 accuracy.
    """
    points = []
    uniform = uniform_accuracy(results)
    fp32_energy = None
    for entry in results["bits"]:
        energy = lookup(entry, "cost", "analytic", "energy_pj") or {}
        bits = entry["bits"]
        accuracy = hardware_accuracy(entry)
        if energy.get("shift_add") is not None:
            points.append(
                TradeOff(f"{bits}-bit shift-add", "shift_add", bits, energy["shift_add"], accuracy)
            )
        if energy.get("mult8") is not None and uniform is not None:
            points.append(
                TradeOff(f"mult8 twin of {bits}-bit", "mult8", bits, energy["mult8"], uniform)
            )
        if energy.get("fp32") is not None:
            fp32_energy = energy["fp32"]
    if fp32_energy is not None:
        points.append(TradeOff("FP32 twin", "fp32", None, fp32_energy, results["fp32"]["accuracy"]))
    front = set(pareto_front([(p.energy_pj, p.accuracy) for p in points]))
    return [
        TradeOff(p.label, p.design, p.bits, p.energy_pj, p.accuracy, i in front)
        for i, p in enumerate(points)
    ]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the ``(cost, accuracy)`` points no other point beats in both."""

    def dominated(i: int) -> bool:
        cost, accuracy = points[i]
        return any(c <= cost and a >= accuracy and (c, a) != (cost, accuracy) for c, a in points)

    return [i for i in range(len(points)) if not dominated(i)]


# -- the figures -----------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    # No Software stamp: the same results give the same bytes (committed reports diff cleanly).
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


def log_scale(ax: Any, which: str) -> None:
    """Log scale labelled with plain numbers (20, 100, 400), not 2x10^1, on major ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _series(results: dict[str, Any], *keys: str) -> tuple[list[int], list[float]]:
    pairs = [(e["bits"], lookup(e, *keys)) for e in results["bits"]]
    kept = [(b, v) for b, v in pairs if v is not None]
    return [b for b, _ in kept], [v for _, v in kept]


def accuracy_plot(results: dict[str, Any]) -> bytes | None:
    """Test accuracy against bit-width, full range and the top range that decides a width.

    The right panel spans only the INQ, FP32 and uniform figures, with one test image's
    share of the accuracy (``1 / test_samples``) drawn as a bar, so a difference of one
    image is visible beside the 0-100 % view that shows the one-shot collapse.
    """
    fig = _figure(10.5, 4.2)
    full, top = fig.subplots(1, 2, width_ratios=(1, 1.3))
    fp32, uniform = results["fp32"]["accuracy"], uniform_accuracy(results)
    near = [100 * fp32] + ([100 * uniform] if uniform is not None else [])
    for ax in (full, top):
        for keys, label, style in (
            (("accuracy", "inq"), "INQ (float)", "o-"),
            (("accuracy", "integer"), "INQ integer model", "s-"),
            (("accuracy", "one_shot"), "one-shot power-of-two (no re-training)", "x--"),
        ):
            bits, values = _series(results, *keys)
            if bits:
                ax.plot(bits, [100 * v for v in values], style, label=label)
                if keys[1] != "one_shot":
                    near += [100 * v for v in values]
        ax.axhline(100 * fp32, color="black", lw=1, label="FP32")
        if uniform is not None:
            ax.axhline(100 * uniform, color="tab:red", ls=":", label="8-bit uniform twin")
        ax.set_xticks([e["bits"] for e in results["bits"]])
        ax.set_xlabel("weight bit-width")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
    full.set_title("full range", fontsize=9)
    low, high = min(near), max(near)
    image = _image_points(results)
    margin = max(0.3 * (high - low), image or 0.0, 0.2)
    top.set_ylim(low - margin, min(100.0, high + margin) + margin / 4)
    top.set_title("top range (one-shot off the scale)", fontsize=9)
    if image is not None:
        x = results["bits"][-1]["bits"] + 0.35
        top.annotate(
            "", (x, low), (x, low + image), arrowprops={"arrowstyle": "|-|", "color": "tab:purple"}
        )
        top.annotate(
            f"1 test image\n= {image:.2f} points",
            (x, low + image / 2),
            xytext=(-6, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=7,
            color="tab:purple",
        )
        top.set_xlim(right=x + 0.15)
    fig.suptitle(f"{results['name']}: accuracy against bit-width", fontsize=10)
    handles, labels = full.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    return _png(fig)


def _image_points(results: dict[str, Any]) -> float | None:
    """One test image's share of the test accuracy, in percentage points."""
    samples = lookup(results, "dataset", "test_samples")
    return 100 / samples if samples else None


def cost_plot(results: dict[str, Any]) -> bytes | None:
    """Energy per inference and area (analytic; iCE40 LUTs if measured) against bit-width."""
    panels = [
        (
            ("cost", "analytic", "energy_pj"),
            1e-3,
            "energy per inference (nJ)",
            "energy, analytic 45 nm (unrolled units)",
        ),
        (
            ("cost", "analytic", "area_um2"),
            1e-6,
            "area (mm²)",
            "area, analytic 45 nm (unrolled units)",
        ),
        (
            ("cost", "ice40", "lut"),
            1.0,
            "iCE40 LUTs",
            f"iCE40 LUTs, synthesis of {_slice_label(results)}",
        ),
    ]
    panels = [p for p in panels if any(_series(results, *p[0], d)[0] for d in _DESIGN_STYLE)]
    if not panels:
        return None
    fig = _figure(4.6 * len(panels), 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (keys, scale, label, title) in zip(axes, panels, strict=True):
        for design, (name, style, color) in _DESIGN_STYLE.items():
            bits, values = _series(results, *keys, design)
            if bits:
                ax.plot(bits, [v * scale for v in values], style, color=color, label=name)
        log_scale(ax, "y")
        ax.set_xticks([e["bits"] for e in results["bits"]])
        ax.set_xlabel("weight bit-width")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes:  # every design once, whichever panel has it
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=3, fontsize=8)
    return _png(fig)


def _slice_label(results: dict[str, Any]) -> str:
    for entry in results["bits"]:
        outputs = lookup(entry, "cost", "ice40", "slice_outputs")
        if outputs is not None:
            return f"{outputs}-output slices"
    return "per-layer slices"


def pareto_plot(results: dict[str, Any]) -> bytes | None:
    """Accuracy against energy per inference, the Pareto front joined and ringed."""
    points = trade_off_points(results)
    if not points:
        return None
    fig = _figure(6.5, 4.5)
    ax = fig.subplots()
    for design, (name, style, color) in _DESIGN_STYLE.items():
        chosen = [p for p in points if p.design == design]
        if chosen:
            xs = [p.energy_pj * 1e-3 for p in chosen]
            ax.scatter(
                xs, [100 * p.accuracy for p in chosen], marker=style[0], color=color, label=name
            )
    front = sorted((p for p in points if p.pareto), key=lambda p: p.energy_pj)
    ax.plot(
        [p.energy_pj * 1e-3 for p in front],
        [100 * p.accuracy for p in front],
        "o",
        ms=14,
        mfc="none",
        mec="green",
        label="Pareto front",
    )
    ax.step(
        [p.energy_pj * 1e-3 for p in front],
        [100 * p.accuracy for p in front],
        "g-",
        where="post",
        lw=1,
    )
    _annotate(ax, points)
    log_scale(ax, "x")
    ax.set_xlabel("energy per inference (nJ, analytic 45 nm)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _annotate(ax: Any, points: list[TradeOff]) -> None:
    """One label per design at one place: the multiplier twins of every bit-width sit within
    a rounding of each other, so they get one label; labels alternate sides by rank of
    energy so neighbours do not overprint."""
    groups: dict[tuple[str, float, float], list[TradeOff]] = {}
    for p in points:
        key = (p.design, float(f"{p.energy_pj:.2g}"), round(100 * p.accuracy, 1))
        groups.setdefault(key, []).append(p)
    for i, ((design, _, _), group) in enumerate(sorted(groups.items(), key=lambda g: g[0][1])):
        bits = [str(p.bits) for p in group if p.bits is not None]
        if design == "mult8":
            text = "8-bit twin" + (" (same at every bit-width)" if len(bits) > 1 else "")
        else:
            text = _SHORT[design] + (f" ({', '.join(bits)}-bit)" if bits else "")
        x = sum(p.energy_pj for p in group) / len(group) * 1e-3
        y = 100 * sum(p.accuracy for p in group) / len(group)
        offset, va = ((6, 6), "bottom") if i % 2 == 0 else ((6, -6), "top")
        ax.annotate(text, (x, y), fontsize=7, xytext=offset, textcoords="offset points", va=va)


def _layers(results: dict[str, Any]) -> list[str]:
    names: dict[str, None] = {}
    for entry in results["bits"]:
        names.update(dict.fromkeys(lookup(entry, "weights", "layers") or {}))
    return list(names)


def exponent_plot(results: dict[str, Any]) -> bytes | None:
    """Per layer, the share of weights at each exponent (and zero), one bar per bit-width."""
    layers = _layers(results)
    if not layers:
        return None
    cols = min(3, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig = _figure(4.4 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, layer in zip(axes, layers, strict=False):
        _exponent_panel(ax, results, layer)
    for ax in axes[len(layers) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, title="bit-width", title_fontsize=7)
    return _png(fig)


def _exponent_panel(ax: Any, results: dict[str, Any], layer: str) -> None:
    histograms = {
        e["bits"]: h
        for e in results["bits"]
        if (h := lookup(e, "weights", "layers", layer, "exponent_histogram"))
    }
    exponents = sorted({int(k) for h in histograms.values() for k in h if k != "zero"})
    keys = ["zero", *map(str, exponents)]
    width = 0.8 / max(1, len(histograms))
    for i, (bits, histogram) in enumerate(histograms.items()):
        total = sum(histogram.values()) or 1
        xs = [x + (i - (len(histograms) - 1) / 2) * width for x in range(len(keys))]
        ax.bar(xs, [100 * histogram.get(k, 0) / total for k in keys], width, label=str(bits))
    ax.set_xticks(range(len(keys)), ["zero", *map(str, exponents)], fontsize=8)
    ax.set_title(layer, fontsize=9)
    ax.set_xlabel("weight exponent k (weight ±2^k), or zero", fontsize=8)
    ax.set_ylabel("weights (%)", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(True, axis="y", alpha=0.3)


def zero_plot(results: dict[str, Any]) -> bytes | None:
    """Share of zero weights against bit-width: the whole network and each layer."""
    bits, overall = _series(results, "weights", "zero_fraction")
    layers = _layers(results)
    if not bits and not layers:
        return None
    fig = _figure(6.5, 4.2)
    ax = fig.subplots()
    for layer in layers:
        xs, ys = _series(results, "weights", "layers", layer, "zero_fraction")
        ax.plot(xs, [100 * y for y in ys], ".--", lw=0.8, label=layer)
    if bits:
        ax.plot(bits, [100 * v for v in overall], "o-", color="black", lw=2, label="whole network")
    ax.set_xticks([e["bits"] for e in results["bits"]])
    ax.set_xlabel("weight bit-width")
    ax.set_ylabel("zero weights (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    return _png(fig)


_IMPLEMENTED_STYLE = {
    "shift_add": ("power-of-two shift-add", "o-", "tab:blue"),
    "mult8": ("8-bit multiplier twin, DSP", "s--", "tab:red"),
    "mult8_lut": ("8-bit multiplier twin, LUT only", "D:", "tab:orange"),
}


def throughput_plot(results: dict[str, Any]) -> bytes | None:
    """Images per second at Fmax against LUTs of each bit-width's placed and routed whole
    top and its twins, each point labelled with its bit-width; the device's LUTs marked."""
    from inq_hw.report.implementation import implemented

    placed = [(b, d, f) for b, d, f in implemented(results) if f.get("images_per_second")]
    if not placed:
        return None
    fig = _figure(6.5, 4.5)
    ax = fig.subplots()
    for design, (name, style, color) in _IMPLEMENTED_STYLE.items():
        chosen = sorted(
            (f["resources"]["lut"], f["images_per_second"], b) for b, d, f in placed if d == design
        )
        if not chosen:
            continue
        ax.plot([c[0] for c in chosen], [c[1] for c in chosen], style, color=color, label=name)
        for lut, rate, bits in chosen:
            ax.annotate(
                f"{bits}-bit",
                (lut, rate),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=7,
                color=color,
            )
    device = _implemented_device(results)
    if device is not None:
        ax.axvline(device[1], color="black", lw=1, ls="-.", label=f"{device[0]} LUTs")
    log_scale(ax, "x")
    log_scale(ax, "y")
    ax.set_xlabel("LUT4 of the whole top (placed and routed)")
    ax.set_ylabel("images per second at Fmax")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _implemented_device(results: dict[str, Any]) -> tuple[str, int] | None:
    """The implementation device's name and LUT count, if recorded."""
    for entry in results["bits"]:
        lut = lookup(entry, "implementation", "device_resources", "lut")
        if lut is not None:
            return entry["implementation"]["device"], lut
    return None


PLOTS = (
    Plot(
        "accuracy.png",
        "Test accuracy against weight bit-width: full range, and the top range with one "
        "test image's width marked",
        accuracy_plot,
    ),
    Plot(
        "cost.png",
        "Energy and area (analytic, unrolled units) and iCE40 LUTs (synthesised slices) "
        "against bit-width: shift-add vs multiplier twin",
        cost_plot,
    ),
    Plot(
        "pareto.png",
        "Accuracy against analytic energy per inference, Pareto front ringed",
        pareto_plot,
    ),
    Plot("exponents.png", "Per-layer weight exponent histograms at each bit-width", exponent_plot),
    Plot("zeros.png", "Share of zero weights at each bit-width", zero_plot),
    Plot(
        "throughput.png",
        "Whole network on an FPGA: images per second at Fmax against LUTs, per bit-width, "
        "shift-add vs multiplier twin",
        throughput_plot,
    ),
)
