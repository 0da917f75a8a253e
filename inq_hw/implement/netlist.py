"""Post-synthesis check: the synthesised netlist of a top, simulated bit-exact.

:func:`implement_rtl` writes ``netlist.v``: the top as Yosys mapped it to the device's
cells (LUT4, carry, flip-flops, block RAM, DSP). :func:`check_netlist` runs it with the
vendor cell models from Yosys's data directory (``ice40/cells_sim.v``,
``lattice/cells_sim_ecp5.v``) through the same cocotb dataflow testbench as the RTL
(:func:`sim.simulate.simulate_package`), on a few images with random gaps and stalls, so
a synthesis or mapping fault shows as a mismatch against the golden model; a PE array's
netlist runs through the array's testbench (:func:`sim.pe_array_sim.simulate_pe_array`).

Example usage::

    result = implement_rtl("pkg/rtl-dataflow", "ice40-up5k", out_dir="impl")
    summary = check_netlist("pkg", "pkg/rtl-dataflow", result, samples=4)
    summary["mismatched_samples"] == 0
"""

import os
import re
from pathlib import Path
from typing import Any

from inq_hw.tools import yosys_share_dir

__all__ = ["cell_models", "check_netlist"]


_MODELS = {"ice40": "ice40/cells_sim.v", "ecp5": "lattice/cells_sim_ecp5.v"}
#: Icarus runs Verilog-2005 (sim/runner.py); the iCE40 models' default port values
#: (``input E = 1'b1``) are SystemVerilog, so they are switched off: Yosys connects every
#: input of the cells it maps.
_PRELUDE = {"ice40": "`define NO_ICE40_DEFAULT_ASSIGNMENTS\n", "ecp5": ""}
#: Likewise SystemVerilog in the ECP5 models: an elaboration-time ``$error`` in a generate
#: branch (a LUT mode Yosys never writes), made a Verilog-2005 ``initial $display``.
_FIXES = {"ice40": (), "ecp5": (("$error(", "initial $display("),)}
_INCLUDE = re.compile(r'^\s*`include\s+"([^"]+)"\s*$', re.M)


def cell_models(family: str, out_dir: Path) -> Path:
    """The vendor cell simulation models of ``family`` as one file in ``out_dir``
    (``include`` lines inlined, nested ones too, each file once: ECP5's models include
    ``cells_ff.vh`` from two files; so no include path is needed)."""
    source = yosys_share_dir() / _MODELS[family]
    path = out_dir / f"cells_sim_{family}.v"
    text = _inlined(source, set())
    for old, new in _FIXES[family]:
        text = text.replace(old, new)
    path.write_text(_PRELUDE[family] + text)
    return path


def _inlined(source: Path, seen: set[Path]) -> str:
    """``source`` with each ``include`` replaced by the file (relative to ``source``),
    recursively; a file already inlined becomes an empty line."""
    seen.add(source)

    def include(match: re.Match[str]) -> str:
        path = source.parent / match.group(1)
        return "\n" if path in seen else _inlined(path, seen)

    return _INCLUDE.sub(include, source.read_text())


def check_netlist(
    package: str | os.PathLike[str],
    rtl_dir: str | os.PathLike[str],
    result: dict[str, Any],
    *,
    samples: int = 4,
    images: Any = None,
    simulator: str | None = "icarus",
    seed: int = 0,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Simulate the netlist :func:`implement_rtl` wrote (``result["netlist"]``) on
    ``samples`` test images of ``package`` (or on ``images``, integer input images); the
    simulation summary.

    Raises:
        SimulationMismatch: An output differs from the golden model.
        SimulationError: Package and RTL do not match, simulator missing, timeout.
    """
    from sim.simulate import simulate_package

    netlist = Path(result["netlist"])
    models = cell_models(result["family"], netlist.parent)
    if result.get("kind") == "pe_array":
        summary = _check_pe_array(package, result, [netlist, models], samples, images, simulator,
                                  timeout_s)  # fmt: skip
        return {**summary, "netlist": str(netlist), "cell_models": str(models)}
    summary = simulate_package(
        package,
        rtl_dir=rtl_dir,
        engine="cocotb",
        simulator=simulator,
        samples=samples,
        images=images,
        seed=seed,
        sources=[netlist, models],
        cache_dir=netlist.parent / "sim_build",
        timeout_s=timeout_s,
    )
    return {**summary, "netlist": str(netlist), "cell_models": str(models)}


def _check_pe_array(
    package: str | os.PathLike[str],
    result: dict[str, Any],
    sources: list[Path],
    samples: int,
    images: Any,
    simulator: str | None,
    timeout_s: float,
) -> dict[str, Any]:
    """A PE array's netlist through the array's cocotb testbench (:mod:`sim.tb_pe_array`),
    the program recompiled for the implemented shape, every output word against the
    golden model; :class:`sim.errors.SimulationMismatch` on any difference."""
    from inq_hw.implement.pe_array import compile_for
    from inq_hw.intmodel.package import load_package
    from sim.pe_array_sim import check_summary, simulate_pe_array
    from sim.vectors import golden_vectors

    model = load_package(Path(package))
    rows, cols = result["pe"]
    program = compile_for(model, rows, cols, result.get("baseline"))
    if images is None:
        images = golden_vectors(model, samples)["input"]
    summary = simulate_pe_array(
        model,
        program,
        images,
        out_dir=sources[0].parent / "pe_array_check",
        engine="cocotb",
        simulator=simulator,
        timeout_s=timeout_s,
        sources=sources,
    )
    check_summary(summary)
    return {**summary, "samples": summary["images"]}
