"""Design-space sweeps (``inq-hw sweep SWEEP.toml``): many flow configurations through the
flow's cached stages, on a local process pool or on Ray.

:mod:`~inq_hw.sweep.config` (the sweep file and its points), :mod:`~inq_hw.sweep.stages`
(the next missing stage of a point, and a worker computing it from tar bytes),
:mod:`~inq_hw.sweep.executors` (process pool, Ray) and :mod:`~inq_hw.sweep.driver` (the
loop, sweep.json); the report is :mod:`inq_hw.report.sweep`.

Example usage::

    from inq_hw.sweep import SweepConfig, run_sweep

    run_sweep(SweepConfig.from_toml(Path("sweep.toml")), out=Path("runs/sweep"))
"""

from inq_hw.sweep.config import DEFAULT_SEEDS, SweepConfig, SweepPoint
from inq_hw.sweep.driver import SWEEP_FILE, run_sweep
from inq_hw.sweep.stages import SweepError

__all__ = ["DEFAULT_SEEDS", "SWEEP_FILE", "SweepConfig", "SweepError", "SweepPoint", "run_sweep"]
