"""The README's whole-top Nangate45 table from ``inq-hw cost --design top`` JSON files.

Reads ``DIR/pkg<b>/cost-nangate45-top.json`` for each bit-width found and prints one
Markdown row per b: Nangate45 area, critical path, power and energy per inference of the
shift-add top and its twin, the twin ÷ shift-add ratios, and the analytic network
figures (unrolled units) with their ratio.

Example usage::

    python scripts/asic_top_table.py runs/top
"""

import json
import sys
from pathlib import Path

HEADER = (
    "| b | area µm² shift-add / twin | critical ns shift-add / twin | power mW shift-add / "
    "twin (flip-flops' share) | cycles per image | energy pJ/inf shift-add / twin | twin ÷ "
    "shift-add: area, energy (N45) | analytic area µm² / energy pJ shift-add | analytic "
    "twin | twin ÷ shift-add: area, energy (analytic) |\n|" + "---|" * 10
)


def _g(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _share(figures: dict) -> str:
    power = figures["power_breakdown_mw"]
    seq = power.get("sequential")
    return f" ({100 * seq / power['total']:.0f} %)" if seq is not None else ""


def row(bits: int, top: dict) -> str:
    sa, tw = top["asic"]["shift-add"], top["asic"]["mult8"]
    an_sa, an_tw = top["analytic"]["shift-add"], top["analytic"]["mult8"]
    cells = [
        str(bits),
        f"{_g(sa['area_um2'])} / {_g(tw['area_um2'])}",
        f"{sa['critical_ns']:.2f} / {tw['critical_ns']:.2f}",
        f"{sa['power_mw']:.2f}{_share(sa)} / {tw['power_mw']:.2f}{_share(tw)}",
        str(sa["interval_cycles"]),
        f"{_g(sa['energy_pj'])} / {_g(tw['energy_pj'])}",
        f"{tw['area_um2'] / sa['area_um2']:.2f}, {tw['energy_pj'] / sa['energy_pj']:.2f}",
        f"{_g(an_sa['area_um2'])} / {_g(an_sa['energy_pj'])}",
        f"{_g(an_tw['area_um2'])} / {_g(an_tw['energy_pj'])}",
        f"{an_tw['area_um2'] / an_sa['area_um2']:.2f}, "
        f"{an_tw['energy_pj'] / an_sa['energy_pj']:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main(root: Path) -> None:
    print(HEADER)
    for bits in range(2, 9):
        path = root / f"pkg{bits}" / "cost-nangate45-top.json"
        if path.is_file():
            print(row(bits, json.loads(path.read_text())["top"]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
