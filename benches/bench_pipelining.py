"""Bench: calibration of the pipeline-depth delay model (:mod:`rtl_gen.pipelining`).

For each device family, :func:`inq_hw.cost.pipelining.calibrate` places and routes its
calibration units (constant-weight units with one register stage after the adder tree,
inside :mod:`inq_hw.cost.synth`'s Fmax wrapper; nextpnr, cached) and fits the delay
constants by non-negative least squares. The table gives each unit's measured Fmax, the
Fmax the fitted model predicts, and the fitted constants next to the committed ones
(:data:`rtl_gen.pipelining.DELAY_MODELS`): when they drift, update the module.
"""

import time
from typing import Any

from benches._harness import print_table
from inq_hw.cost.pipelining import calibrate
from rtl_gen.pipelining import DELAY_MODELS, FAMILIES, path_delay_ns

__all__ = ["run"]


def run() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for family in FAMILIES:
        start = time.perf_counter()
        model, samples = calibrate(family)
        seconds = time.perf_counter() - start
        rows = [
            [
                f"levels {s.path.levels}, width {s.path.width}",
                f"{s.fmax_mhz:.1f}",
                f"{1e3 / path_delay_ns(s.path, 1, model):.1f}",
            ]
            for s in samples
        ]
        print_table(f"{family}: measured and fitted Fmax (MHz)", ["unit", "nextpnr", "model"], rows)
        committed = DELAY_MODELS[family]
        print(
            f"  fitted {model}\n  committed {committed}\n  {seconds:.0f} s (cached runs are fast)"
        )
        figures[family] = {
            "fitted": vars(model),
            "committed": vars(committed),
            "samples": [{"fmax_mhz": s.fmax_mhz, **vars(s.path)} for s in samples],
            "seconds": seconds,
        }
    return figures
