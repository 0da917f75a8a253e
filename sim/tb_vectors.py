"""cocotb testbench for any rtl_gen block: per-cycle inputs, per-cycle expected outputs.

The configuration (``sim.runner``) lists, for each cycle, the values to put on input ports
(integers, two's complement for signed ports) and the values expected on output ports
after the logic settles in that cycle (``null``: not checked). The Python side computes
them from the golden arithmetic, so one testbench serves every block: constant-weight
units (combinational or pipelined), the requantiser, the PEs. A failure names the cycle,
the port, the expected and the seen value.
"""

from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, Timer
from cocotb.types import Logic

from sim.tb_io import read_config, write_result

_KEPT_MISMATCHES = 20


def _read(handle: Any, signed: bool) -> int | None:
    """The port's integer, or None when any bit is X or Z."""
    value = handle.value
    if isinstance(value, Logic):
        return int(value) if str(value) in "01" else None
    if not value.is_resolvable:
        return None
    return int(value.to_signed() if signed else value.to_unsigned())


@cocotb.test()
async def vectors(dut: Any) -> None:
    cfg = read_config()
    ports = cfg["ports"]  # name -> {"width": w, "signed": bool}
    clocked = "clk" in ports
    if clocked:
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        for _ in range(2):
            await FallingEdge(dut.clk)
        dut.rst.value = 0
    mismatches: list[dict[str, Any]] = []
    checked = 0
    for cycle, (inputs, expected) in enumerate(zip(cfg["inputs"], cfg["expect"], strict=True)):
        if clocked:
            await FallingEdge(dut.clk)
        for name, value in inputs.items():
            mask = (1 << ports[name]["width"]) - 1
            getattr(dut, name).value = int(value) & mask
        await ReadOnly()
        for name, want in expected.items():
            if want is None:
                continue
            seen = _read(getattr(dut, name), ports[name]["signed"])
            checked += 1
            if seen != want and len(mismatches) < _KEPT_MISMATCHES:
                mismatches.append({"cycle": cycle, "port": name, "expected": want, "seen": seen})
        if not clocked:
            await Timer(1, unit="ns")
    result = {"cycles": len(cfg["inputs"]), "checked": checked, "mismatches": mismatches}
    write_result(cfg, result)
    assert not mismatches, mismatches[:3]
