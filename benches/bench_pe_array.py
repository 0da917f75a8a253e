"""Bench: the programmable PE array's cycle model against RTL simulation, and exploration.

1. **Cycle-model speed.** digits-cnn (default widths 16-32-32, random weights on a 5-bit
   grid, lowered) compiled for 4x4 and 8x8 shift-PE arrays; one inference simulated in
   Amaranth's simulator (through the host ports, as a testbench) and predicted by
   :func:`sim.cycle_model.predict`. Figures: simulated cycles per second of each, their
   ratio (goal ≥ 1000), and that the cycles agree.
2. **Cycle model vs Verilator**, the same configurations: the exported Verilog under
   cocotb on Verilator (:mod:`sim.pe_array_sim`, ``VERILATOR_IMAGES`` inferences, build
   cached in ``build/pe-array-bench``, build time excluded), bit-exact against the golden
   executor with ``o_cycles`` equal to the prediction. Verilator's cycles per second are
   those of the free run from ``i_start`` to ``o_done`` (cocotb's clock is driven from C,
   no Python runs per cycle); the ratio is the cycle model's cycles per second over them.
3. **Exploration.** resnet8 (32x32x3, random weights on a 5-bit grid): compile + predict
   + price for 2x2..16x16 shift and multiplier arrays at code widths 2-5 (goal: seconds).
4. **Trade-off figures** of digits-cnn from the cycle model: cycles, utilisation, energy
   and area of shift-PE and multiplier-PE arrays at each shape.

Run: ``python -m benches.bench_pe_array``.
"""

import copy
import time
from pathlib import Path
from typing import Any

import torch

from benches._harness import best_of, print_table, verdict
from inq_hw.fold import fold_batchnorm
from inq_hw.inq import IncrementalQuantizer, INQConfig
from inq_hw.intmodel import IntModel, quantize_input
from inq_hw.intmodel import run as run_golden
from inq_hw.lower import lower_model
from inq_hw.models import build_model

__all__ = ["on_grid_package", "run"]

BITS = 5
SHAPES = ((4, 4), (8, 8))
EXPLORE_SHAPES = [(2, 2), (4, 4), (8, 8), (16, 16)]
EXPLORE_BITS = [2, 3, 4, 5]
GOAL_RATIO = 1000.0
GOAL_EXPLORE_S = 10.0
VERILATOR_IMAGES = 4
VERILATOR_BUILD = Path("build/pe-array-bench")


def on_grid_package(
    name: str, in_channels: int, size: int, bits: int = BITS, **options: object
) -> tuple[IntModel, Any]:
    """A zoo model with random weights put on a ``bits`` grid by one INQ step, lowered with
    its 8-bit baseline; and 64 random integer inputs."""
    torch.manual_seed(0)
    model = build_model(name, in_channels=in_channels, num_classes=10, input_size=size, **options)
    fold_batchnorm(model)
    baseline = copy.deepcopy(model).eval()
    inq = IncrementalQuantizer(model, INQConfig(bits=bits, schedule=(1.0,)))
    inq.advance()
    n1 = {layer.name: layer.n1 for layer in inq.layers}
    x = torch.rand(64, in_channels, size, size)
    int_model = lower_model(model.eval(), x, bits=bits, n1=n1, baseline_model=baseline)
    return int_model, quantize_input(x.numpy(), int_model.input.out)


def _speed(model: IntModel, x: Any, rows: int, cols: int) -> dict[str, Any]:
    from rtl_gen.pe_array import PEArray, simulate
    from rtl_gen.pe_program import compile_program, fit_config
    from sim.cycle_model import predict

    program = compile_program(model, fit_config(model, rows=rows, cols=cols))
    start = time.perf_counter()
    result = simulate(PEArray(program), x[:1])
    rtl_s = time.perf_counter() - start
    model_s = best_of(lambda: predict(program), 20)
    cycles = predict(program).cycles
    exact = result.cycles == [cycles] and bool(
        (result.outputs == run_golden(model, x[:1]).reshape(1, -1)).all()  # type: ignore[union-attr]
    )
    return {
        "cycles": cycles,
        "rtl_s": rtl_s,
        "model_s": model_s,
        "rtl_cycles_per_s": cycles / rtl_s,
        "model_cycles_per_s": cycles / model_s,
        "ratio": rtl_s / model_s,
        "exact": exact,
        "pass": exact and rtl_s / model_s >= GOAL_RATIO,
    }


def _verilator(model: IntModel, x: Any, rows: int, cols: int) -> dict[str, Any]:
    from rtl_gen.pe_program import compile_program, fit_config
    from sim.cycle_model import predict
    from sim.pe_array_sim import check_summary, simulate_pe_array

    program = compile_program(model, fit_config(model, rows=rows, cols=cols))
    out = VERILATOR_BUILD / f"{rows}x{cols}"
    start = time.perf_counter()
    summary = simulate_pe_array(
        model, program, x[:VERILATOR_IMAGES], out_dir=out, simulator="verilator"
    )
    check_summary(summary)  # bit-exact, o_cycles == the prediction
    model_s = best_of(lambda: predict(program), 20)
    model_rate = summary["predicted_cycles"] / model_s
    return {
        "cycles": summary["predicted_cycles"],
        "images": summary["images"],
        "verilator_cycles_per_s": summary["sim_cycles_per_s"],
        "model_cycles_per_s": model_rate,
        "ratio": model_rate / summary["sim_cycles_per_s"],
        "wall_s": time.perf_counter() - start,
        "simulator_version": summary["simulator_version"],
        "exact": True,
    }


def _explore(model: IntModel) -> dict[str, Any]:
    from inq_hw.commands.explore import explore_model

    start = time.perf_counter()
    rows, _ = explore_model(model, EXPLORE_SHAPES, EXPLORE_BITS, 200.0)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "points": len(rows), "pass": elapsed < GOAL_EXPLORE_S}


def run() -> dict[str, Any]:
    """Measure, print tables and return the figures."""
    digits, x = on_grid_package("digits-cnn", 1, 8)
    speed = {f"{r}x{c}": _speed(digits, x, r, c) for r, c in SHAPES}
    print_table(
        "pe_array: cycle model vs Amaranth simulation, digits-cnn 16-32-32, 5-bit codes",
        ["array", "cycles", "RTL sim cycles/s", "model cycles/s", "ratio", "exact", "verdict"],
        [
            [
                shape,
                f"{f['cycles']:,}",
                f"{f['rtl_cycles_per_s']:,.0f}",
                f"{f['model_cycles_per_s']:,.0f}",
                f"{f['ratio']:,.0f}x",
                str(f["exact"]),
                verdict(f["pass"]),
            ]
            for shape, f in speed.items()
        ],
    )
    verilator = {f"{r}x{c}": _verilator(digits, x, r, c) for r, c in SHAPES}
    print_table(
        "pe_array: cycle model vs Verilator (cocotb, free run), digits-cnn 16-32-32, 5-bit",
        ["array", "cycles", "Verilator cycles/s", "model cycles/s", "ratio", "exact"],
        [
            [
                shape,
                f"{f['cycles']:,}",
                f"{f['verilator_cycles_per_s']:,.0f}",
                f"{f['model_cycles_per_s']:,.0f}",
                f"{f['ratio']:,.0f}x",
                str(f["exact"]),
            ]
            for shape, f in verilator.items()
        ],
    )
    resnet, _ = on_grid_package("resnet8", 3, 32)
    explore = _explore(resnet)
    print(
        f"  resnet8 exploration: {explore['points']} design points in "
        f"{explore['seconds']:.2f} s (goal < {GOAL_EXPLORE_S:g} s) {verdict(explore['pass'])}"
    )
    from inq_hw.commands.explore import explore_model

    rows, _ = explore_model(digits, [(2, 2), (4, 4), (8, 8), (16, 16)], [BITS], 200.0)
    print_table(
        "pe_array: digits-cnn trade-off (cycle model; energy/area: Horowitz 45 nm table)",
        ["pe", "array", "cycles", "PE util", "energy nJ", "area mm2", "pareto"],
        [
            [
                row["pe"],
                row["array"],
                f"{row['cycles']:,}",
                f"{100 * row['utilisation']:.1f}%",
                f"{row['energy_nj']:.1f}",
                f"{row['area_mm2']:.3f}",
                "*" if row["pareto"] else "",
            ]
            for row in rows
        ],
    )
    return {
        "speed": speed,
        "verilator": verilator,
        "explore_resnet8": explore,
        "digits_tradeoff": rows,
    }


if __name__ == "__main__":
    run()
