"""Bench: import time of the torch-free contract against torch.

Each module of :data:`TORCH_FREE_MODULES` (the contract ``inq_hw.intmodel``, errors, file
helpers, the tool runner, ``rtl_gen``, ``sim`` other than vector making, the cost model,
the report and the command line) is imported in a fresh interpreter, which also checks
that torch stays out of ``sys.modules``; ``torch`` itself is timed the same way, in the
same run, as the baseline. Figures: seconds per import, median of 3 fresh interpreters
(wall time, so they depend on the machine's load, printed by ``python -m benches``).
"""

import json
import statistics
import subprocess
import sys
from typing import Any

from benches._harness import print_table

__all__ = ["TORCH_FREE_MODULES", "import_seconds", "run"]

#: What must import without torch (ARCHITECTURE.md, "Growing the house").
TORCH_FREE_MODULES = (
    "inq_hw",
    "inq_hw.errors",
    "inq_hw.intmodel",
    "inq_hw.checkpoint",
    "inq_hw.progress",
    "inq_hw.tools",
    "inq_hw.cost",
    "inq_hw.cost.synth",
    "inq_hw.report",
    "inq_hw.cli",
    "inq_hw.commands",
    "rtl_gen.dataflow",
    "rtl_gen.generate",
    "rtl_gen.pe_array",
    "rtl_gen.pe_program",
    "rtl_gen.formal",
    "sim.cycle_model",
    "sim.runner",
    "sim.simulate",
)

_PROBE = """
import importlib, json, sys, time
start = time.perf_counter()
importlib.import_module(sys.argv[1])
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "torch": "torch" in sys.modules}))
"""


def import_seconds(module: str) -> tuple[float, bool]:
    """Seconds ``import module`` takes in a fresh interpreter, and whether torch got loaded."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), bool(result["torch"])


def run() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    rows = []
    for module in ("torch", *TORCH_FREE_MODULES):
        samples = [import_seconds(module) for _ in range(3)]
        seconds = statistics.median(s for s, _ in samples)
        loads_torch = any(t for _, t in samples)
        figures[module] = {"import_s": seconds, "loads_torch": loads_torch}
        rows.append((module, f"{seconds:.3f}", "yes" if loads_torch else "no"))
    print_table("Import time (fresh interpreter, median of 3)", ("module", "s", "torch"), rows)
    return figures
