"""Switching activity of a constant-weight unit on real test images.

A layer's unit sees one input window (a patch of the layer's input, or the whole input of
a linear layer) per evaluation, in raster order, image after image: the order the
streaming dataflow top feeds it. :func:`unit_activity` takes the first ``images`` test
images through the golden executor, cuts the layer's input into those windows
(:func:`layer_windows`), applies them to the unit's Verilog in a cocotb simulation with
waveforms (``sim.tb_vectors``) and counts the toggles
(:func:`sim.activity.activity_from_waves`): one evaluation per cycle. The counts are kept
in ``cache_dir`` by the hash of the Verilog and the windows; the waveform is deleted.

Example usage::

    job, params = layer_jobs(model, max_weights=288)[0]
    activity = unit_activity(job, model, params["layer"], images=4, cache_dir=Path("build"))
"""

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.intmodel import Conv2dLayer, IntModel, WeightLayer
from inq_hw.intmodel.execute import _im2col
from sim.activity import Activity, activity_from_waves
from sim.streams import encode_fields
from sim.vectors import golden_vectors

__all__ = ["layer_windows", "unit_activity"]


def layer_windows(model: IntModel, name: str, images: int) -> np.ndarray:
    """``(evaluations, inputs)``: the windows layer ``name``'s unit sees on the first
    ``images`` test images, in raster order (module docstring)."""
    layer = model.layer(name)
    assert isinstance(layer, WeightLayer)
    arrays = golden_vectors(model, images)
    source = layer.inputs[0]
    x = arrays["input"] if source == model.input.name else arrays[f"layer/{source}"]
    if isinstance(layer, Conv2dLayer):
        # the executor's own window cut (one description of the patch order)
        patches, _, _ = _im2col(x, layer.geometry())
        return np.asarray(patches)
    return np.asarray(x.reshape(x.shape[0], -1))


def unit_activity(
    job: Any,
    model: IntModel,
    layer: str,
    *,
    images: int,
    cache_dir: Path,
    simulator: str = "icarus",
    timeout_s: float = 1800,
) -> Activity:
    """Toggle counts of ``job`` (an :class:`inq_hw.cost.synth.SynthJob`: a combinational
    unit of ``layer``) on real windows."""
    from sim.runner import run_testbench

    windows = layer_windows(model, layer, images)
    bits = model.layer(model.layer(layer).inputs[0]).out.bits
    digest = hashlib.sha256(job.verilog.encode())
    digest.update(f"{simulator}\0{bits}\0{windows.shape}".encode())
    digest.update(np.ascontiguousarray(windows, dtype=np.int64).tobytes())
    saved = cache_dir / f"activity-{digest.hexdigest()[:24]}.json"
    if saved.is_file():
        return Activity.read(saved)
    ports = {name: {"width": width, "signed": False} for name, _, width in job.ports}
    inputs = [{"i_data": encode_fields(row, bits), "i_valid": 1} for row in windows.tolist()]
    source = cache_dir / f"{job.top}.v"
    cache_dir.mkdir(parents=True, exist_ok=True)
    source.write_text(job.verilog)
    result = run_testbench(
        sources=[source],
        top=job.top,
        module="sim.tb_vectors",
        config={"ports": ports, "inputs": inputs, "expect": [{}] * len(inputs)},
        simulator=simulator,
        cache_dir=cache_dir,
        waves=True,
        timeout_s=timeout_s,
    )
    activity = activity_from_waves(result["waves"], clock=None, cycles=len(inputs))
    activity.write(saved)
    Path(result["waves"]).unlink()  # up to hundreds of MB for a large unit; counts kept
    return activity
