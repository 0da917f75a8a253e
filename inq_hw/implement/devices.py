"""The FPGAs ``inq-hw implement`` targets and their resources.

Figures are the vendors' datasheet counts:

* iCE40 UltraPlus UP5K (Lattice FPGA-DS-02008, table 1.1): 5,280 LUT4 (each with a
  flip-flop), 30 sysMEM EBR of 4 kbit, 8 sysDSP (SB_MAC16), 4 SPRAM of 256 kbit; SG48
  package.
* iCE40 HX8K (Lattice DS1040, table 1.1): 7,680 logic cells (LUT4 and flip-flop), 32
  RAM4K blocks, no DSP; CT256 package.
* ECP5 LFE5U-25F / -45F / -85F (Lattice FPGA-DS-02012, table 1.1): 24K / 44K / 84K LUT4
  (24,288 / 43,848 / 83,640, two flip-flops per two LUTs), 56 / 108 / 208 sysMEM EBR of 18
  kbit, 28 / 72 / 156 18x18 multipliers; CABGA381 package.

A top needs four pins whatever its ports (:mod:`inq_hw.implement.flow`), so pin counts
are not modelled.

Example usage::

    device = get_device("ice40-up5k")
    device.lut, device.family, device.nextpnr_args
"""

from dataclasses import dataclass

from inq_hw.errors import ConfigError

__all__ = ["DEVICES", "Device", "DeviceError", "get_device", "smallest_fitting"]


class DeviceError(ConfigError):
    """An unknown device name."""


@dataclass(frozen=True)
class Device:
    """One FPGA part: its family (the Yosys and nextpnr target), nextpnr's device and
    package flags and its datasheet resources."""

    name: str
    family: str  # "ice40" | "ecp5"
    nextpnr_args: tuple[str, ...]
    lut: int
    ff: int
    bram: int
    dsp: int
    part: str

    def shares(self, used: dict[str, int | None]) -> dict[str, float | None]:
        """Each resource used as a fraction of the device's (None where it has none)."""
        have = {"lut": self.lut, "ff": self.ff, "bram": self.bram, "dsp": self.dsp}
        out: dict[str, float | None] = {}
        for name, total in have.items():
            value = used.get(name)
            out[name] = None if value is None or total == 0 else value / total
        return out

    def shortfall(self, used: dict[str, int | None]) -> list[str]:
        """The resources ``used`` needs beyond this device's, as ``"91,686 LUT (has 83,640)"``."""
        have = {"lut": self.lut, "ff": self.ff, "bram": self.bram, "dsp": self.dsp}
        return [
            f"{used[name]:,} {name.upper()} (has {total:,})"
            for name, total in have.items()
            if (used.get(name) or 0) > total
        ]


DEVICES: dict[str, Device] = {
    "ice40-up5k": Device(
        "ice40-up5k", "ice40", ("--up5k", "--package", "sg48"), 5280, 5280, 30, 8,
        "iCE40UP5K-SG48",
    ),
    "ice40-hx8k": Device(
        "ice40-hx8k", "ice40", ("--hx8k", "--package", "ct256"), 7680, 7680, 32, 0,
        "iCE40HX8K-CT256",
    ),
    "ecp5-25k": Device(
        "ecp5-25k", "ecp5", ("--25k", "--package", "CABGA381"), 24288, 24288, 56, 28,
        "LFE5U-25F-CABGA381",
    ),
    "ecp5-45k": Device(
        "ecp5-45k", "ecp5", ("--45k", "--package", "CABGA381"), 43848, 43848, 108, 72,
        "LFE5U-45F-CABGA381",
    ),
    "ecp5-85k": Device(
        "ecp5-85k", "ecp5", ("--85k", "--package", "CABGA381"), 83640, 83640, 208, 156,
        "LFE5U-85F-CABGA381",
    ),
}  # fmt: skip


def get_device(name: str) -> Device:
    """The device called ``name``; :class:`DeviceError` naming the known ones otherwise."""
    try:
        return DEVICES[name]
    except KeyError:
        raise DeviceError(f"Unknown device {name!r}; known: {', '.join(DEVICES)}") from None


def smallest_fitting(family: str, used: dict[str, int | None]) -> Device | None:
    """The device of ``family`` with the fewest LUTs that holds ``used``, if any."""
    fits = [d for d in DEVICES.values() if d.family == family and not d.shortfall(used)]
    return min(fits, key=lambda d: d.lut, default=None)
