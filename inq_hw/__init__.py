"""inq-hw: Incremental Network Quantization to multiplier-free hardware.

Importing ``inq_hw`` (or its contract: ``inq_hw.intmodel``, ``inq_hw.errors``, the file
helpers) does not import PyTorch; the training API below loads it on first use (PEP 562).

Example usage::

    import torch
    from inq_hw import INQConfig, IncrementalQuantizer, quantize_po2

    quantize_po2(torch.tensor([0.3, -0.05, 0.9]), bits=4)   # tensor([0.25, 0., 1.])
"""

import importlib
from typing import TYPE_CHECKING, Any

from inq_hw.errors import CheckpointError, ConfigError, DataError, InqHwError, ModelError

if TYPE_CHECKING:
    from inq_hw.inq import (
        IncrementalQuantizer,
        INQConfig,
        one_shot_quantize,
        parse_schedule,
        partition_by_magnitude,
        partition_random,
    )
    from inq_hw.quant import Po2Codes, compute_n1, compute_n2, pack_codes, po2_codes, quantize_po2

__version__ = "0.1.0"

#: The torch side of the public API: name → the module that defines it, imported lazily.
_LAZY = {
    "IncrementalQuantizer": "inq_hw.inq",
    "INQConfig": "inq_hw.inq",
    "one_shot_quantize": "inq_hw.inq",
    "parse_schedule": "inq_hw.inq",
    "partition_by_magnitude": "inq_hw.inq",
    "partition_random": "inq_hw.inq",
    "Po2Codes": "inq_hw.quant",
    "compute_n1": "inq_hw.quant",
    "compute_n2": "inq_hw.quant",
    "pack_codes": "inq_hw.quant",
    "po2_codes": "inq_hw.quant",
    "quantize_po2": "inq_hw.quant",
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "INQConfig",
    "IncrementalQuantizer",
    "InqHwError",
    "ModelError",
    "Po2Codes",
    "compute_n1",
    "compute_n2",
    "one_shot_quantize",
    "pack_codes",
    "parse_schedule",
    "partition_by_magnitude",
    "partition_random",
    "po2_codes",
    "quantize_po2",
]


def __getattr__(name: str) -> Any:
    """Load the torch-side API on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'inq_hw' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
