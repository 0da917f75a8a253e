"""Defaults shared by the commands that train and quantize (``train``, ``quantize``, ``flow``).

One place, so that ``inq-hw quantize`` and ``inq-hw flow`` train the same way unless told
otherwise (issue 20, "Consistency of the CLI"). No imports: ``inq-hw --help`` reads it.

The random partition is the default because on digits-cnn it beat the magnitude partition
at every bit-width measured (README, "Results on the embedded digits set"), and ``auto``
picks the paper's schedule for the bit-width.
"""

__all__ = [
    "BATCH_SIZE",
    "DEFAULT_IMPLEMENT_BITS",
    "DEFAULT_IMPLEMENT_CLOCK_MHZ",
    "DEFAULT_IMPLEMENT_DESIGNS",
    "DEFAULT_IMPLEMENT_DEVICE",
    "FOLDING",
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

#: The flow's dataflow folding (``--fold``): 32 folds every digits-cnn layer onto one lane
#: (a fold never exceeds a layer's outputs), the smallest top the generator makes, so the
#: simulated top is also the one the implementation stage places and routes on the default
#: device (README, "The flow and its report"). ``all=8`` synthesised to 25,150 iCE40 logic
#: cells at 2 bits in 1,073 s; ``all=32`` to 8,321 LUT4 and 7,925 flip-flops (wrapper
#: included) in 31 s of CPU.
FOLDING = {"all": 32}

#: The flow's implementation stage (``inq-hw flow``): the device each implemented
#: bit-width's whole top and its twin are placed and routed on, the clock constraint, the
#: designs and which bit-widths. ECP5-25k is the smallest device that holds the 2-bit
#: ``all=32`` top (the iCE40s have 5,280 and 7,680 LUTs): 7,844 LUT4 (32%), 7,747 FF, Fmax
#: 15.6 MHz (so 12 MHz is met), 134 s of synthesis, place and route and packing in a cold
#: flow. The twin with DSPs is refused after a 38 s synthesis (569 DSP; no ECP5 has more
#: than 156); the LUT-only twin (105,717 LUT, more than any ECP5) would add 106 s of
#: synthesis only to be refused, so it is opt-in (``--implement-designs``). One bit-width,
#: the smallest, keeps the cold default flow near 10 minutes: 649 s measured with the
#: LUT-only twin, 106 s of it that twin's stage (README, "The flow and its report").
DEFAULT_IMPLEMENT_DEVICE = "ecp5-25k"
DEFAULT_IMPLEMENT_CLOCK_MHZ = 12.0
DEFAULT_IMPLEMENT_DESIGNS = ("shift_add", "mult8")
DEFAULT_IMPLEMENT_BITS = "smallest"
