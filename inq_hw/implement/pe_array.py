"""The programmable shift-PE array as an ``implement`` target, and its fit to a device.

A dataflow top spends logic on every weight; when no folding of it fits a device (the
2-bit digits-cnn needs about 11,600 iCE40 logic cells unrolled or folded, an UP5K has
5,280), the PE array (:class:`rtl_gen.pe_array.PEArray`) runs the same package with its
weights in block RAM on R×C shift-MAC PEs, one layer after another. This module:

* :func:`generate_pe_array` compiles a package for an R×C array
  (:func:`rtl_gen.pe_program.fit_config`, :func:`rtl_gen.pe_program.compile_program`)
  and writes its Verilog and manifest (the package's hash, the cycle model's cycles);
* :func:`host_cycles` is one image's cycles as a host runs it: the input written one word
  per cycle, one start cycle, the program (:func:`sim.cycle_model.predict`, equal to the
  RTL's ``o_cycles`` on every tested shape), the output read one word per cycle plus the
  read port's one cycle of latency. The array holds one image at a time, so this is both
  its interval and its latency;
* :func:`choose_pe_array` picks the shape for a device: of :data:`SHAPES`, the fewest host
  cycles whose predicted resources (:func:`inq_hw.cost.fpga_pe.estimate_pe_array`) fit
  the margin, as :func:`inq_hw.implement.fit.choose_folding` does for foldings (or, with
  ``fps``, the least area that reaches it).

Example usage::

    generate_pe_array("pkg", "pkg/rtl-pe", rows=1, cols=16)
    fit = choose_pe_array(load_package("pkg"), get_device("ice40-up5k"), margin=0.85)
    fit.pe, fit.interval_cycles, fit.predicted["bram"]
"""

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

from inq_hw.cost.fpga import logic_cells
from inq_hw.cost.fpga_pe import estimate_pe_array
from inq_hw.errors import ConfigError
from inq_hw.implement.devices import Device

__all__ = [
    "SHAPES",
    "choose_pe_array",
    "compile_for",
    "generate_pe_array",
    "host_cycles",
    "parse_pe",
    "smallest_need",
]

#: The shapes a fit tries: one row of up to 64 columns (columns share the row's
#: activation read, so they add no block RAM), and 2 and 4 rows (each row copies the
#: activation memory).
SHAPES = tuple(
    [(1, c) for c in (1, 2, 4, 8, 16, 32, 64)] + [(r, c) for r in (2, 4) for c in (2, 4, 8, 16)]
)

_SHAPE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_pe(text: str) -> tuple[int, int]:
    """``"RxC"`` as ``(rows, cols)``; :class:`ConfigError` in one line otherwise."""
    match = _SHAPE.match(text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ConfigError(f"--pe must be ROWSxCOLS with both at least 1 (e.g. 1x16), not {text!r}")
    return int(match.group(1)), int(match.group(2))


def compile_for(model: Any, rows: int, cols: int, baseline: str | None = None) -> Any:
    """The package's :class:`rtl_gen.pe_program.Program` on the smallest R×C array that
    runs it (the multiplier-PE twin with ``baseline="mult8"``).

    Raises:
        ProgramError: A layer the array cannot run (one line).
    """
    from rtl_gen.pe_program import compile_program, fit_config

    pe = "mult" if baseline else "shift"
    return compile_program(model, fit_config(model, rows=rows, cols=cols, pe=pe))


def host_cycles(program: Any) -> int:
    """One image's cycles through the array as a host runs it (module docstring)."""
    from sim.cycle_model import predict

    return program.input.size + 1 + predict(program).cycles + program.output.size + 1


def generate_pe_array(
    package: str | os.PathLike[str],
    rtl_dir: str | os.PathLike[str],
    *,
    rows: int,
    cols: int,
    baseline: str | None = None,
) -> Any:
    """Write the package's R×C PE array into ``rtl_dir`` (Verilog, ``manifest.json``
    with the package's hash and :func:`host_cycles` as ``interval_cycles`` and
    ``latency_cycles``); returns the program."""
    from inq_hw.intmodel.package import load_package, package_hash
    from rtl_gen.export import write_designs
    from sim.pe_array_sim import pe_array_design

    program = compile_for(load_package(Path(package)), rows, cols, baseline)
    design = pe_array_design(program, source_hash=package_hash(Path(package)))
    cycles = host_cycles(program)
    params = {**design.params, "interval_cycles": cycles, "latency_cycles": cycles,
              "baseline": baseline}  # fmt: skip
    write_designs([dataclasses.replace(design, params=params)], rtl_dir)
    return program


def smallest_need(model: Any, device: Device) -> str:
    """What the smallest array (1×1) needs, for a refusal: ``"the smallest, 1x1, needs
    1,553 LUT, 480 FF, 34 block RAMs (predicted; ice40-up5k has 30)"``, or why the array
    cannot run the package."""
    from rtl_gen.pe_program import ProgramError

    try:
        program = compile_for(model, 1, 1)
    except ProgramError as error:
        return f"the PE array cannot run it: {error}"
    used = estimate_pe_array(program.config, device.family).resources()
    return (
        f"the smallest, 1x1, needs {used['lut']:,} LUT, {used['ff']:,} FF, {used['bram']} "
        f"block RAMs (predicted; {device.name} has {device.bram})"
    )


def choose_pe_array(
    model: Any,
    device: Device,
    *,
    margin: float,
    clock_mhz: float,
    fps: float | None = None,
    shapes: tuple[tuple[int, int], ...] = SHAPES,
) -> Any:
    """The PE-array :class:`inq_hw.implement.fit.Fit` for ``device`` (module docstring),
    or None when no shape fits (or, with ``fps``, none that fits reaches it)."""
    from inq_hw.implement.fit import Fit, fits_budget
    from rtl_gen.pe_program import ProgramError

    priced = []
    for rows, cols in shapes:
        try:
            program = compile_for(model, rows, cols)
        except ProgramError:
            continue
        used = estimate_pe_array(program.config, device.family).resources()
        if fits_budget(used, device, margin):
            priced.append(
                (
                    host_cycles(program),
                    logic_cells(used["lut"], used["ff"], device.family),
                    rows,
                    cols,
                    used,
                )
            )
    if fps is not None:
        limit = math.floor(clock_mhz * 1e6 / fps)
        priced = [p for p in priced if p[0] <= limit]
        key = lambda p: (p[1], p[0])  # noqa: E731  least area, then fewest cycles
    else:
        key = lambda p: (p[0], p[1])  # noqa: E731  fewest cycles, then least area
    if not priced:
        return None
    cycles, _, rows, cols, used = min(priced, key=key)
    return Fit(
        device=device.name,
        family=device.family,
        folding={},
        interval_cycles=cycles,
        latency_cycles=cycles,
        clock_mhz=clock_mhz,
        margin=margin,
        fps=fps,
        predicted=used,
        share=device.shares(used),  # type: ignore[arg-type]
        candidates=len(shapes),
        arch="pe-array",
        pe=(rows, cols),
    )
