"""Drivers: FP32 training and the whole INQ schedule, checkpointed and resumable.

Both drivers write their running state to ``<out>.part`` after every epoch (and, for INQ,
after every quantization step), atomically; the finished result goes to ``<out>`` and the
``.part`` file is removed. ``resume=True`` continues from ``<out>.part``: a run killed at
any moment loses at most the epoch it was in. Shuffles are seeded by epoch index, so a
resumed run computes what the uninterrupted run would have.

Under ``torch.distributed`` (e.g. ``torchrun --nproc-per-node 2``, gloo on CPU) the model
is wrapped in DistributedDataParallel, every rank computes the same partitions (they are
deterministic functions of identical weights and seeds) and rank 0 writes the files.
"""

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from inq_hw.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from inq_hw.data import Dataset
from inq_hw.errors import CheckpointError, ConfigError, TrainingDiverged
from inq_hw.fold import fold_batchnorm, fold_mean_pools, has_batchnorm
from inq_hw.inq import IncrementalQuantizer, INQConfig, one_shot_quantize
from inq_hw.model_io import ModelContext, load_model
from inq_hw.progress import Progress
from inq_hw.quant import is_po2_grid, is_uniform_grid
from inq_hw.train import (
    TrainConfig,
    batches_per_epoch,
    epoch_generator,
    evaluate,
    is_main_process,
    make_optimizer,
    make_scheduler,
    train_epoch,
)

__all__ = [
    "ModelContext",
    "load_model",
    "part_path",
    "run_inq",
    "state_fingerprint",
    "train_fp32",
    "verify_inq_checkpoint",
]


def part_path(out: str | os.PathLike[str]) -> Path:
    """Where a run writing ``out`` keeps its resumable state."""
    return Path(f"{os.fspath(out)}.part")


def state_fingerprint(model: nn.Module, inq: IncrementalQuantizer | None = None) -> str:
    """SHA-256 over the model's tensors (and INQ masks): equal runs give equal prints."""
    digest = hashlib.sha256()
    tensors = dict(model.state_dict())
    if inq is not None:
        tensors.update({f"mask:{layer.name}": layer.frozen for layer in inq.layers})
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def verify_inq_checkpoint(path: str | os.PathLike[str]) -> int:
    """Read an INQ checkpoint back and check every quantized weight is 0 or ±2^e with
    n2 <= e <= n1 of its layer; returns how many weights were checked.

    Raises
    ------
    CheckpointError
        If a weight is off its layer's grid or a layer is not fully quantized.
    """
    payload = load_checkpoint(path, kinds=("inq",))
    bits = int(payload["inq"]["config"]["bits"])
    uniform = INQConfig.from_dict(payload["inq"]["config"]).weight_format == "uniform"
    on_grid, grid = (is_uniform_grid, "uniform") if uniform else (is_po2_grid, "power-of-two")
    checked = 0
    for name, layer in payload["inq"]["layers"].items():
        weight = payload["state_dict"].get(f"{name}.weight")
        if weight is None or not bool(layer["mask"].all()):
            raise CheckpointError(f"Layer {name!r} of {path} is missing or not fully quantized")
        if not on_grid(weight, bits, int(layer["n1"])):
            raise CheckpointError(f"Layer {name!r} of {path} has a weight off its {grid} grid")
        checked += weight.numel()
    return checked


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _wrap(model: nn.Module) -> nn.Module:
    return nn.parallel.DistributedDataParallel(model) if _distributed() else model


def _save(payload: dict[str, Any], path: Path) -> None:
    if is_main_process():
        save_checkpoint(payload, path)
    if _distributed():
        dist.barrier()


def _finish(payload: dict[str, Any], out: Path) -> None:
    _save(payload, out)
    if is_main_process():
        part_path(out).unlink(missing_ok=True)


def _load_part(out: Path, kind: str, resume: bool) -> dict[str, Any] | None:
    part = part_path(out)
    if not resume:
        return None
    if not part.exists():
        raise CheckpointError(f"Nothing to resume: {part} does not exist")
    for stale in part.parent.glob(f".{part.name}.*.tmp"):  # left by a kill mid-write
        stale.unlink(missing_ok=True)
    return load_checkpoint(part, kinds=(kind,))


def _run_epochs(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    *,
    first_epoch: int,
    epoch_offset: int,
    state: dict[str, Any] | None,
    save: Callable[[int, dict[str, Any]], None],
    progress: Progress,
    attach: Callable[[torch.optim.Optimizer], Any] | None = None,
) -> None:
    """Train ``config.epochs`` epochs from ``first_epoch``, saving after each one."""
    wrapped = _wrap(model)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
    steps = batches_per_epoch(len(data.train), config.batch_size)
    scheduler = make_scheduler(optimizer, steps * config.epochs)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    handle = attach(optimizer) if attach is not None else None
    try:
        for epoch in range(first_epoch, config.epochs):
            generator = epoch_generator(config.seed, epoch_offset + epoch)
            train_epoch(
                wrapped,
                data.train,
                optimizer,
                batch_size=config.batch_size,
                generator=generator,
                scheduler=scheduler,
            )
            save(
                epoch + 1,
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            )
            progress.advance()
    finally:
        if handle is not None:
            handle.remove()


def train_fp32(
    context: ModelContext,
    config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: Progress | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Train the full-precision reference and write it to ``out``; returns a summary.

    BatchNorm, if the model has any, is folded into its convolution at the end, so the
    checkpoint is ready for INQ. ``input_shape`` ``(C, H, W)``: the images the model
    takes, which the data set's must be (a ConfigError otherwise).
    """
    progress = progress or Progress()
    out = Path(out)
    data = context.load_data()
    if input_shape is not None and tuple(input_shape) != tuple(data.input_shape):
        want, have = ("x".join(map(str, shape)) for shape in (input_shape, data.input_shape))
        raise ConfigError(
            f"The model takes {want} images (--input-shape), but data set {context.dataset!r} "
            f"has {have}"
        )
    torch.manual_seed(config.seed)
    model = context.build(data)
    part = _load_part(out, "fp32-partial", resume)
    first_epoch = 0
    if part is not None:
        _check_same(part, {"train": config.to_dict(), **context.to_payload(data, False)})
        model.load_state_dict(part["state_dict"])
        first_epoch = int(part["progress"]["epoch"])
    base = {"train": config.to_dict(), **context.to_payload(data, False)}

    def save(epoch: int, opt_state: dict[str, Any]) -> None:
        _save(
            {
                "kind": "fp32-partial",
                **base,
                "state_dict": model.state_dict(),
                "progress": {"epoch": epoch},
                **opt_state,
            },
            part_path(out),
        )

    progress.phase("train fp32", config.epochs)
    progress.advance(first_epoch)
    _run_epochs(
        model,
        data,
        config,
        first_epoch=first_epoch,
        epoch_offset=0,
        state=part,
        save=save,
        progress=progress,
    )
    folded = has_batchnorm(model)
    if folded:
        fold_batchnorm(model)
    model = fold_mean_pools(model, data.input_shape)  # the same function, before INQ
    accuracy = evaluate(model, data.test)
    metrics = {"accuracy": accuracy}
    _finish(
        {
            "kind": "fp32",
            **base,
            **context.to_payload(data, folded, folded_means=True),
            "state_dict": model.state_dict(),
            "metrics": metrics,
        },
        out,
    )
    return {
        "out": str(out),
        "fingerprint": state_fingerprint(model),
        "dataset": context.dataset,
        "model": context.model,
        "test_samples": len(data.test),
        **metrics,
    }


def _check_same(part: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse to resume a run whose options differ from the saved ones, naming the first
    option that differs (``--lr``: saved 0.05, now 0.1) and both values."""
    for key, value in expected.items():
        diff = _first_difference(part.get(key), value, key)
        if diff is None:
            continue
        path, saved, now = diff
        leaf = path.rsplit(".", 1)[-1]
        name = f"--{leaf.replace('_', '-')}" if path.startswith("train.") else path
        raise CheckpointError(
            f"Cannot resume: {name} differs from the saved run (saved {saved!r}, now {now!r});"
            " rerun with the saved value or without --resume"
        )


def _first_difference(saved: Any, now: Any, path: str) -> tuple[str, Any, Any] | None:
    """The dotted path and the two values of the first leaf where ``saved`` and ``now``
    differ (None when equal)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now), key=str):
            diff = _first_difference(saved.get(key), now.get(key), f"{path}.{key}")
            if diff is not None:
                return diff
        return None
    return None if saved == now else (path, saved, now)


@dataclass
class _InqRun:
    """What the steps of :func:`run_inq` share: the model, its quantizer, the fixed part
    of every checkpoint (``base``) and the history so far."""

    model: nn.Module
    data: Dataset
    inq: IncrementalQuantizer
    train_config: TrainConfig
    base: dict[str, Any]
    out: Path
    progress: Progress
    history: list[dict[str, Any]]

    def save(self, epoch_done: int, opt_state: dict[str, Any]) -> None:
        """Write the running state to ``<out>.part``."""
        _save(
            {
                "kind": "inq-partial",
                **self.base,
                "state_dict": self.model.state_dict(),
                "inq": self.inq.state_dict(),
                "history": self.history,
                "progress": {"epoch": epoch_done},
                **opt_state,
            },
            part_path(self.out),
        )


def _inq_base(
    source: str | os.PathLike[str],
    fp32: dict[str, Any],
    model: nn.Module,
    data: Dataset,
    config: INQConfig,
    train_config: TrainConfig,
) -> dict[str, Any]:
    """The checkpoint fields fixed for the run: provenance, FP32 and one-shot accuracy."""
    return {
        "model": fp32["model"],
        "dataset": fp32["dataset"],
        "train": train_config.to_dict(),
        "source": {"path": str(source), "sha256": file_sha256(source)},
        "metrics": {
            "fp32_accuracy": evaluate(model, data.test),
            "one_shot_accuracy": evaluate(
                one_shot_quantize(
                    model, config.bits, skip=config.skip, weight_format=config.weight_format
                ),
                data.test,
            ),
        },
    }


def _resume_inq(run: _InqRun, resume: bool) -> tuple[int, dict[str, Any] | None]:
    """Load ``<out>.part`` into ``run`` if resuming; returns the epoch reached in the
    current step and the optimiser state to continue from (None: start it afresh)."""
    part = _load_part(run.out, "inq-partial", resume)
    epoch = 0
    if part is not None:
        _check_same(part, {k: run.base[k] for k in ("source", "train")})
        run.model.load_state_dict(part["state_dict"])
        run.inq.load_state_dict(part["inq"])
        run.history, epoch = list(part["history"]), int(part["progress"]["epoch"])
    state = part if part is not None and 0 < epoch < run.train_config.epochs else None
    return epoch, state


def _inq_steps(run: _InqRun, epoch: int, state: dict[str, Any] | None) -> None:
    """Quantize the next portion and re-train, step after step, until every weight is
    frozen; each step is evaluated after quantizing and after re-training."""
    inq, epochs = run.inq, run.train_config.epochs
    while True:
        if inq.step == 0 or epoch >= epochs:
            if inq.done:
                break
            inq.advance()
            epoch, state = 0, None
            run.history.append(
                {
                    "step": inq.step,
                    "portion": inq.portion,
                    "accuracy_quantized": evaluate(run.model, run.data.test),
                }
            )
            run.save(0, {})
        _run_epochs(
            run.model,
            run.data,
            run.train_config,
            first_epoch=epoch,
            epoch_offset=(inq.step - 1) * epochs,
            state=state,
            save=run.save,
            progress=run.progress,
            attach=inq.attach,
        )
        epoch = epochs
        run.history[-1]["accuracy"] = evaluate(run.model, run.data.test)
        run.save(epoch, {})


def _finish_inq(run: _InqRun, config: INQConfig) -> dict[str, Any]:
    """Check the grid, write the finished checkpoint; returns the run's summary."""
    if not run.inq.check():
        raise TrainingDiverged(
            f"INQ finished with a weight off the {config.weight_format} grid (training diverged?)"
        )
    metrics = {**run.base["metrics"], "accuracy": run.history[-1]["accuracy"]}
    _finish(
        {
            "kind": "inq",
            **run.base,
            "metrics": metrics,
            "state_dict": run.model.state_dict(),
            "inq": run.inq.state_dict(),
            "history": run.history,
            "layers": run.inq.summary(),
        },
        run.out,
    )
    return {
        "out": str(run.out),
        "verified_weights": verify_inq_checkpoint(run.out),
        "fingerprint": state_fingerprint(run.model, run.inq),
        "bits": config.bits,
        "weight_format": config.weight_format,
        "partition": config.partition,
        "schedule": list(config.schedule),
        **metrics,
        "history": run.history,
        "layers": run.inq.summary(),
    }


def run_inq(
    source: str | os.PathLike[str],
    config: INQConfig,
    train_config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the whole INQ schedule on the FP32 checkpoint ``source``; write ``out``.

    Each step partitions and quantizes, then re-trains the free weights for
    ``train_config.epochs`` epochs (SGD and learning rate reset per step, cosine decay
    within it). After the last step every weight is frozen and that step's epochs train
    only the full-precision biases. Returns a summary with the per-step history, the
    final accuracy, FP32 accuracy and one-shot (no re-training) accuracy.
    """
    progress = progress or Progress()
    fp32 = load_checkpoint(source, kinds=("fp32",))
    model, data = load_model(fp32)
    base = _inq_base(source, fp32, model, data, config, train_config)
    inq = IncrementalQuantizer(model, config)  # n1 fixed here, from the FP32 weights
    run = _InqRun(model, data, inq, train_config, base, Path(out), progress, [])
    epoch, state = _resume_inq(run, resume)
    progress.phase(f"INQ {config.bits}-bit", inq.num_steps * train_config.epochs)
    progress.advance(max(0, inq.step - 1) * train_config.epochs + epoch)
    _inq_steps(run, epoch, state)
    return _finish_inq(run, config)
