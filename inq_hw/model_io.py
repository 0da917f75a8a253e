"""Rebuilding a checkpoint's model and data set: what lowering, evaluation and the training
driver share (apart from the driver, so the stages after training never import it)."""

from dataclasses import dataclass
from typing import Any

from torch import nn

from inq_hw.data import Dataset, load_dataset
from inq_hw.errors import CheckpointError, ConfigError
from inq_hw.fold import fold_batchnorm, fold_mean_pools
from inq_hw.models import build_model

__all__ = ["ModelContext", "load_model"]


@dataclass(frozen=True)
class ModelContext:
    """How to rebuild a checkpoint's model and data set without extra flags."""

    model: str
    model_kwargs: dict[str, Any]
    dataset: str
    data_dir: str | None
    split_seed: int

    def to_payload(
        self, data: Dataset, folded: bool, *, folded_means: bool = False
    ) -> dict[str, Any]:
        c, h, _ = data.input_shape
        model = {
            "name": self.model,
            "kwargs": dict(self.model_kwargs),
            "in_channels": c,
            "num_classes": data.num_classes,
            "input_size": h,
            "folded_batchnorm": folded,
            "folded_mean_pools": folded_means,
        }
        dataset = {"name": self.dataset, "data_dir": self.data_dir, "split_seed": self.split_seed}
        return {"model": model, "dataset": dataset}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "ModelContext":
        m, d = payload["model"], payload["dataset"]
        return cls(m["name"], dict(m["kwargs"]), d["name"], d["data_dir"], int(d["split_seed"]))

    def load_data(self) -> Dataset:
        return load_dataset(self.dataset, data_dir=self.data_dir, split_seed=self.split_seed)

    def build(self, data: Dataset) -> nn.Module:
        c, h, w = data.input_shape
        if h != w:
            raise ConfigError(f"Models need square inputs, not {h}x{w}")
        return build_model(
            self.model,
            in_channels=c,
            num_classes=data.num_classes,
            input_size=h,
            **self.model_kwargs,
        )


def load_model(payload: dict[str, Any], data: Dataset | None = None) -> tuple[nn.Module, Dataset]:
    """Rebuild the model of a checkpoint payload (folding BatchNorm if it was folded)."""
    context = ModelContext.from_payload(payload)
    data = data or context.load_data()
    model = context.build(data)
    if payload["model"].get("folded_batchnorm"):
        fold_batchnorm(model)
    if payload["model"].get("folded_mean_pools"):  # absent in checkpoints of before
        model = fold_mean_pools(model, data.input_shape)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"Checkpoint weights do not fit model {context.model!r}: {str(exc).splitlines()[0]}"
        ) from None
    return model, data
