"""Defaults shared by the commands that train and quantize (``train``, ``quantize``, ``flow``).

One place, so that ``inq-hw quantize`` and ``inq-hw flow`` train the same way unless told
otherwise (issue 20, "Consistency of the CLI"). No imports: ``inq-hw --help`` reads it.

The random partition is the default because on digits-cnn it beat the magnitude partition
at every bit-width measured (README, "Results on the embedded digits set"), and ``auto``
picks the paper's schedule for the bit-width.
"""

__all__ = [
    "BATCH_SIZE",
    "DEFAULT_IMPLEMENT_CLOCK_MHZ",
    "DEFAULT_IMPLEMENT_DESIGNS",
    "DEFAULT_IMPLEMENT_DEVICE",
    "FP32_EPOCHS",
    "INQ_EPOCHS",
    "LR",
    "PARTITION",
    "SCHEDULE",
    "SEED",
]

PARTITION = "random"
SCHEDULE = "auto"
LR = 0.05
SEED = 0
INQ_EPOCHS = 4
FP32_EPOCHS = 30
BATCH_SIZE = 64

#: The flow's implementation stage (``inq-hw flow``): the device each bit-width's whole top
#: and its twins are placed and routed on, the clock constraint, and the designs.
#: PLACEHOLDER: chosen by measurement (README, "The flow and its report").
DEFAULT_IMPLEMENT_DEVICE = "ecp5-25k"
DEFAULT_IMPLEMENT_CLOCK_MHZ = 50.0
DEFAULT_IMPLEMENT_DESIGNS = ("shift_add", "mult8", "mult8_lut")
