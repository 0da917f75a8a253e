"""The dataflow top with tree against shared adder graphs, in the same run.

The synthetic ``small_cnn`` of tests/test_dataflow.py (two convolutions, two Linears,
8-bit) as one streaming top, every unrolled weight layer on trees, then on shared graphs
(:mod:`rtl_gen.adder_graph`): generic gates and iCE40 LUT4 / SB_CARRY / FF (Yosys, no
cache), generation time and the manifest's latency and interval (equal for both).

Example usage::

    python -m benches dataflow_graph
"""

import tempfile
import time
from pathlib import Path
from typing import Any

from benches._harness import print_table
from inq_hw.cost.synth import SynthJob, synthesize
from rtl_gen.dataflow import dataflow_design
from rtl_gen.export import write_designs
from tests.test_dataflow import small_cnn

__all__ = ["run"]

GRAPHS = ("tree", "shared")


def _measure(graph: str) -> dict[str, Any]:
    start = time.perf_counter()
    design = dataflow_design(small_cnn(), adder_graph=graph)
    with tempfile.TemporaryDirectory(prefix="inq_hw_bench_") as tmp:
        (top,) = write_designs([design], Path(tmp))["tops"]
        verilog = (Path(tmp) / top["file"]).read_text()
    build_s = time.perf_counter() - start
    job = SynthJob(top=top["name"], verilog=verilog)
    generic, ice40 = (synthesize(job, target, timeout_s=900) for target in ("generic", "ice40"))
    return {
        "gates": generic.gates,
        "lut4": ice40.lut,
        "carry": ice40.carry,
        "ff": ice40.ff,
        "build_s": build_s,
        "synth_s": generic.seconds + ice40.seconds,
        "latency": design.params["latency_cycles"],
        "interval": design.params["interval_cycles"],
    }


def _li(f: dict[str, Any]) -> str:
    return f"{f['latency']}/{f['interval']}"


def run() -> dict[str, Any]:
    """Print the table; the figures per graph and the shared / tree ratios."""
    figures = {graph: _measure(graph) for graph in GRAPHS}
    keys = ("gates", "lut4", "carry", "ff")
    ratios = {key: figures["shared"][key] / figures["tree"][key] for key in keys}
    rows = [
        [graph, *(f"{f[k]:,}" for k in keys), f"{f['build_s']:.1f}", f"{f['synth_s']:.0f}", _li(f)]
        for graph, f in figures.items()
    ]
    rows.append(["shared/tree", *(f"{ratios[k]:.2f}x" for k in keys), "", "", ""])
    print_table(
        "dataflow top of small_cnn: tree vs shared adder graphs (Yosys 0.70)",
        ["graph", "gates", "LUT4", "carry", "FF", "build s", "synth s", "lat/int"],
        rows,
    )
    return {**figures, "ratios": ratios}
