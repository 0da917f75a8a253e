"""inq-hw: Incremental Network Quantization to multiplier-free hardware.

Example usage::

    import torch
    from inq_hw import INQConfig, IncrementalQuantizer, quantize_po2

    quantize_po2(torch.tensor([0.3, -0.05, 0.9]), bits=4)   # tensor([0.25, 0., 1.])
"""

from inq_hw.errors import CheckpointError, ConfigError, DataError, InqHwError, ModelError
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
