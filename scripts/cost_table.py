"""Reproduce README's cost table: digits-cnn layers at b = 2..5, shift-add vs mult8 twin.

Usage::

    .venv/bin/python scripts/cost_table.py --packages runs/cost --out reports/cost-digits

Reads the packages ``PACKAGES/pkg{b}`` (``inq-hw export`` of the digits-cnn at each b,
see the Makefile's ``demo``), synthesises every layer's shift-add unit and its 8-bit
multiplier twin with Yosys (generic gates, ``stat -tech cmos`` transistors, ``synth_ice40``
LUTs and DSPs; cached), prices the same units analytically (45 nm Horowitz table) and
checks the analytic area ranking of the layers against synthesis. Layers with more than
``--max-outputs`` outputs are synthesised on that many outputs (the analytic figures of
the comparison use the same subset; the energy column is the whole layer). Writes
``results.json`` and ``table.md`` atomically into ``--out``.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

from inq_hw.checkpoint import atomic_write
from inq_hw.cost import analyze
from inq_hw.cost.check import compare_rankings
from inq_hw.cost.designs import layer_jobs, subset_model
from inq_hw.cost.synth import synthesize_all
from inq_hw.intmodel import IntModel
from inq_hw.intmodel.package import load_package

TARGETS = ("generic", "ice40")
DESIGNS = (("shift-add", None), ("mult8", "mult8"))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=Path, default=Path("runs/cost"))
    parser.add_argument("--bits", default="2,3,4,5")
    parser.add_argument("--out", type=Path, default=Path("reports/cost-digits"))
    parser.add_argument("--max-outputs", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("runs/cost/cache"))
    parser.add_argument("--timeout", type=float, default=3600.0)
    return parser.parse_args()


def _synth(model: IntModel, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``{layer: {design: {target: figures}, "params": ...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for design, baseline in DESIGNS:
        pairs = layer_jobs(model, baseline=baseline, max_outputs=args.max_outputs)
        for target in TARGETS:
            start = time.perf_counter()
            results = synthesize_all(
                [job for job, _ in pairs],
                target,
                workers=args.jobs,
                cache_dir=args.cache,
                timeout_s=args.timeout,
            )
            print(f"  {design} {target}: {time.perf_counter() - start:.0f} s", flush=True)
            for (_, params), result in zip(pairs, results, strict=True):
                entry = out.setdefault(params["layer"], {"params": params})
                entry.setdefault(design, {})[target] = result.to_dict()
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
    checks = {}
    for design, _ in DESIGNS:
        analytic = {name: units[name][design]["area_um2"] for name in synth}
        for metric, target in (("transistors", "generic"), ("gates", "generic"), ("lut", "ice40")):
            measured = {name: float(synth[name][design][target][metric]) for name in synth}
            checks[f"{design}/{metric}"] = compare_rankings(analytic, measured)
    return checks


def _one(bits: int, args: argparse.Namespace) -> dict[str, Any]:
    model = load_package(args.packages / f"pkg{bits}")
    print(f"b = {bits}", flush=True)
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
    }


def _ratio(entry: dict[str, Any], target: str, metric: str) -> float:
    return entry["shift-add"][target][metric] / entry["mult8"][target][metric]


def _markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| b | layer (outputs synthesised) | generic gates | transistors (cmos) | iCE40 LUT4 "
        "| shift-add DSPs | analytic energy | analytic area |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in results:
        for name, entry in run["layers"].items():
            p = entry["params"]
            e = run["analytic_energy_pj"][name]
            u = run["analytic_units"][name]
            shift_ice = entry["shift-add"]["ice40"]
            lines.append(
                f"| {run['bits']} | {name} ({p['outputs_synthesised']}/{p['outputs_total']}) "
                f"| {_ratio(entry, 'generic', 'gates'):.3f} "
                f"| {_ratio(entry, 'generic', 'transistors'):.3f} "
                f"| {_ratio(entry, 'ice40', 'lut'):.3f} | {shift_ice['dsp']} "
                f"| {e['shift-add'] / e['mult8']:.4f} "
                f"| {u['shift-add']['area_um2'] / u['mult8']['area_um2']:.4f} |"
            )
    lines += ["", "Analytic area ranking of the layers against synthesis (per b and design):", ""]
    lines += ["| b | design / measure | same ranking | Spearman | spread (max/min factor) |"]
    lines += ["|---|---|---|---|---|"]
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
    report = {
        "runs": results,
        "max_outputs": args.max_outputs,
        "seconds": time.perf_counter() - start,
    }
    text = json.dumps(report, indent=1, sort_keys=True) + "\n"
    atomic_write(args.out / "results.json", lambda tmp: _write(tmp, text))
    table = _markdown(results)
    atomic_write(args.out / "table.md", lambda tmp: _write(tmp, table))
    print(table)


def _write(path: Path, text: str) -> None:
    path.write_text(text)


if __name__ == "__main__":
    main()
