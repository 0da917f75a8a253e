"""Bench: rtl_gen's constant-weight units: generation time, gates, LUT quality.

1. **Generation time.** ``ConstDotUnit`` (shift-add, with a Requant) built and converted by
   ``amaranth.back.verilog.convert`` for Linear layers of 1k, 4k, 16k and 64k weights
   (random 5-bit power-of-two codes, 15% zeros, 8-bit signed inputs). Goal: 64k under 60 s;
   the 16k → 64k ratio is 4.0 for linear growth. Each conversion is split into its phases
   (elaborate: rtl_gen's trees and Amaranth's AST; Amaranth's netlist; RTLIL text; the Yosys
   backend writing Verilog) by timing wrappers around Amaranth 0.5 internals. Timed as the
   harness does (garbage collector held off), and again with it on for the largest cases,
   as the command line runs; CPU seconds (this process and the Yosys child) beside wall
   seconds, because the machine may be shared.
2. **Gates against the multiplier twin.** Yosys generic gates (``abc -g`` over AND, NAND,
   OR, NOR, XOR, XNOR, ANDNOT, ORNOT, MUX, plus NOT) and the ``stat -tech cmos`` transistor
   estimate of the shift-add unit and of its twin (same zero positions, the nonzero weights
   replaced by random non-power-of-two int8 values) for one window of each digits-cnn
   layer, 8-bit unsigned inputs, raw accumulators (no requant). ABC's default script
   (``&fraig -x``, ``scorr``, ``&dch -f``: SAT sweeping) takes minutes on constant
   multipliers (the fc twin: 419 s in ABC alone, measured once), so every shape runs a
   cheaper script without SAT (``strash; dc2; &nf``) after ``synth -noabc``; conv1 also
   runs the full flow (``synth -flatten; abc -g ...``) to show what the cheaper script
   costs in gates. conv2 and conv3 run all their inputs but a few of their outputs
   (outputs share nothing but inputs, so gates scale with the output count); the table
   labels them. Yosys runs through :func:`inq_hw.cost.synth.synthesize` (no cache): the
   cheaper flow is its ``generic`` target, the full one ``abc="full"``, and section 3's
   ``synth_ice40`` its ``ice40`` target with ``abc="full"`` (plain ``synth_ice40``).
3. **LUT quality.** ``synth_ice40`` LUT4 count of a 72-input × 16-output shift-add unit
   (8-bit signed inputs, raw accumulators) against the adder bits of its trees: the sum of
   the widths of the adders ``rtl_gen.arith.adder_tree`` builds (same pairing, same range
   arithmetic), and the simple bound Σ_o (k_o − 1) · 8. For scale, the issue's naive
   Verilog sum of sign-extended shifts: 22,580 LUT4.
"""

import contextlib
import gc
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import numpy as np
from amaranth.back import rtlil, verilog
from amaranth.hdl import _ir

from benches._harness import BenchError, print_table, time_once, verdict
from inq_hw.cost import SynthesisTimeout
from inq_hw.cost.synth import SynthJob, SynthResult, synthesize
from inq_hw.intmodel.arith import ActFormat, signed_bits
from rtl_gen.arith import range_shape
from rtl_gen.units import ConstDotUnit, Requant

__all__ = ["GOAL_64K_S", "po2_weights", "run", "tree_adder_bits", "twin_weights"]

SEED = 0
ACT_BITS = 8
EXPONENTS = 8  # 5-bit codes: zero flag, sign, 3-bit exponent index
ZERO_FRACTION = 0.15
GOAL_64K_S = 60.0
# (inputs, outputs) of Linear layers with 1k, 4k, 16k and 64k weights.
GENERATION_SHAPES = ((64, 16), (128, 32), (256, 64), (512, 128))
GC_ON_WEIGHTS = (16_384, 65_536)
# digits-cnn: one window of each conv (Cin·3·3 inputs) and the classifier. The last field
# is the number of outputs synthesised (all of them, or a labelled subset).
LAYER_SHAPES = {
    "conv1": (9, 16, 16),
    "conv2": (144, 32, 4),
    "conv3": (288, 32, 2),
    "fc": (128, 10, 10),
}
FULL_FLOW_LAYERS = ("conv1",)
QUALITY_SHAPE = (72, 16)
NAIVE_ISSUE_LUT4 = 22_580
YOSYS_TIMEOUT_S = 300.0

# flow -> (inq_hw.cost.synth target, ABC script): "cheap" is the generic target's default.
_FLOWS = {"full": ("generic", "full"), "cheap": ("generic", "fast"), "ice40": ("ice40", "full")}


def po2_weights(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random 5-bit power-of-two integer weights ``±2**e`` (0 ≤ e < 8), 15% zeros."""
    exponent = rng.integers(0, EXPONENTS, size=shape)
    sign = rng.choice([-1, 1], size=shape)
    weights = sign * (1 << exponent)
    return np.where(rng.random(shape) < ZERO_FRACTION, 0, weights).astype(np.int64)


def twin_weights(rng: np.random.Generator, po2: np.ndarray) -> np.ndarray:
    """The multiplier twin's weights: zeros where ``po2`` has them, random non-power-of-two
    int8 magnitudes (3 to 127) with random signs elsewhere."""
    magnitudes = np.array([v for v in range(3, 128) if v & (v - 1)])
    values = rng.choice(magnitudes, size=po2.shape) * rng.choice([-1, 1], size=po2.shape)
    return np.where(po2 == 0, 0, values).astype(np.int64)


def _convert(unit: ConstDotUnit) -> str:
    return verilog.convert(unit, name="top", emit_src=False)


# --- 1. generation time ---------------------------------------------------------------


def _timed(store: dict[str, float], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            store[key] = store.get(key, 0.0) + time.perf_counter() - start

    return wrapper


@contextlib.contextmanager
def conversion_phases() -> Iterator[dict[str, float]]:
    """Seconds ``verilog.convert`` spends in each phase (Amaranth 0.5 internals)."""
    raw: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        get = _timed(raw, "elaborate", _ir.Fragment.get)
        stack.enter_context(mock.patch.object(_ir.Fragment, "get", staticmethod(get)))
        for module, name, key in (
            (_ir, "build_netlist", "netlist"),
            (rtlil, "convert_fragment", "rtlil+netlist"),
            (verilog, "_convert_rtlil_text", "yosys"),
        ):
            stack.enter_context(
                mock.patch.object(module, name, _timed(raw, key, getattr(module, name)))
            )
        phases: dict[str, float] = {}
        yield phases
    netlist = raw.get("netlist", 0.0)
    phases.update(
        elaborate=raw.get("elaborate", 0.0),
        netlist=netlist,
        rtlil=raw.get("rtlil+netlist", 0.0) - netlist,
        yosys=raw.get("yosys", 0.0),
    )


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _linear_unit(n_in: int, n_out: int) -> ConstDotUnit:
    rng = np.random.default_rng(SEED + n_in * n_out)
    weights = po2_weights(rng, (n_out, n_in))
    in_format = ActFormat(ACT_BITS, signed=True, frac=4)
    acc_bits = signed_bits(int(np.abs(weights).sum(axis=1).max()) * in_format.max_abs)
    requant = Requant(shift=acc_bits - ACT_BITS - 3, relu=True, out=ActFormat(ACT_BITS, False, 0))
    bias = rng.integers(-(1 << 10), 1 << 10, size=n_out)
    return ConstDotUnit(weights=weights, bias=bias, in_format=in_format, requant=requant)


def time_generation(n_in: int, n_out: int, *, collect: bool) -> dict[str, Any]:
    """Wall and CPU seconds of building and converting one unit, and the phase split."""
    made: list[str] = []
    cpu = _cpu_seconds()
    with conversion_phases() as phases:
        if collect:
            start = time.perf_counter()
            made.append(_convert(_linear_unit(n_in, n_out)))
            seconds = time.perf_counter() - start
        else:
            seconds = time_once(lambda: made.append(_convert(_linear_unit(n_in, n_out))))
    return {
        "weights": n_in * n_out,
        "shape": [n_in, n_out],
        "gc": collect,
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu,
        "phases_s": phases,
        "verilog_mb": len(made[0]) / 1e6,
    }


def measure_generation() -> dict[str, Any]:
    runs = [time_generation(n_in, n_out, collect=False) for n_in, n_out in GENERATION_SHAPES]
    gc.collect()
    for n_in, n_out in GENERATION_SHAPES:
        if n_in * n_out in GC_ON_WEIGHTS:
            runs.append(time_generation(n_in, n_out, collect=True))
            gc.collect()
    by = {(r["weights"], r["gc"]): r["seconds"] for r in runs}
    largest = max(r["weights"] for r in runs)
    return {
        "runs": runs,
        "ratio_16k_to_64k": by[(65_536, False)] / by[(16_384, False)],
        "ratio_16k_to_64k_gc_on": (
            by[(65_536, True)] / by[(16_384, True)] if (65_536, True) in by else None
        ),
        "goal_s": GOAL_64K_S,
        "pass": by[(largest, False)] < GOAL_64K_S,
    }


# --- Yosys ---------------------------------------------------------------------------------


def run_yosys(verilog_text: str, flow: str) -> SynthResult | None:
    """Synthesise ``top`` with one of :data:`_FLOWS` through :func:`inq_hw.cost.synth.synthesize`
    (no cache); None on timeout."""
    target, abc = _FLOWS[flow]
    try:
        return synthesize(
            SynthJob(top="top", verilog=verilog_text), target, abc=abc, timeout_s=YOSYS_TIMEOUT_S
        )
    except SynthesisTimeout:
        return None


# --- 2. gates against the multiplier twin ----------------------------------------------


def _layer_units(n_in: int, n_out: int) -> dict[str, ConstDotUnit]:
    rng = np.random.default_rng(SEED + 1_000 + n_in * n_out)
    po2 = po2_weights(rng, (n_out, n_in))
    in_format = ActFormat(ACT_BITS, signed=False, frac=ACT_BITS)
    bias = np.zeros(n_out, dtype=np.int64)
    return {
        "shift-add": ConstDotUnit(weights=po2, bias=bias, in_format=in_format),
        "multiply": ConstDotUnit(
            weights=twin_weights(rng, po2), bias=bias, in_format=in_format, mode="multiply"
        ),
    }


def _gates(result: SynthResult | None) -> dict[str, Any]:
    if result is None:
        return {"gates": None, "transistors": None, "seconds": YOSYS_TIMEOUT_S, "timeout": True}
    return {
        "gates": result.cells,
        "transistors": result.transistors,
        "seconds": result.seconds,
        "timeout": False,
    }


def measure_layer(name: str) -> dict[str, Any]:
    n_in, n_out, synthesised = LAYER_SHAPES[name]
    units = _layer_units(n_in, synthesised)
    flows = ["cheap", *(["full"] if name in FULL_FLOW_LAYERS else [])]
    result: dict[str, Any] = {"inputs": n_in, "outputs": n_out, "outputs_synthesised": synthesised}
    for flow in flows:
        result[flow] = {
            mode: _gates(run_yosys(_convert(unit), flow)) for mode, unit in units.items()
        }
        shift, mult = result[flow]["shift-add"]["gates"], result[flow]["multiply"]["gates"]
        result[flow]["mult_over_shift"] = mult / shift if shift and mult else None
    return result


# --- 3. LUT quality --------------------------------------------------------------------


@dataclass(frozen=True)
class _Range:
    lo: int
    hi: int
    shift: int
    negated: bool


def _combine(a: _Range, b: _Range) -> _Range:
    """``rtl_gen.arith._combine``'s range arithmetic, without the logic."""
    if b.shift < a.shift:
        a, b = b, a
    d = b.shift - a.shift
    b_lo, b_hi = b.lo << d, b.hi << d
    if a.negated == b.negated:
        return _Range(a.lo + b_lo, a.hi + b_hi, a.shift, a.negated)
    if b.negated:
        return _Range(a.lo - b_hi, a.hi - b_lo, a.shift, False)
    return _Range(b_lo - a.hi, b_hi - a.lo, a.shift, False)


def tree_adder_bits(row: np.ndarray, lo: int, hi: int) -> int:
    """Σ widths of the adders ``adder_tree`` builds for one output (no constant term)."""
    level = sorted(
        (_Range(lo, hi, abs(int(w)).bit_length() - 1, int(w) < 0) for w in row if w),
        key=lambda t: (t.shift, t.negated),
    )
    bits = 0
    while len(level) > 1:
        pairs = [level[i : i + 2] for i in range(0, len(level), 2)]
        level = [_combine(*pair) if len(pair) == 2 else pair[0] for pair in pairs]
        bits += sum(
            range_shape(t.lo, t.hi).width
            for t, pair in zip(level, pairs, strict=True)
            if len(pair) == 2
        )
    return bits


def measure_quality() -> dict[str, Any]:
    n_in, n_out = QUALITY_SHAPE
    weights = po2_weights(np.random.default_rng(SEED + 2_000), (n_out, n_in))
    in_format = ActFormat(ACT_BITS, signed=True, frac=0)
    unit = ConstDotUnit(weights=weights, bias=np.zeros(n_out, dtype=np.int64), in_format=in_format)
    result = run_yosys(_convert(unit), "ice40")
    if result is None:
        raise BenchError(f"synth_ice40 of the {n_in}x{n_out} unit timed out")
    cells, seconds = result.cells_by_type, result.seconds
    tree_bits = sum(tree_adder_bits(row, in_format.lo, in_format.hi) for row in weights)
    simple_bits = sum(max(int(np.count_nonzero(row)) - 1, 0) * ACT_BITS for row in weights)
    lut4 = int(cells.get("SB_LUT4", 0))
    return {
        "shape": [n_in, n_out],
        "nonzero_weights": int(np.count_nonzero(weights)),
        "lut4": lut4,
        "carry": int(cells.get("SB_CARRY", 0)),
        "seconds": seconds,
        "tree_adder_bits": tree_bits,
        "simple_bound_bits": simple_bits,
        "lut4_over_tree_bits": lut4 / tree_bits,
        "lut4_over_simple_bound": lut4 / simple_bits,
        "naive_issue_lut4": NAIVE_ISSUE_LUT4,
    }


# --- run and print -----------------------------------------------------------------------


def run() -> dict[str, Any]:
    """Measure, print the tables and return the figures."""
    generation = measure_generation()
    _print_generation(generation)
    layers = {name: measure_layer(name) for name in LAYER_SHAPES}
    _print_layers(layers)
    quality = measure_quality()
    _print_quality(quality)
    return {
        "generation": generation,
        "layers": layers,
        "quality": quality,
        "seed": SEED,
        "yosys_timeout_s": YOSYS_TIMEOUT_S,
    }


def _print_generation(figures: dict[str, Any]) -> None:
    rows = []
    for r in figures["runs"]:
        p = r["phases_s"]
        rows.append(
            [
                f"{r['weights']:,} ({r['shape'][0]}x{r['shape'][1]})"
                + (" gc on" if r["gc"] else ""),
                f"{r['seconds']:.1f}",
                f"{r['cpu_seconds']:.1f}",
                f"{p['elaborate']:.1f}",
                f"{p['netlist']:.1f}",
                f"{p['rtlil']:.1f}",
                f"{p['yosys']:.1f}",
                f"{r['verilog_mb']:.1f}",
            ]
        )
    header = ["weights", "wall s", "cpu s", "elaborate", "netlist", "rtlil", "yosys", "Verilog MB"]
    print_table(
        "rtl_gen: ConstDotUnit shift-add + Requant -> verilog.convert, 5-bit po2 weights "
        f"({ZERO_FRACTION:.0%} zeros), 8-bit signed inputs; gc held off unless marked",
        header,
        rows,
    )
    last = next(r for r in figures["runs"] if r["weights"] == 65_536 and not r["gc"])
    gc_ratio = figures["ratio_16k_to_64k_gc_on"]
    gc_ratio = f"{gc_ratio:.2f}" if gc_ratio is not None else "not run"
    print(
        f"  16k -> 64k time ratio {figures['ratio_16k_to_64k']:.2f} (linear: 4.0; gc on: "
        f"{gc_ratio}); goal 64k under {GOAL_64K_S:g} s: "
        f"{verdict(figures['pass'])} ({last['seconds']:.1f} s)"
    )


def _cell(flow: dict[str, Any], mode: str, key: str) -> str:
    value = flow[mode][key]
    return "timeout" if flow[mode]["timeout"] else f"{value:,}" if value is not None else "-"


def _print_layers(layers: dict[str, Any]) -> None:
    rows = []
    for name, r in layers.items():
        shape = f"{r['inputs']}->{r['outputs']}"
        if r["outputs_synthesised"] != r["outputs"]:
            shape += f" ({r['outputs_synthesised']} of {r['outputs']} outputs)"
        for flow in ("cheap", "full"):
            if flow not in r:
                continue
            f = r[flow]
            ratio = f["mult_over_shift"]
            rows.append(
                [
                    f"{name} {shape}" + (" [full flow]" if flow == "full" else ""),
                    _cell(f, "shift-add", "gates"),
                    _cell(f, "multiply", "gates"),
                    f"{ratio:.2f}x" if ratio else "-",
                    _cell(f, "shift-add", "transistors"),
                    _cell(f, "multiply", "transistors"),
                    f"{f['shift-add']['seconds']:.0f} + {f['multiply']['seconds']:.0f}",
                ]
            )
    header = [
        "layer window",
        "gates shift",
        "gates mult",
        "mult/shift",
        "cmos shift",
        "cmos mult",
        "yosys s",
    ]
    print_table(
        "  Yosys generic gates, shift-add unit vs 8-bit multiplier twin, 8-bit unsigned inputs, "
        "raw accumulators; flow: synth -noabc + ABC without SAT sweeping unless [full flow]",
        header,
        rows,
    )


def _print_quality(q: dict[str, Any]) -> None:
    n_in, n_out = q["shape"]
    print(
        f"  synth_ice40, {n_in}x{n_out} shift-add unit, {q['nonzero_weights']} nonzero weights, "
        f"raw accumulators: {q['lut4']:,} LUT4 + {q['carry']:,} SB_CARRY ({q['seconds']:.0f} s)\n"
        f"    LUT4 / tree adder bits {q['lut4']:,} / {q['tree_adder_bits']:,} = "
        f"{q['lut4_over_tree_bits']:.2f}; LUT4 / (k-1)*8 bound {q['lut4']:,} / "
        f"{q['simple_bound_bits']:,} = {q['lut4_over_simple_bound']:.2f}; naive Verilog sum "
        f"(issue): {q['naive_issue_lut4']:,} LUT4"
    )


if __name__ == "__main__":
    run()
