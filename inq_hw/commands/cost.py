"""Subcommand ``cost``: the shift-add design against its multiplier twin, per layer.

``--target analytic`` prices operation counts with a technology table (fast, no tools);
``generic``, ``ice40`` and ``ecp5`` synthesise rtl_gen's units with Yosys (cached);
``nangate45`` maps them to the Nangate45 cells and times and powers them with OpenSTA,
with switching activity from a simulation on ``--activity-images`` test images, beside
the analytic figures of the same slices (:mod:`inq_hw.cost.asic_layers`). Prints a table
(shift-add, baseline, shift-add / baseline) and writes the figures as JSON.

Example usage::

    inq-hw cost build/inq5                         # analytic, 45 nm Horowitz table
    inq-hw cost build/inq5 --target ice40 --jobs 2 --json
    inq-hw cost build/inq5 --target nangate45 --activity-images 4 --period 10
"""

import argparse
import json
from pathlib import Path
from typing import Any

from inq_hw.checkpoint import atomic_write
from inq_hw.commands.common import format_table, output_file, progress
from inq_hw.commands.registry import command
from inq_hw.cost.errors import CostError

__all__ = ["DESIGN_SCOPES", "TARGETS", "cost"]

TARGETS = ("analytic", "generic", "ice40", "ecp5", "nangate45")
DESIGN_SCOPES = ("units", "top")
_SYNTH_METRICS = {
    "generic": ("gates", "transistors", "ff"),
    "ice40": ("lut", "carry", "ff", "dsp", "bram"),
    "ecp5": ("lut", "carry", "ff", "dsp", "bram"),
}


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="package directory written by 'inq-hw export'")
    parser.add_argument("--target", default="analytic", help=f"one of {', '.join(TARGETS)}")
    parser.add_argument(
        "--baseline", default="mult8", help="mult8 (default) or, analytic only, fp32"
    )
    parser.add_argument("--tech", type=Path, default=None, help="technology table (JSON/TOML)")
    parser.add_argument(
        "--out", type=output_file, default=None, help="default: PACKAGE/cost-TARGET.json"
    )
    parser.add_argument("--pipeline", type=int, default=0, help="pipeline stages per unit")
    parser.add_argument(
        "--max-outputs", type=int, default=None, help="synthesise at most N outputs per layer"
    )
    parser.add_argument("--jobs", type=int, default=None, help="parallel syntheses (CPU count)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per tool run")
    parser.add_argument("--cache", type=Path, default=None, help="synthesis cache directory")
    parser.add_argument("--abc", default="fast", help="ABC script (generic, ice40): fast or full")
    parser.add_argument(
        "--fmax", action="store_true", help="place and route registered units (nextpnr)"
    )
    parser.add_argument(
        "--max-weights",
        type=int,
        default=288,
        help="nangate45: synthesise max(1, N // inputs) outputs per layer (default 288)",
    )
    parser.add_argument(
        "--activity-images",
        type=int,
        default=4,
        help="nangate45: test images simulated for switching activity (0: OpenSTA default)",
    )
    parser.add_argument(
        "--period", type=float, default=10.0, help="nangate45: clock period in ns (power)"
    )
    parser.add_argument(
        "--design",
        choices=DESIGN_SCOPES,
        default="units",
        help="nangate45: the layer units (default) or the whole dataflow top and its twin",
    )
    parser.add_argument(
        "--fold",
        action="append",
        default=[],
        metavar="LAYER=F",
        help="nangate45 --design top: fold of LAYER (repeatable, 'all=F'; capped at the "
        "layer's outputs; default: every layer folded by its outputs, one lane each)",
    )


def _validate(args: argparse.Namespace) -> None:
    if args.target not in TARGETS:
        raise CostError(f"Target must be one of {TARGETS}, not {args.target!r}")
    if (args.design != "units" or args.fold) and args.target != "nangate45":
        raise CostError(f"--design and --fold apply to --target nangate45, not {args.target!r}")
    if args.fold and args.design != "top":
        raise CostError("--fold applies to --design top (the dataflow top)")
    allowed = ("mult8", "fp32") if args.target == "analytic" else ("mult8",)
    if args.baseline not in allowed:
        raise CostError(
            f"Baseline for target {args.target!r} must be one of {allowed}, not {args.baseline!r}"
        )


def _analytic(args: argparse.Namespace) -> tuple[dict[str, Any], list[list[Any]]]:
    from inq_hw.cost import HOROWITZ_45NM, analyze, load_table
    from inq_hw.intmodel import load_package

    table = load_table(args.tech) if args.tech else HOROWITZ_45NM
    result = analyze(load_package(args.package), table)
    rows: list[list[Any]] = []
    for layer in [*result.layers, None]:
        name = layer.name if layer else "network"
        for metric in ("energy_pj", "area_um2"):
            if (
                layer is not None
                and metric == "area_um2"
                and layer.kind not in ("conv2d", "linear")
            ):
                continue
            ours = getattr(
                layer.designs["shift-add"] if layer else result.total("shift-add"), metric
            )
            theirs = getattr(
                layer.designs[args.baseline] if layer else result.total(args.baseline), metric
            )
            rows.append([name, metric, _num(ours), _num(theirs), _ratio(theirs, ours)])
    memory = result.memory
    rows.append(
        [
            "network",
            "weight_bits",
            memory["shift-add"]["bits"],
            memory[args.baseline]["bits"],
            _ratio(memory[args.baseline]["bits"], memory["shift-add"]["bits"]),
        ]
    )
    return result.to_dict(), rows


def _synth(args: argparse.Namespace) -> tuple[dict[str, Any], list[list[Any]]]:
    from inq_hw.cost.designs import layer_jobs
    from inq_hw.cost.synth import default_cache_dir, synthesize_all
    from inq_hw.intmodel import load_package

    model = load_package(args.package)
    options = {
        "cache_dir": args.cache or default_cache_dir(),
        "timeout_s": args.timeout,
        "abc": args.abc,
        "fmax": args.fmax,
    }
    sides = {}
    with progress(args) as bar:
        for design, baseline in (("shift-add", None), (args.baseline, args.baseline)):
            pairs = layer_jobs(
                model, baseline=baseline, stages=args.pipeline, max_outputs=args.max_outputs
            )
            results = synthesize_all(
                [job for job, _ in pairs], args.target, workers=args.jobs, progress=bar, **options
            )
            sides[design] = [(params, r) for (_, params), r in zip(pairs, results, strict=True)]
    layers, rows = [], []
    for (params, ours), (_, theirs) in zip(sides["shift-add"], sides[args.baseline], strict=True):
        name = params["layer"]
        if params["outputs_synthesised"] != params["outputs_total"]:
            name += f" ({params['outputs_synthesised']}/{params['outputs_total']} outputs)"
        for metric in _SYNTH_METRICS[args.target]:
            a, b = getattr(ours, metric), getattr(theirs, metric)
            rows.append([name, metric, a, b, _ratio(b, a)])
        if args.fmax and ours.fmax_mhz is not None:
            rows.append(
                [
                    name,
                    "fmax_mhz",
                    _num(ours.fmax_mhz),
                    _num(theirs.fmax_mhz),
                    _ratio(theirs.fmax_mhz, ours.fmax_mhz),
                ]
            )
        layers.append(
            {
                "layer": params["layer"],
                "params": params,
                "shift-add": ours.to_dict(),
                args.baseline: theirs.to_dict(),
            }
        )
    return {"layers": layers}, rows


def _nangate45(args: argparse.Namespace) -> tuple[dict[str, Any], list[list[Any]]]:
    from inq_hw.cost.asic_layers import METRICS, asic_layers
    from inq_hw.cost.synth import default_cache_dir
    from inq_hw.intmodel import load_package

    if args.activity_images < 0:
        raise CostError(f"--activity-images must be 0 or more, not {args.activity_images}")
    if args.design == "top":
        return _nangate45_top(args)
    model = load_package(args.package)
    cache = args.cache or default_cache_dir()
    with progress(args) as bar:
        layers = asic_layers(
            model,
            max_weights=args.max_weights,
            max_outputs=args.max_outputs,
            activity=_activity(model, args.activity_images, cache),
            period_ns=args.period,
            cache_dir=cache,
            timeout_s=args.timeout,
            abc=args.abc,
            progress=bar,
        )
    rows = []
    for layer in layers:
        params, asic, analytic = layer["params"], layer["asic"], layer["analytic"]
        name = f"{params['layer']} ({params['outputs_synthesised']}/{params['outputs_total']})"
        rows += [
            _asic_row(name, metric, asic, analytic, ours, theirs)
            for metric, ours, theirs in METRICS
        ]
    return {"layers": layers, "period_ns": args.period}, rows


def _asic_row(
    name: str,
    metric: str,
    asic: dict[str, Any],
    analytic: dict[str, Any],
    ours: str,
    theirs: str | None,
) -> list[str]:
    """One table row: Nangate45 shift-add, twin, ratio; the analytic ones (or ``-``)."""
    a, b = asic["shift-add"][ours], asic["mult8"][ours]
    row = [name, metric, _num4(a), _num4(b), _ratio(b, a)]
    if theirs is None:
        return [*row, "-", "-", "-"]
    c, d = analytic["shift-add"][theirs], analytic["mult8"][theirs]
    return [*row, _num4(c), _num4(d), _ratio(d, c)]


#: Rows of the top's table: (label, the figures' key, the analytic network total's key or
#: ``None``), as :data:`METRICS` for the layers.
_TOP_METRICS = (
    ("area_um2", "area_um2", "area_um2"),
    ("cells", "cells", None),
    ("critical_ns", "critical_ns", None),
    ("fmax_mhz", "fmax_mhz", None),
    ("power_mw", "power_mw", None),
    ("cycles_per_inference", "interval_cycles", None),
    ("energy_pj_per_inference", "energy_pj", "energy_pj"),
)


def _nangate45_top(args: argparse.Namespace) -> tuple[dict[str, Any], list[list[Any]]]:
    from inq_hw.commands.hardware import dataflow_folding
    from inq_hw.cost.asic_top import asic_top
    from inq_hw.cost.synth import default_cache_dir

    cache = args.cache or default_cache_dir()
    folding = dataflow_folding(args.fold, args.package) if args.fold else None
    with progress(args) as bar:
        top = asic_top(
            args.package,
            folding=folding,
            activity=_top_activity(args.package, args.activity_images, cache, args.timeout),
            period_ns=args.period,
            cache_dir=cache,
            timeout_s=args.timeout,
            abc=args.abc,
            progress=bar,
        )
    asic, analytic = top["asic"], top["analytic"]
    rows = [
        _asic_row("dataflow top", label, asic, analytic, key, theirs)
        for label, key, theirs in _TOP_METRICS
    ]
    return {"design": "top", "top": top, "period_ns": args.period}, rows


def _top_activity(package: Path, images: int, cache: Path, timeout_s: float) -> Any:
    """The dataflow top's activity measurement on ``images`` test images, or ``None``."""
    from sim.top_activity import top_activity

    if images == 0:
        return None
    return lambda rtl: top_activity(
        package, rtl, images=images, cache_dir=cache / "activity", timeout_s=timeout_s
    )


def _activity(model: Any, images: int, cache: Path) -> Any:
    """The unit-activity measurement on ``images`` test images, or ``None`` for 0."""
    from sim.unit_activity import unit_activity

    if images == 0:
        return None
    return lambda job, layer: unit_activity(
        job, model, layer, images=images, cache_dir=cache / "activity"
    )


def _num4(value: float) -> Any:
    return float(f"{value:.4g}")


def _num(value: float | None) -> Any:
    return None if value is None else round(value, 1)


def _ratio(twin: float | None, shift_add: float | None) -> str:
    """Twin ÷ shift-add, the one direction of every ratio in ``inq-hw cost`` (issue 20)."""
    if twin is None or shift_add is None:
        return "-"
    return f"{twin / shift_add:.3f}" if shift_add else ("1.000" if not twin else "inf")


@command("cost", "Area and energy of the shift-add design against its multiplier twin.", _configure)
def cost(args: argparse.Namespace) -> dict[str, Any]:
    _validate(args)
    run = {"analytic": _analytic, "nangate45": _nangate45}.get(args.target, _synth)
    figures, rows = run(args)
    suffix = "-top" if args.target == "nangate45" and args.design == "top" else ""
    out = args.out or args.package / f"cost-{args.target}{suffix}.json"
    summary = {
        "package": str(args.package),
        "target": args.target,
        "baseline": args.baseline,
        **figures,
    }
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    atomic_write(out, lambda tmp: _write_text(tmp, text))
    header = ["layer", "metric", "shift-add", args.baseline, args.baseline + " / shift-add"]
    if args.target == "nangate45":
        header += [
            "analytic shift-add",
            f"analytic {args.baseline}",
            f"analytic {args.baseline} / shift-add",
        ]
    table = format_table(header, rows)
    return {**summary, "out": str(out), "_text": f"{table}\n-> {out}"}


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)
