"""Defaults shared by the commands that train and quantize (``train``, ``quantize``, ``flow``).

One place, so that ``inq-hw quantize`` and ``inq-hw flow`` train the same way unless told
otherwise (issue 20, "Consistency of the CLI"). No imports: ``inq-hw --help`` reads it.

The random partition is the default because on digits-cnn it beat the magnitude partition
at every bit-width measured (README, "Results on the embedded digits set"), and ``auto``
picks the paper's schedule for the bit-width.
"""

__all__ = ["BATCH_SIZE", "FP32_EPOCHS", "INQ_EPOCHS", "LR", "PARTITION", "SCHEDULE", "SEED"]

PARTITION = "random"
SCHEDULE = "auto"
LR = 0.05
SEED = 0
INQ_EPOCHS = 4
FP32_EPOCHS = 30
BATCH_SIZE = 64
