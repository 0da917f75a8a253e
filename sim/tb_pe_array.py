"""cocotb testbench of the programmable PE array (:mod:`rtl_gen.pe_array`) through its host
ports, against the golden executor's integers.

Driven by a JSON configuration (``sim.runner``): ``vectors`` (an ``.npz`` with the flat
integer ``input`` images and the golden executor's flat ``output``), ``images`` to run,
the ``input_base`` and ``output_base``/``output_size`` of the program's memory map, and
``max_cycles`` per inference.

Per image, at falling clock edges: write the image one word per cycle (``i_wr_en``), pulse
``i_start`` for one cycle, then let the simulator run freely until ``o_done`` rises (or the
cycle limit passes: a timeout), read the output words back through ``i_rd_addr`` /
``o_rd_data`` (one edge of read latency) and compare every integer. Two cycle counts are
reported per image: the array's own ``o_cycles`` and the clock edges the testbench
counted from the edge that sampled ``i_start`` to the edge that raised ``o_done``. The
wall-clock time of that free run gives the simulator's speed in cycles per second.
"""

import time
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from sim.tb_io import read_config, write_result

PERIOD_NS = 10
_KEPT_MISMATCHES = 20


async def _reset(dut: Any) -> None:
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    dut.i_start.value = 0
    dut.i_wr_en.value = 0
    dut.i_wr_addr.value = 0
    dut.i_wr_data.value = 0
    dut.i_rd_addr.value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _write_image(dut: Any, base: int, image: np.ndarray) -> None:
    for i, value in enumerate(image):
        await FallingEdge(dut.clk)
        dut.i_wr_en.value = 1
        dut.i_wr_addr.value = base + i
        dut.i_wr_data.value = int(value)
    await FallingEdge(dut.clk)
    dut.i_wr_en.value = 0


async def _run_once(dut: Any, max_cycles: int) -> dict[str, Any]:
    """Pulse start, wait for done; the cycle counts and the wall-clock seconds."""
    dut.i_start.value = 1
    await RisingEdge(dut.clk)  # the edge that samples i_start
    started = get_sim_time(unit="ns")
    await FallingEdge(dut.clk)
    dut.i_start.value = 0
    wall = time.perf_counter()
    fired = await First(RisingEdge(dut.o_done), Timer(max_cycles * PERIOD_NS, unit="ns"))
    seconds = time.perf_counter() - wall
    if not isinstance(fired, RisingEdge):
        return {"timeout": True, "seconds": seconds}
    counted = round((get_sim_time(unit="ns") - started) / PERIOD_NS)
    await ReadOnly()
    return {
        "timeout": False,
        "seconds": seconds,
        "counted_cycles": counted,
        "o_cycles": dut.o_cycles.value.to_unsigned(),
    }


async def _read_output(dut: Any, base: int, size: int) -> list[int]:
    """One address per falling edge; each word is on ``o_rd_data`` after the next rising."""
    values = []
    for i in range(size + 1):
        await FallingEdge(dut.clk)
        if i:
            values.append(dut.o_rd_data.value.to_signed())
        if i < size:
            dut.i_rd_addr.value = base + i
    return values


def _compare(n: int, want: np.ndarray, seen: list[int], kept: list[dict[str, int]]) -> bool:
    wrong = [k for k, (a, b) in enumerate(zip(want, seen, strict=True)) if int(a) != b]
    for k in wrong[: max(_KEPT_MISMATCHES - len(kept), 0)]:
        kept.append({"sample": n, "output": k, "expected": int(want[k]), "seen": seen[k]})
    return not wrong


@cocotb.test()
async def run_images(dut: Any) -> None:
    cfg = read_config()
    vectors = np.load(cfg["vectors"])
    count = cfg["images"]
    await _reset(dut)
    runs: list[dict[str, Any]] = []
    outputs: list[list[int]] = []
    mismatches: list[dict[str, int]] = []
    mismatched = 0
    for n in range(count):
        await _write_image(dut, cfg["input_base"], vectors["input"][n])
        run = await _run_once(dut, cfg["max_cycles"])
        runs.append(run)
        if run["timeout"]:
            break
        seen = await _read_output(dut, cfg["output_base"], cfg["output_size"])
        outputs.append(seen)
        mismatched += not _compare(n, vectors["output"][n], seen, mismatches)
    result = {
        "images": count,
        "completed": len(outputs),
        "timeout": any(run["timeout"] for run in runs),
        "o_cycles": [run["o_cycles"] for run in runs if not run["timeout"]],
        "counted_cycles": [run["counted_cycles"] for run in runs if not run["timeout"]],
        "run_seconds": [run["seconds"] for run in runs],
        "mismatched_samples": mismatched,
        "mismatches": mismatches,
        "outputs": outputs,
    }
    write_result(cfg, result)
    assert not result["timeout"], f"o_done did not rise within {cfg['max_cycles']} cycles"
    assert mismatched == 0, mismatches[:3]
