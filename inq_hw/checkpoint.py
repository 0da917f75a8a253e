"""Checkpoint files: atomic writes, safe loads, and the context that later stages need.

A checkpoint is a ``torch.save`` of plain containers and tensors only, so it loads with
``torch.load(weights_only=True)`` (no code from the file runs). It records what a later
stage needs to rebuild the run without extra flags: the model's zoo name and constructor
arguments, the data set and its split seed, and for INQ the bits, schedule, partition and
per-layer n1/n2/masks.
"""

import os
from pathlib import Path
from typing import Any

from inq_hw.errors import CheckpointError
from inq_hw.files import atomic_write, file_sha256

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "atomic_write",
    "file_sha256",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "inq-hw-checkpoint"
CHECKPOINT_VERSION = 1
KINDS = ("fp32", "inq", "fp32-partial", "inq-partial")


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``payload`` (with format and version stamped in) atomically to ``path``."""
    if payload.get("kind") not in KINDS:
        raise CheckpointError(
            f"Checkpoint kind must be one of {KINDS}, not {payload.get('kind')!r}"
        )
    stamped = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    import torch  # here, so the file helpers above import without torch

    def write(tmp: Path) -> None:
        # Through a file object: saved to a path, torch names the archive's records after
        # the (random) temporary file, so equal checkpoints would differ in their bytes.
        with open(tmp, "wb") as handle:
            torch.save(stamped, handle)

    return atomic_write(path, write)


def load_checkpoint(
    path: str | os.PathLike[str], *, kinds: tuple[str, ...] = KINDS
) -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        Missing, truncated, corrupted, not ours, of a newer version or of another kind.
    """
    import torch

    source = Path(path)
    _check_is_checkpoint_file(source)
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged zip/pickle data
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"Checkpoint is truncated or corrupted: {source} ({reason})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"Not an inq-hw checkpoint: {source}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"Checkpoint version {payload.get('version')!r} is not supported: {source}"
        )
    if payload.get("kind") not in kinds:
        raise CheckpointError(
            f"Checkpoint {source} is of kind {payload.get('kind')!r}, expected one of {kinds}"
        )
    for key in ("model", "dataset", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"Checkpoint {source} lacks the {key!r} entry")
    return payload


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def _check_is_checkpoint_file(source: Path) -> None:
    """Name what ``source`` is when it is not a checkpoint, before torch reads it."""
    if source.is_dir():
        if (source / "model.json").is_file():
            raise CheckpointError(
                f"{source} is an integer model package, not a checkpoint: give the .pt "
                "checkpoint it was exported from (the package itself goes to eval, vectors, "
                "generate, simulate, cost, explore)"
            )
        raise CheckpointError(f"{source} is a directory, not a checkpoint file")
    if not source.is_file():
        raise CheckpointError(f"Checkpoint not found: {source}")
    with open(source, "rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if head != _ZIP_MAGIC:
        kind = (
            "a text file"
            if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head)
            else ("empty" if not head else "not a zip archive")
        )
        raise CheckpointError(
            f"Not an inq-hw checkpoint: {source} is {kind}, not a file written by "
            "`inq-hw train` or `inq-hw quantize`"
        )
