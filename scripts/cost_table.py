"""Reproduce README's cost table: digits-cnn layers at b = 2..5, shift-add vs mult8 twin.

Usage::

    .venv/bin/python scripts/cost_table.py --packages runs/cost --out reports/cost-digits

Reads the packages ``PACKAGES/pkg{b}`` (``inq-hw export`` of the digits-cnn at each b;
runs/cost/make.sh), synthesises a fixed slice of every layer's shift-add unit and of its
8-bit multiplier twin with Yosys, one run at a time (generic gates and ``stat -tech cmos``
transistors; ``synth_ice40`` LUT4 and DSPs; cached in ``--cache``), prices the same slices
analytically (45 nm Horowitz table) and checks the analytic area ranking of the layers
against synthesis. The analytic energy column is the whole layer per inference.

The slice: a unit keeps ``max(1, --max-weights // inputs)`` of its outputs (all of them
if fewer), chosen by :func:`inq_hw.cost.designs.subset_model` (the first ones, the last
replaced by the output holding the layer's largest 8-bit weight if it is not among them).
The shift-add unit and its twin are cut to the same rows, so their ratio is that of the
same outputs. A run past ``--timeout`` is recorded as ``timeout`` and the table goes on.
Writes ``results.json`` and ``table.md`` atomically into ``--out``.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

from inq_hw.checkpoint import atomic_write
from inq_hw.cost import SynthesisTimeout, analyze
from inq_hw.cost.check import compare_rankings
from inq_hw.cost.designs import layer_jobs, subset_model
from inq_hw.cost.synth import synth_script, synthesize
from inq_hw.intmodel import IntModel
from inq_hw.intmodel.package import load_package

TARGETS = ("generic", "ice40")
DESIGNS = (("shift-add", None), ("mult8", "mult8"))
MEASURES = (("transistors", "generic"), ("gates", "generic"), ("lut", "ice40"))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=Path, default=Path("runs/cost"))
    parser.add_argument("--bits", default="2,3,4,5")
    parser.add_argument("--out", type=Path, default=Path("reports/cost-digits"))
    parser.add_argument("--max-weights", type=int, default=288)
    parser.add_argument("--cache", type=Path, default=Path("runs/cost/cache"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per Yosys run")
    parser.add_argument("--abc", default="fast", help="ABC script: fast or full")
    return parser.parse_args()


def _run(job: Any, target: str, args: argparse.Namespace) -> dict[str, Any]:
    try:
        result = synthesize(
            job, target, cache_dir=args.cache, timeout_s=args.timeout, abc=args.abc
        ).to_dict()
    except SynthesisTimeout:
        result = {"timeout": True, "seconds": args.timeout}
    state = "timeout" if result.get("timeout") else "cached" if result["cached"] else "done"
    print(f"    {job.label} {target}: {state} ({result['seconds']:.0f} s)", flush=True)
    return result


def _synth(model: IntModel, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``{layer: {design: {target: figures}, "params": ...}}``, one Yosys run at a time."""
    out: dict[str, dict[str, Any]] = {}
    for design, baseline in DESIGNS:
        for job, params in layer_jobs(model, baseline=baseline, max_weights=args.max_weights):
            entry = out.setdefault(params["layer"], {"params": params})
            entry[design] = {target: _run(job, target, args) for target in TARGETS}
    return out


def _analytic_units(model: IntModel, synth: dict[str, Any]) -> dict[str, Any]:
    """Analytic figures of the units as synthesised (the same output subsets)."""
    units = {}
    for name, entry in synth.items():
        outputs = entry["params"]["outputs_synthesised"]
        (layer,) = [c for c in analyze(subset_model(model, name, outputs)).layers if c.name == name]
        units[name] = {d: layer.designs[d].to_dict() for d, _ in DESIGNS}
    return units


def _checks(synth: dict[str, Any], units: dict[str, Any]) -> dict[str, Any]:
    """Per design and measure: the analytic area ranking of the layers against synthesis
    (layers whose run timed out are left out)."""
    checks = {}
    for design, _ in DESIGNS:
        for metric, target in MEASURES:
            done = [n for n in synth if not synth[n][design][target].get("timeout")]
            if len(done) < 2:
                continue
            analytic = {n: units[n][design]["area_um2"] for n in done}
            measured = {n: float(synth[n][design][target][metric]) for n in done}
            checks[f"{design}/{metric}"] = compare_rankings(analytic, measured)
    return checks


def _one(bits: int, args: argparse.Namespace) -> dict[str, Any]:
    model = load_package(args.packages / f"pkg{bits}")
    print(f"b = {bits}", flush=True)
    start = time.perf_counter()
    synth = _synth(model, args)
    network = analyze(model)
    energy = {c.name: {d: c.designs[d].energy_pj for d, _ in DESIGNS} for c in network.layers}
    units = _analytic_units(model, synth)
    return {
        "bits": bits,
        "layers": synth,
        "analytic_units": units,
        "analytic_energy_pj": {name: energy[name] for name in synth},
        "analytic_network": network.to_dict()["ratios"],
        "checks": _checks(synth, units),
        "seconds": time.perf_counter() - start,
    }


def _ratio(entry: dict[str, Any], target: str, metric: str) -> str:
    ours, theirs = entry["shift-add"][target], entry["mult8"][target]
    if ours.get("timeout") or theirs.get("timeout"):
        return "timeout"
    return f"{theirs[metric] / ours[metric]:.2f}"


def _slice(params: dict[str, Any]) -> str:
    kept, total = params["outputs_synthesised"], params["outputs_total"]
    rows = params["rows_synthesised"]
    which = "all" if kept == total else "rows " + ",".join(map(str, rows))
    return f"{params['inputs']} in x {kept}/{total} out ({which})"


def _cold_seconds(results: list[dict[str, Any]]) -> float:
    """Yosys seconds of a run with an empty cache: every distinct design once (the twins
    are the same at every b, so b > 2 finds them in the cache in any run)."""
    runs = {}
    for run in results:
        for entry in run["layers"].values():
            for design, _ in DESIGNS:
                for target in TARGETS:
                    figures = entry[design][target]
                    runs[figures.get("key") or id(figures)] = figures["seconds"]
    return sum(runs.values())


def _markdown(results: list[dict[str, Any]], args: argparse.Namespace, seconds: float) -> str:
    lines = [
        "8-bit multiplier twin ÷ shift-add unit, digits-cnn (8x8 input, 16-32-32 conv + fc), "
        "per layer and code width b. Above 1: the shift-add design is smaller by that factor.",
        "",
        f"Produced by `python scripts/cost_table.py --max-weights {args.max_weights}` "
        f"(this run {seconds / 60:.0f} min; with an empty cache "
        f"{_cold_seconds(results) / 60:.0f} min of Yosys, one run at a time on 2 shared "
        "cores). Synthesis "
        f"runs on a slice of each layer's constant-weight unit (a conv unit is one window: "
        f"Cin·3·3 inputs): max(1, {args.max_weights} // inputs) outputs, the same rows for "
        "both designs, listed per row. Generic: "
        f"`{'; '.join(synth_script('generic', 'top', abc=args.abc))}`, `stat -tech cmos`. "
        f"iCE40: `synth_ice40` with classic ABC LUT mapping without SAT sweeping "
        "(inq_hw/cost/synth.py), no DSPs inferred. Analytic energy: the whole layer per "
        "inference, 45 nm (Horowitz, ISSCC 2014), constant multipliers priced by their CSD "
        "digits.",
        "",
        "| b | layer | slice synthesised | generic gates | transistors (cmos) | iCE40 LUT4 "
        "| shift-add DSPs | analytic energy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in results:
        for name, entry in run["layers"].items():
            e = run["analytic_energy_pj"][name]
            dsp = entry["shift-add"]["ice40"].get("dsp", "timeout")
            lines.append(
                f"| {run['bits']} | {name} | {_slice(entry['params'])} "
                f"| {_ratio(entry, 'generic', 'gates')} "
                f"| {_ratio(entry, 'generic', 'transistors')} "
                f"| {_ratio(entry, 'ice40', 'lut')} | {dsp} "
                f"| {e['mult8'] / e['shift-add']:.2f} |"
            )
    lines += [
        "",
        "Analytic area of the same slices against synthesis: do the layers rank the same? "
        "Spearman's rank correlation over the layers (1: same order); spread: the largest "
        "over the smallest synthesis / analytic factor (1: proportional).",
        "",
        "| b | design / measure | same ranking | Spearman | spread |",
        "|---|---|---|---|---|",
    ]
    for run in results:
        for key, check in run["checks"].items():
            lines.append(
                f"| {run['bits']} | {key} | {'yes' if check['same_ranking'] else 'no'} "
                f"| {check['spearman']:.2f} | {check['spread']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = _parse()
    start = time.perf_counter()
    results = [_one(int(b), args) for b in args.bits.split(",")]
    seconds = time.perf_counter() - start
    report = {
        "runs": results,
        "max_weights": args.max_weights,
        "abc": args.abc,
        "timeout_s": args.timeout,
        "seconds": seconds,
        "cold_yosys_seconds": _cold_seconds(results),
    }
    text = json.dumps(report, indent=1, sort_keys=True) + "\n"
    atomic_write(args.out / "results.json", lambda tmp: _write(tmp, text))
    table = _markdown(results, args, seconds)
    atomic_write(args.out / "table.md", lambda tmp: _write(tmp, table))
    print(table)


def _write(path: Path, text: str) -> None:
    path.write_text(text)


if __name__ == "__main__":
    main()
