"""The integer model: the contract between software and hardware.

:mod:`~inq_hw.intmodel.arith` (number formats and the shared arithmetic),
:mod:`~inq_hw.intmodel.layers` (frozen dataclasses), :mod:`~inq_hw.intmodel.execute` (the
bit-exact golden executor) and :mod:`~inq_hw.intmodel.package` (the validated package on
disk). Nothing here imports PyTorch models; rtl_gen, sim and the cost model read this.
"""

from inq_hw.intmodel.arith import (
    ActFormat,
    accumulator_bits,
    quantize_input,
    requantize,
    round_shift,
)
from inq_hw.intmodel.execute import predict, run
from inq_hw.intmodel.layers import (
    LAYER_KINDS,
    AddLayer,
    AvgPoolLayer,
    Conv2dLayer,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    ReLULayer,
    WeightLayer,
)
from inq_hw.intmodel.package import (
    load_package,
    package_hash,
    save_package,
    validate_model,
)

__all__ = [
    "LAYER_KINDS",
    "ActFormat",
    "AddLayer",
    "AvgPoolLayer",
    "Conv2dLayer",
    "FlattenLayer",
    "InputLayer",
    "IntModel",
    "Layer",
    "LinearLayer",
    "MaxPoolLayer",
    "ReLULayer",
    "WeightLayer",
    "accumulator_bits",
    "load_package",
    "package_hash",
    "predict",
    "quantize_input",
    "requantize",
    "round_shift",
    "run",
    "save_package",
    "validate_model",
]
