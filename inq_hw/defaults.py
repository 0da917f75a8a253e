"""Defaults shared by the commands that quantize (``quantize``, ``flow``, ``sweep``).

One place, so that ``inq-hw quantize`` and ``inq-hw flow`` train the same way unless told
otherwise (issue 20, "Consistency of the CLI"). No imports: ``inq-hw --help`` reads it.

The random partition is the default because on the small networks of the zoo it beats the
magnitude partition at every bit-width (README, "INQ"), and ``auto`` picks the paper's
schedule for the bit-width.
"""

__all__ = ["BATCH_SIZE", "INQ_EPOCHS", "LR", "PARTITION", "SCHEDULE", "SEED"]

PARTITION = "random"
SCHEDULE = "auto"
LR = 0.05
SEED = 0
INQ_EPOCHS = 4
BATCH_SIZE = 64
