"""Reproduce README's INQ accuracy table: FP32, one-shot and INQ at 2..5 bits, both partitions.

Usage::

    .venv/bin/python scripts/inq_accuracy_table.py [--out reports/inq-digits] [--bits 5,4,3,2]

Trains (or reuses) the FP32 digits-cnn, runs INQ with the paper's schedule for each
bit-width (``auto``) under both partition strategies, and writes ``results.json`` and
``table.md`` atomically into ``--out``. Each INQ run goes through the same driver as
``inq-hw quantize``.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

from inq_hw.checkpoint import atomic_write
from inq_hw.driver import ModelContext, run_inq, train_fp32
from inq_hw.evaluate import evaluate_package
from inq_hw.inq import INQConfig, schedule_for_bits
from inq_hw.intmodel.package import save_package
from inq_hw.lower import lower_checkpoint
from inq_hw.train import TrainConfig

FP32 = TrainConfig(epochs=30, lr=0.05)
INQ = TrainConfig(epochs=4, lr=0.05)  # the defaults of `inq-hw quantize`


def _runs(args: argparse.Namespace) -> dict[str, Any]:
    fp32_path = args.fp32 or args.runs / "fp32.pt"
    context = ModelContext("digits-cnn", {}, "digits", None, 0)
    fp32 = train_fp32(context, FP32, fp32_path) if not fp32_path.exists() else None
    rows = []
    for bits in args.bits:
        for partition in ("magnitude", "random"):
            config = INQConfig(bits=bits, schedule=schedule_for_bits(bits), partition=partition)
            start = time.perf_counter()
            result = run_inq(fp32_path, config, INQ, args.runs / f"inq{bits}-{partition}.pt")
            result["seconds"] = round(time.perf_counter() - start, 1)
            package = args.runs / f"pkg{bits}-{partition}"
            save_package(lower_checkpoint(result["out"]), package)
            result["integer"] = evaluate_package(package)
            rows.append(result)
            integer = result["integer"]
            print(
                f"{bits}-bit {partition}: float {100 * result['accuracy']:.2f}%, integer "
                f"{100 * integer['integer_accuracy']:.2f}%, "
                f"agreement {100 * integer['agreement']:.2f}%",
                flush=True,
            )
    return {"fp32": fp32, "inq_train": INQ.to_dict(), "fp32_train": FP32.to_dict(), "runs": rows}


def _markdown(results: dict[str, Any]) -> str:
    runs = results["runs"]
    fp32 = runs[0]["fp32_accuracy"]
    lines = [
        "| bits | schedule | one-shot (no re-training) | INQ magnitude | INQ random"
        " | best − FP32 |",
        "|---|---|---|---|---|---|",
    ]
    for bits in sorted({r["bits"] for r in runs}, reverse=True):
        by = {r["partition"]: r for r in runs if r["bits"] == bits}
        best = max(r["accuracy"] for r in by.values())
        lines.append(
            f"| {bits} | {','.join(f'{p:g}' for p in by['magnitude']['schedule'])} "
            f"| {100 * by['magnitude']['one_shot_accuracy']:.2f}% "
            f"| {100 * by['magnitude']['accuracy']:.2f}% | {100 * by['random']['accuracy']:.2f}% "
            f"| {100 * (best - fp32):+.2f} |"
        )
    lines += [
        "",
        "| bits | partition | float INQ | integer (a8, golden executor) | agreement |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        i = r["integer"]
        lines.append(
            f"| {r['bits']} | {r['partition']} | {100 * i['float_accuracy']:.2f}% "
            f"| {100 * i['integer_accuracy']:.2f}% | {100 * i['agreement']:.2f}% |"
        )
    return f"FP32 digits-cnn: {100 * fp32:.2f}%\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/inq-digits"))
    parser.add_argument("--runs", type=Path, default=Path("runs/table"))
    parser.add_argument("--bits", default="5,4,3,2")
    parser.add_argument("--fp32", type=Path, default=None, help="reuse this FP32 checkpoint")
    args = parser.parse_args()
    args.bits = [int(b) for b in args.bits.split(",")]
    results = _runs(args)
    table = _markdown(results)
    print(table)
    atomic_write(args.out / "results.json", lambda p: p.write_text(json.dumps(results, indent=2)))
    atomic_write(args.out / "table.md", lambda p: p.write_text(table))


if __name__ == "__main__":
    main()
