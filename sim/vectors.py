"""Test vectors: test-split images as integers and the golden executor's answers.

The images come from the data set the package records (``meta["dataset"]``), quantised
to the input format exactly as the host does; the expected outputs are the golden
executor's, per layer (``layer/<name>``) and for the output (``output``, ``prediction``).
"""

from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.errors import ConfigError
from inq_hw.intmodel import IntModel, quantize_input, run
from inq_hw.intmodel.package import package_hash

__all__ = ["golden_vectors", "write_vectors"]


def golden_vectors(
    model: IntModel, samples: int | None, *, weights: str = "po2"
) -> dict[str, np.ndarray]:
    """The first ``samples`` test images (all when ``None``) and the expected outputs;
    ``weights="baseline"`` for the multiplier twin's (:func:`inq_hw.intmodel.run`).

    Raises:
        ConfigError: ``samples`` is not a positive integer, or the data set cannot load.
    """
    from inq_hw.data import load_dataset

    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
    ):
        raise ConfigError(f"Samples must be a positive integer or 'all', not {samples!r}")
    dataset = model.meta["dataset"]
    data = load_dataset(
        dataset["name"], data_dir=dataset["data_dir"], split_seed=dataset["split_seed"]
    )
    count = len(data.test) if samples is None else min(samples, len(data.test))
    x = quantize_input(data.test.x[:count].numpy(), model.input.out)
    trace = run(model, x, trace=True, weights=weights)
    assert isinstance(trace, dict)
    arrays = {
        "input": x,
        "output": trace[model.output],
        "labels": data.test.y[:count].numpy(),
        "prediction": trace[model.output].argmax(axis=1),
    }
    arrays.update({f"layer/{name}": values for name, values in trace.items()})
    return arrays


def write_vectors(arrays: dict[str, Any], package: Path, out: Path) -> None:
    """Write the vectors and the package's hash to ``out`` (``.npz``), atomically."""
    from inq_hw.files import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays, package_hash=np.array(package_hash(package)))

    atomic_write(out, write)
