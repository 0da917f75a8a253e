"""Synthesise the shift-PE array against the multiplier-PE array at the same R×C.

Usage::

    .venv/bin/python scripts/pe_array_synth.py --rows 4 --cols 4 --out reports/pe-array

Builds digits-cnn (``--channels``, default the tests' tiny 4-8-8, random weights put on
a ``--bits`` power-of-two grid by one INQ step and lowered with its 8-bit baseline),
compiles it for an R×C shift-PE array and for its multiplier twin (runtime weights as
wide as the package's twin, here 8 bits) with :func:`rtl_gen.pe_program.fit_config`,
exports both arrays and one PE of each kind (at the array's widths) to Verilog, and
synthesises every design with Yosys through :mod:`inq_hw.cost.synth` (cached), one job
at a time: generic gates (``stat -tech cmos`` transistors) and iCE40 (LUT4, flip-flops,
carries, BRAMs; ``synth_ice40`` is run without ``-dsp``, so no SB_MAC16 is inferred and
multipliers are counted in LUTs). Writes ``synth.json`` and ``table.md`` atomically into
``--out``, with the mult/shift ratios.

The whole array includes its memories: on iCE40 they are block RAMs, but the generic
flow maps them to flip-flops and multiplexers, which both arrays share; the PE rows show
the datapath difference alone.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from amaranth.lib import wiring

from inq_hw.checkpoint import atomic_write
from inq_hw.cost.synth import SynthJob, SynthResult, jobs_from_manifest, synthesize
from inq_hw.intmodel import IntModel
from rtl_gen.export import Design, write_designs
from rtl_gen.pe import MultMAC, ShiftMAC
from rtl_gen.pe_program import ArrayConfig, compile_program, fit_config
from sim.pe_array_sim import pe_array_design

TARGETS = ("generic", "ice40")
KINDS = ("shift", "mult")
#: Figures compared per target (the ratio columns).
FIGURES = {"generic": ("gates", "transistors", "ff"), "ice40": ("lut", "ff", "carry", "bram")}


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cols", type=int, default=4)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--channels", default="4,8,8")
    parser.add_argument("--out", type=Path, default=Path("reports/pe-array"))
    parser.add_argument("--build", type=Path, default=Path("build/pe-array-synth"))
    parser.add_argument("--cache", type=Path, default=Path("build/synth-cache"))
    parser.add_argument("--timeout", type=float, default=1800.0)
    return parser.parse_args()


def _model(channels: list[int], bits: int) -> IntModel:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the benches package
    from benches.bench_pe_array import on_grid_package

    return on_grid_package("digits-cnn", 1, 8, bits, channels=channels)[0]


def _pe(config: ArrayConfig) -> wiring.Component:
    kind = MultMAC if config.pe == "mult" else ShiftMAC
    return kind(
        act_bits=config.act_bits,
        act_signed=True,
        weight_bits=config.weight_bits,
        acc_bits=config.acc_bits,
    )


def _jobs(model: IntModel, rows: int, cols: int, build: Path) -> dict[str, SynthJob]:
    """``{"array-shift": job, "pe-shift": job, ...}``: Verilog through rtl_gen.export."""
    jobs: dict[str, SynthJob] = {}
    for kind in KINDS:
        program = compile_program(model, fit_config(model, rows=rows, cols=cols, pe=kind))
        pe = Design(top=f"pe_{kind}", component=_pe(program.config), latency=1)
        for name, design in (("array", pe_array_design(program)), ("pe", pe)):
            out = build / f"{name}-{kind}"
            write_designs([design], out)
            (job,) = jobs_from_manifest(out)
            jobs[f"{name}-{kind}"] = job
    return jobs


def _synth(jobs: dict[str, SynthJob], cache: Path, timeout: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for target in TARGETS:
        for name, job in jobs.items():
            start = time.perf_counter()
            result: SynthResult = synthesize(job, target, cache_dir=cache, timeout_s=timeout)
            print(f"  {name:12s} {target:8s} {time.perf_counter() - start:7.1f} s", flush=True)
            figures = {k: v for k, v in result.to_dict().items() if k not in ("cells_by_type",)}
            results.setdefault(name, {})[target] = figures
    return results


def _ratios(results: dict[str, Any]) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for unit in ("array", "pe"):
        for target, figures in FIGURES.items():
            shift, mult = results[f"{unit}-shift"][target], results[f"{unit}-mult"][target]
            ratios.setdefault(unit, {})[target] = {
                key: round(mult[key] / shift[key], 3) if shift.get(key) else None for key in figures
            }
    return ratios


def _table(report: dict[str, Any]) -> str:
    shape = report["array"]
    lines = [
        f"# Shift-PE vs multiplier-PE array, {shape}, {report['model']}",
        "",
        f"Code width b = {report['bits']} (shift PEs) vs "
        f"{report['configs']['mult']['weight_bits']}-bit runtime weights (multiplier "
        f"PEs); activations {report['configs']['shift']['act_bits']} bits, accumulators "
        f"{report['configs']['shift']['acc_bits']} / {report['configs']['mult']['acc_bits']} "
        "bits. Yosys through `inq_hw.cost.synth` (generic: `synth -flatten`, ABC to simple "
        "gates; iCE40: `synth_ice40`, no `-dsp`, so DSP is 0 and multipliers are LUTs). "
        "Whole arrays include their memories (generic: as flip-flops and multiplexers; "
        "iCE40: block RAMs). Transistors: Yosys's `stat -tech cmos`, a lower bound where it "
        "has no figure for some cells (the arrays' flip-flops with enable or reset).",
        "",
        "| design | gates | transistors | FF (generic) | iCE40 LUT | iCE40 FF | carry | BRAM "
        "| DSP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in report["results"].items():
        g, i = res["generic"], res["ice40"]
        lines.append(
            f"| {name} | {g['gates']:,} | {g['transistors']:,} | {g['ff']:,} | {i['lut']:,} | "
            f"{i['ff']:,} | {i['carry']:,} | {i['bram']} | {i['dsp']} |"
        )
    lines += ["", "Ratios multiplier / shift:", ""]
    for unit, targets in report["ratios"].items():
        parts = [
            f"{target} {key} {value:.2f}x"
            for target, figures in targets.items()
            for key, value in figures.items()
            if value is not None
        ]
        lines.append(f"- {unit}: " + ", ".join(parts))
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(path, write)


def main() -> None:
    args = _parse()
    channels = [int(c) for c in args.channels.split(",")]
    model = _model(channels, args.bits)
    jobs = _jobs(model, args.rows, args.cols, args.build)
    configs = {
        kind: fit_config(model, rows=args.rows, cols=args.cols, pe=kind).to_dict() for kind in KINDS
    }
    results = _synth(jobs, args.cache, args.timeout)
    report = {
        "model": f"digits-cnn {'-'.join(map(str, channels))}",
        "array": f"{args.rows}x{args.cols}",
        "bits": args.bits,
        "configs": configs,
        "results": results,
        "ratios": _ratios(results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, sort_keys=True)
    _write(args.out / "synth.json", text + "\n")
    table = _table(report)
    _write(args.out / "table.md", table)
    print(table)


if __name__ == "__main__":
    main()
