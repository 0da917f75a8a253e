"""Incremental Network Quantization: schedules, partitions and the stateful quantizer."""

import copy

from torch import nn

from inq_hw.inq.partition import (
    PARTITIONS,
    partition_by_magnitude,
    partition_random,
    portion_count,
    register_partition,
)
from inq_hw.inq.quantizer import (
    WEIGHT_FORMATS,
    IncrementalQuantizer,
    INQConfig,
    QuantizedLayer,
    quantizable_layers,
    unwrap,
)
from inq_hw.inq.schedule import DEFAULT_SCHEDULE, NAMED_SCHEDULES, parse_schedule, schedule_for_bits

__all__ = [
    "DEFAULT_SCHEDULE",
    "NAMED_SCHEDULES",
    "PARTITIONS",
    "WEIGHT_FORMATS",
    "INQConfig",
    "IncrementalQuantizer",
    "QuantizedLayer",
    "one_shot_quantize",
    "parse_schedule",
    "partition_by_magnitude",
    "partition_random",
    "portion_count",
    "quantizable_layers",
    "register_partition",
    "schedule_for_bits",
]


def one_shot_quantize(
    model: nn.Module, bits: int, *, skip: tuple[str, ...] = (), weight_format: str = "po2"
) -> nn.Module:
    """A copy of ``model`` with every weight quantized at once, without re-training.

    The baseline INQ is compared against: the same quantizer and n1, schedule ``(1.0,)``.
    """
    copied = copy.deepcopy(unwrap(model))
    config = INQConfig(bits=bits, schedule=(1.0,), skip=skip, weight_format=weight_format)
    IncrementalQuantizer(copied, config).advance()
    return copied
