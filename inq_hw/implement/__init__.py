"""Implementation: synthesis, place and route and bitstream of dataflow tops on FPGAs.

Torch-free: it reads rtl_gen's output (or a package, through rtl_gen) and writes a
results file that the flow and the report read.
"""

from inq_hw.implement.devices import DEVICES, Device, DeviceError, get_device
from inq_hw.implement.flow import ImplementError, dataflow_top, implement_rtl

__all__ = [
    "DEVICES",
    "Device",
    "DeviceError",
    "ImplementError",
    "dataflow_top",
    "get_device",
    "implement_rtl",
]
