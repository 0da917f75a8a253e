"""The integer model: the contract between software and hardware.

:mod:`~inq_hw.intmodel.arith` (number formats and the shared arithmetic),
:mod:`~inq_hw.intmodel.layers` (frozen dataclasses), :mod:`~inq_hw.intmodel.baseline` (the
8-bit uniform baseline of each weight layer, the multiplier twin's weights),
:mod:`~inq_hw.intmodel.execute` (the bit-exact golden executor) and
:mod:`~inq_hw.intmodel.package` (the validated package on disk). Nothing here imports
PyTorch models; rtl_gen, sim and the cost model read this.
"""

from inq_hw.intmodel.arith import (
    ActFormat,
    accumulator_bits,
    quantize_input,
    requantize,
    round_shift,
)
from inq_hw.intmodel.baseline import BASELINE_BITS, baseline_exponent, baseline_fields
from inq_hw.intmodel.execute import predict, run
from inq_hw.intmodel.layers import (
    LAYER_KINDS,
    AddLayer,
    AvgPoolLayer,
    ClampLayer,
    ConcatLayer,
    Conv2dLayer,
    ConvGeometry,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    MeanPoolLayer,
    ReLULayer,
    WeightArithmetic,
    WeightLayer,
)
from inq_hw.intmodel.package import (
    load_package,
    package_hash,
    save_package,
    validate_model,
)

__all__ = [
    "BASELINE_BITS",
    "LAYER_KINDS",
    "ActFormat",
    "AddLayer",
    "AvgPoolLayer",
    "ClampLayer",
    "ConcatLayer",
    "Conv2dLayer",
    "ConvGeometry",
    "FlattenLayer",
    "InputLayer",
    "IntModel",
    "Layer",
    "LinearLayer",
    "MaxPoolLayer",
    "MeanPoolLayer",
    "ReLULayer",
    "WeightArithmetic",
    "WeightLayer",
    "accumulator_bits",
    "baseline_exponent",
    "baseline_fields",
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
