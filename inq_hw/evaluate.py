"""Integer model against its float source: accuracy and agreement on the test split."""

from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.checkpoint import file_sha256, load_checkpoint
from inq_hw.errors import PackageError
from inq_hw.intmodel import predict, quantize_input, run
from inq_hw.intmodel.package import load_package
from inq_hw.model_io import load_model
from inq_hw.train import predict as float_predict

__all__ = ["evaluate_package"]


def evaluate_package(directory: str | Path) -> dict[str, Any]:
    """Integer accuracy on the test split beside the float INQ model's, and their agreement.

    The float model is the package's source checkpoint (its hash is checked). ``twin``: the
    multiplier twin's width and integer accuracy (the package's baselines), or ``None``.
    """
    directory = Path(directory)
    model = load_package(directory)
    source = Path(model.meta["source"]["path"])
    if not source.is_file() or file_sha256(source) != model.meta["source"]["sha256"]:
        raise PackageError(
            f"The source checkpoint {source} of {directory} is missing or has changed"
        )
    float_model, data = load_model(load_checkpoint(source, kinds=("inq",)))
    labels = data.test.y.numpy()
    x = quantize_input(data.test.x.numpy(), model.input.out)
    integer = predict(model, x)
    floating = float_predict(float_model, data.test.x).numpy()
    layers = model.weight_layers()
    twin: dict[str, Any] | None = None
    if layers and all(layer.has_baseline for layer in layers):
        logits = run(model, x, weights="baseline")
        assert isinstance(logits, np.ndarray)
        twin = {
            "weight_bits": max(layer.twin_bits for layer in layers),
            "integer_accuracy": float((logits.argmax(axis=1) == labels).mean()),
        }
    return {
        "package": str(directory),
        "samples": len(labels),
        "integer_accuracy": float((integer == labels).mean()),
        "float_accuracy": float((floating == labels).mean()),
        "agreement": float((integer == floating).mean()),
        "disagreements": int((integer != floating).sum()),
        "twin": twin,
    }
