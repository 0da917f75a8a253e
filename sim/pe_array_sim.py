"""Run the programmable PE array's Verilog under cocotb against the golden executor.

:func:`pe_array_design` wraps a compiled :class:`~rtl_gen.pe_program.Program` in an
:class:`~rtl_gen.pe_array.PEArray` as an export :class:`~rtl_gen.export.Design` whose
manifest parameters state the array (R, C, PE kind, widths, memory sizes), the memory map
of the input and output and the cycle model's prediction. :func:`simulate_pe_array`
exports it, runs :mod:`sim.tb_pe_array` on Icarus or Verilator and returns a summary:
outputs compared with the golden executor, the cycles the array counted (``o_cycles``) and
the testbench counted, the cycle model's prediction, and the simulator's speed.
:func:`check_summary` turns a summary into an exception when anything disagrees.

Example usage::

    program = compile_program(model, fit_config(model, rows=4, cols=4))
    summary = simulate_pe_array(model, program, images, out_dir=Path("build/pe4x4"))
    check_summary(summary)                    # bit-exact, cycles == the model's
"""

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.intmodel import IntModel, run
from rtl_gen.export import Design, load_manifest, write_designs
from rtl_gen.names import verilog_identifier
from rtl_gen.pe_array import PEArray
from rtl_gen.pe_program import Program
from sim.cycle_model import predict
from sim.runner import SimulationError, run_testbench
from sim.simulate import SimulationMismatch, choose_engine

__all__ = [
    "CycleMismatch",
    "check_summary",
    "golden_outputs",
    "pe_array_design",
    "simulate_pe_array",
]

#: Cycle limit of one inference, as a multiple of the cycle model's prediction.
_LIMIT_FACTOR = 2


class CycleMismatch(SimulationError):
    """The array's measured cycles differ from the cycle model's prediction."""


def pe_array_design(program: Program, *, source_hash: str | None = None) -> Design:
    """The array initialised with ``program``, named by its shape and PE kind
    (``pe_array_shift_4x4``), with the array's parameters in the manifest."""
    cfg = program.config
    name = verilog_identifier(f"pe_array_{cfg.pe}_{cfg.rows}x{cfg.cols}", taken=set())
    params = {
        "kind": "pe_array",
        "config": cfg.to_dict(),
        "weights": program.weights,
        "layers": [ins.layer for ins in program.instructions[:-1]],
        "input": {"base": program.input.base, "size": program.input.size},
        "output": {"base": program.output.base, "size": program.output.size},
        "predicted_cycles": predict(program).cycles,
    }
    # Latency 0: the array is not a pipeline; its cycles per inference are in the params.
    return Design(
        top=name, component=PEArray(program), latency=0, params=params, source_hash=source_hash
    )


def golden_outputs(model: IntModel, program: Program, images: np.ndarray) -> np.ndarray:
    """The golden executor's outputs of ``images`` with the weights ``program`` runs
    (power-of-two codes, or the uniform baseline for the multiplier twin), flat per image."""
    out = run(model, images, weights=program.weights)
    assert isinstance(out, np.ndarray)
    return out.reshape(len(images), -1).astype(np.int64)


def simulate_pe_array(
    model: IntModel,
    program: Program,
    images: np.ndarray,
    *,
    out_dir: Path,
    engine: str | None = None,
    simulator: str | None = None,
    expected: np.ndarray | None = None,
    max_cycles: int | None = None,
    cache_dir: Path | None = None,
    timeout_s: float = 3600,
    sources: list[Path] | None = None,
) -> dict[str, Any]:
    """Export the array for ``program`` to ``out_dir`` and run ``images`` through it.

    Args:
        model: The package ``program`` was compiled from (for the golden outputs).
        images: Integer inputs ``(N, *input shape)``.
        out_dir: Where the Verilog and its manifest go.
        engine: ``"fast"`` (the compiled Verilator harness), ``"cocotb"`` or ``None``
            (fast when Verilator is installed and ``simulator`` allows it).
        simulator: cocotb engine: ``"icarus"``, ``"verilator"`` or ``None`` (first installed).
        expected: Outputs to compare with instead of the golden executor's (``(N, size)``).
        max_cycles: Cycle limit per inference (default: twice the cycle model's figure).
        cache_dir: Simulator builds (default ``out_dir/sim_build``).
        timeout_s: Wall-clock limit of the simulation.
        sources: Verilog to simulate instead of the exported array (cocotb engine): a
            synthesised netlist of the same top and its cell models
            (:func:`inq_hw.implement.netlist.check_netlist`).

    Returns:
        The summary (module docstring); check it with :func:`check_summary`.

    Raises:
        SimulationError: Simulator missing, build failure, or no result.
    """
    images = np.asarray(images, dtype=np.int64)
    flat = images.reshape(len(images), -1)
    if flat.shape[1] != program.input.size:
        raise ValueError(f"Images must have {program.input.size} values each, not {flat.shape[1]}")
    want = golden_outputs(model, program, images) if expected is None else np.asarray(expected)
    predicted = predict(program).cycles
    write_designs([pe_array_design(program)], out_dir)
    top = load_manifest(out_dir).tops[0]
    limit = max_cycles or _LIMIT_FACTOR * predicted
    cache = cache_dir or out_dir / "sim_build"
    start = time.perf_counter()
    if sources is not None and engine == "fast":
        raise ValueError("Other Verilog sources run on the cocotb engine, not the fast one")
    files = sources or [out_dir / top.file]
    if sources is None and choose_engine(engine, simulator) == "fast":
        result = _run_fast(top, out_dir, program, flat, want, limit, cache, timeout_s)
    else:
        result = _run_cocotb(top, files, program, flat, want, limit, cache, simulator, timeout_s)
    seconds = time.perf_counter() - start
    return _summary(result, top.name, program, predicted, seconds)


def _run_cocotb(
    top: Any,
    sources: list[Path],
    program: Program,
    flat: np.ndarray,
    want: np.ndarray,
    limit: int,
    cache: Path,
    simulator: str | None,
    timeout_s: float,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="inq_hw_pe_vectors_") as tmp:
        vectors = Path(tmp) / "vectors.npz"
        np.savez(vectors, input=flat, output=want)
        config = {
            "vectors": str(vectors),
            "images": len(flat),
            "input_base": program.input.base,
            "output_base": program.output.base,
            "output_size": program.output.size,
            "max_cycles": limit,
        }
        result = run_testbench(
            sources=sources,
            top=top.name,
            module="sim.tb_pe_array",
            config=config,
            simulator=simulator,
            cache_dir=cache,
            timeout_s=timeout_s,
        )
    return {**result, "engine": "cocotb"}


def _run_fast(
    top: Any,
    out_dir: Path,
    program: Program,
    flat: np.ndarray,
    want: np.ndarray,
    limit: int,
    cache: Path,
    timeout_s: float,
) -> dict[str, Any]:
    from sim.fast.engine import build_harness, run_pe_array
    from sim.runner import simulator_version

    build = build_harness([out_dir / top.file], top.name, "pe_array", cache)
    result = run_pe_array(
        build,
        flat,
        want,
        input_base=program.input.base,
        output_base=program.output.base,
        output_size=program.output.size,
        port_widths={port.name: port.width for port in top.ports},
        max_cycles=limit,
        timeout_s=timeout_s,
    )
    return {
        **result,
        "engine": "fast",
        "simulator": "verilator",
        "simulator_version": simulator_version("verilator"),
        "build_dir": str(build.executable.parent),
        "build_seconds": build.build_seconds,
    }


def _summary(
    result: dict[str, Any], top: str, program: Program, predicted: int, seconds: float
) -> dict[str, Any]:
    cfg = program.config
    cycles = sum(result["o_cycles"])
    run_s = sum(result["run_seconds"][: len(result["o_cycles"])])
    return {
        "top": top,
        "array": f"{cfg.rows}x{cfg.cols}",
        "pe": cfg.pe,
        "engine": result["engine"],
        "weight_bits": cfg.weight_bits,
        "simulator": result["simulator"],
        "simulator_version": result["simulator_version"],
        "images": result["images"],
        "completed": result["completed"],
        "timeout": result["timeout"],
        "mismatched_samples": result["mismatched_samples"],
        "mismatches": result["mismatches"],
        "o_cycles": result["o_cycles"],
        "counted_cycles": result["counted_cycles"],
        "predicted_cycles": predicted,
        "cycles_match_model": bool(result["o_cycles"])
        and all(c == predicted for c in result["o_cycles"] + result["counted_cycles"]),
        "sim_cycles_per_s": cycles / run_s if run_s > 0 else None,
        "seconds": round(seconds, 3),
        "build_seconds": round(result["build_seconds"], 3),
        "build_dir": result["build_dir"],
    }


def check_summary(summary: dict[str, Any]) -> None:
    """Raise if the run timed out, any output differs, or the cycles differ from the model.

    Raises:
        SimulationError: The cycle limit was reached.
        SimulationMismatch: An output integer differs from the golden executor's.
        CycleMismatch: ``o_cycles`` or the counted cycles differ from the prediction.
    """
    if summary["timeout"] or summary["completed"] < summary["images"]:
        raise SimulationError(
            f"{summary['top']}: {summary['completed']} of {summary['images']} inferences "
            "finished within the cycle limit"
        )
    if summary["mismatched_samples"]:
        first = summary["mismatches"][0]
        raise SimulationMismatch(
            f"{summary['top']}: {summary['mismatched_samples']} of {summary['images']} "
            f"images differ from the golden model; first: image {first['sample']}, output "
            f"{first['output']}: expected {first['expected']}, seen {first['seen']}"
        )
    if not summary["cycles_match_model"]:
        raise CycleMismatch(
            f"{summary['top']}: measured cycles o_cycles={summary['o_cycles']}, counted "
            f"{summary['counted_cycles']}, but the cycle model predicts "
            f"{summary['predicted_cycles']}"
        )
