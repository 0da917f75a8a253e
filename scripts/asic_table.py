"""README's Nangate45 table: digits-cnn at b = 2..5, shift-add vs mult8 twin, vs analytic.

Usage::

    for b in 2 3 4 5; do
      .venv/bin/inq-hw cost runs/asic/pkg$b --target nangate45 --max-weights 72 \\
          --activity-images 2 --cache runs/asic/cache --out runs/asic/cost$b.json
    done
    .venv/bin/python scripts/asic_table.py --costs runs/asic --out reports/asic-digits

Reads the ``inq-hw cost --target nangate45`` results ``COSTS/cost{b}.json`` (packages made
with ``inq-hw train`` / ``quantize`` / ``export``, runs/asic/make.sh) and writes
``table.md`` and ``agreement.json`` atomically into ``--out``: per layer slice, the
Nangate45 area, critical path and energy per inference (measured activity) of both
designs beside the analytic 45 nm figures of the same slice; per bit-width, how far the
two agree: the Spearman rank correlation of the layers (area, energy) and the factor
Nangate45 / analytic (geometric mean over layers and both designs, and its range).
"""

import argparse
import json
import math
from pathlib import Path
from typing import Any

from inq_hw.cost.check import spearman
from inq_hw.files import atomic_write

DESIGNS = ("shift-add", "mult8")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--costs", type=Path, default=Path("runs/asic"))
    parser.add_argument("--bits", default="2,3,4,5")
    parser.add_argument("--out", type=Path, default=Path("reports/asic-digits"))
    return parser.parse_args()


def _g(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _row(bits: int, layer: dict[str, Any]) -> str:
    p, asic, ana = layer["params"], layer["asic"], layer["analytic"]
    cells = [str(bits), f"{p['layer']} ({p['inputs']} in x {p['outputs_synthesised']} out)"]
    for metric in ("area_um2", "energy_pj"):
        for design in DESIGNS:
            cells.append(f"{_g(asic[design][metric])} / {_g(ana[design][metric])}")
    cells += [f"{asic[d]['critical_ns']:.2f}" for d in DESIGNS]
    for metric in ("area_um2", "energy_pj"):
        # twin ÷ shift-add, the one ratio direction of inq-hw cost (issue 20)
        ours = asic["mult8"][metric] / asic["shift-add"][metric]
        theirs = ana["mult8"][metric] / ana["shift-add"][metric]
        cells.append(f"{ours:.3f} / {theirs:.3f}")
    return "| " + " | ".join(cells) + " |"


def _agreement(layers: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in ("area_um2", "energy_pj"):
        factors = []
        for design in DESIGNS:
            asic = {x["layer"]: x["asic"][design][metric] for x in layers}
            ana = {x["layer"]: x["analytic"][design][metric] for x in layers}
            out[f"spearman_{metric}_{design}"] = spearman(ana, asic)
            factors += [asic[k] / ana[k] for k in asic]
        geo = math.exp(sum(math.log(f) for f in factors) / len(factors))
        out[f"factor_{metric}"] = {"geomean": geo, "min": min(factors), "max": max(factors)}
        pairs = [(x["asic"], x["analytic"]) for x in layers]
        out[f"ranking_designs_{metric}"] = all(
            (a["shift-add"][metric] < a["mult8"][metric])
            == (b["shift-add"][metric] < b["mult8"][metric])
            for a, b in pairs
        )
    return out


def main() -> None:
    args = _parse()
    header = (
        "| b | layer slice | area µm² shift-add (N45 / analytic) | area µm² twin "
        "| energy pJ/inf shift-add | energy pJ/inf twin | critical ns shift-add "
        "| critical ns twin | twin ÷ shift-add area (N45 / analytic) "
        "| twin ÷ shift-add energy |"
    )
    lines = [header, "|" + "---|" * 10]
    agreement: dict[str, Any] = {}
    for bits in (int(b) for b in args.bits.split(",")):
        result = json.loads((args.costs / f"cost{bits}.json").read_text())
        lines += [_row(bits, layer) for layer in result["layers"]]
        agreement[str(bits)] = _agreement(result["layers"])
        print(f"b={bits}: {json.dumps(agreement[str(bits)])}", flush=True)
    lines += ["", "| b | Spearman area (shift-add, twin) | Spearman energy | "
              "N45 / analytic area: geomean (range) | energy: geomean (range) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for bits, a in agreement.items():
        fa, fe = a["factor_area_um2"], a["factor_energy_pj"]
        lines.append(
            f"| {bits} | {a['spearman_area_um2_shift-add']:.2f}, {a['spearman_area_um2_mult8']:.2f}"
            f" | {a['spearman_energy_pj_shift-add']:.2f}, {a['spearman_energy_pj_mult8']:.2f}"
            f" | {fa['geomean']:.2f} ({fa['min']:.2f}-{fa['max']:.2f})"
            f" | {fe['geomean']:.2f} ({fe['min']:.2f}-{fe['max']:.2f}) |"
        )
    table = "\n".join(lines) + "\n"
    atomic_write(args.out / "table.md", lambda tmp: _write(tmp, table))
    text = json.dumps(agreement, indent=1, sort_keys=True) + "\n"
    atomic_write(args.out / "agreement.json", lambda tmp: _write(tmp, text))
    print(table)


def _write(path: Path, text: str) -> None:
    path.write_text(text)


if __name__ == "__main__":
    main()
