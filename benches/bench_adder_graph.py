"""Shared adder graphs against trees and against da4ml 0.6, on the same matrices, same run.

For every matrix (inputs x outputs, 8-bit signed inputs, ``y_j = Σ_i x_i·W[i, j]``):
our shift-add unit with one tree per output (``tree``), with the shared adder graph
(``shared``, :mod:`rtl_gen.adder_graph`), and da4ml's solution (``da4ml``: its CMVM
solver through ``comb_trace`` and its own Verilog generator), all three synthesised with
the same :mod:`inq_hw.cost.synth` scripts: generic gates (``synth -noabc`` + ABC to simple
gates), iCE40 LUT4 and SB_CARRY (``synth_ice40`` with the fast ABC LUT mapping), and
iCE40 logic cells after nextpnr packing (``nextpnr-ice40 --pack-only`` on the iCE40
netlist). Adders: two-input adders built (da4ml: its add/subtract ops). Generation time:
graph optimisation plus Verilog (ours), solve plus Verilog (da4ml).

da4ml is installed in the bench's own environment, never the project's: a venv under
``$INQ_HW_CACHE`` (default ``~/.cache/inq-hw``) created on the first run with
``pip install 'da4ml==0.6.*'``; the da4ml side runs in that interpreter.

Matrices: random power-of-two matrices (about 30% zeros, exponents 0..4) of several sizes,
and the INQ weight matrices (one conv window, or the linear layer) of digits-cnn and
lenet5 at 3, 4 and 5 bits, from the seeded initial weights (no training run: INQ's
quantiser applied to the initialised weights, scaled to integers by the smallest
magnitude). ``INQ_HW_BENCH_MATRICES`` (comma-separated names, or ``all``) picks them; the
default is the ones that fit a shared 2-core machine in minutes.

Example usage::

    python -m benches adder_graph
    INQ_HW_BENCH_MATRICES=all python -m benches adder_graph
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from amaranth.back import verilog

from benches._harness import BenchError, print_table
from inq_hw.cost.synth import SynthJob, default_cache_dir, synth_script, synthesize
from inq_hw.intmodel.arith import ActFormat
from inq_hw.tools import run_tool
from rtl_gen.generate import matrix_design

__all__ = ["run"]

_SMALL_INQ = ("digits-cnn.features.conv1", "lenet5.features.conv1")
DEFAULT_MATRICES = (
    "random-32x8",
    "random-72x16",
    *(f"{layer}-b{bits}" for layer in _SMALL_INQ for bits in (3, 4, 5)),
)
_RANDOM_SIZES = ((32, 8), (72, 16), (144, 32), (288, 32))
_IN = ActFormat(8, True, 0)
_DA4ML = "da4ml==0.6.*"
_DA4ML_WORKER = r"""
import json, sys, time
import numpy as np
from da4ml.trace import FixedVariableArray, comb_trace
from da4ml.codegen.rtl.verilog.comb import comb_logic_gen
w = np.load(sys.argv[1]).astype(np.float32)
start = time.perf_counter()
x = FixedVariableArray.from_lhs(np.full(w.shape[0], -128.0), np.full(w.shape[0], 127.0),
                                np.ones(w.shape[0]))
comb = comb_trace(x, x @ w)
text = comb_logic_gen(comb, "da4ml_dut")
seconds = time.perf_counter() - start
import da4ml, pathlib
source = pathlib.Path(da4ml.__file__).parent / "codegen" / "rtl" / "verilog" / "source"
used = [p for p in sorted(source.glob("*.v")) if f"{p.stem} #" in text or f"{p.stem} (" in text]
text += "".join(p.read_text() for p in used)  # the library modules it instantiates
adders = sum(1 for op in comb.ops if op.opcode in (0, 1, 4))
open(sys.argv[2], "w").write(text)
print(json.dumps({"adders": adders, "seconds": seconds}))
"""


def _env_python() -> Path:
    """The da4ml venv's interpreter, creating the venv on first use."""
    root = default_cache_dir().parent / "da4ml-0.6-venv"
    python = root / "bin" / "python"
    if not python.exists():
        print(f"adder_graph: creating {root} with pip install {_DA4ML!r}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=600)
        subprocess.run([str(python), "-m", "pip", "install", "-q", _DA4ML], check=True, timeout=900)
    return python


def _random(inputs: int, outputs: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    magnitude = 1 << rng.integers(0, 5, (inputs, outputs))
    sign = rng.choice([-1, 1], (inputs, outputs))
    return np.where(rng.random((inputs, outputs)) < 0.3, 0, sign * magnitude).astype(np.int64)


def _inq(model_name: str, layer: str, bits: int) -> np.ndarray:
    """One unit's matrix (inputs x outputs) of a seeded, INQ-quantised initial model."""
    import torch

    from inq_hw.models import build_model
    from inq_hw.quant import quantize_po2

    torch.manual_seed(0)
    size, channels = (8, 1) if model_name == "digits-cnn" else (28, 1)
    model = build_model(model_name, in_channels=channels, num_classes=10, input_size=size)
    weight = dict(model.named_parameters())[f"{layer}.weight"].detach()
    q = quantize_po2(weight, bits).reshape(weight.shape[0], -1).double().numpy()
    smallest = np.abs(q[q != 0]).min()
    return np.rint(q / smallest).astype(np.int64).T


def _inq_names() -> dict[str, tuple[str, str]]:
    import torch

    from inq_hw.models import build_model

    names = {}
    for model_name, size in (("digits-cnn", 8), ("lenet5", 28)):
        torch.manual_seed(0)
        model = build_model(model_name, in_channels=1, num_classes=10, input_size=size)
        for name, param in model.named_parameters():
            if name.endswith(".weight") and param.dim() in (2, 4):
                names[f"{model_name}.{name.removesuffix('.weight')}"] = (
                    model_name,
                    name.removesuffix(".weight"),
                )
    return names


def _matrix(name: str) -> np.ndarray:
    if name.startswith("random-"):
        inputs, outputs = (int(v) for v in name.removeprefix("random-").split("x"))
        return _random(inputs, outputs)
    base, bits = name.rsplit("-b", 1)
    model_name, layer = _inq_names()[base]
    return _inq(model_name, layer, int(bits))


def _all_names() -> list[str]:
    randoms = [f"random-{i}x{o}" for i, o in _RANDOM_SIZES]
    return randoms + [f"{n}-b{b}" for n in _inq_names() for b in (3, 4, 5)]


def _ours(w: np.ndarray, graph: str) -> tuple[str, int, float]:
    start = time.perf_counter()
    design = matrix_design(w, in_format=_IN, adder_graph=graph, top=f"ours_{graph}")
    text = verilog.convert(design.component, name=design.top, emit_src=False)
    return text, int(design.params["adders"]), time.perf_counter() - start


def _da4ml(w: np.ndarray, python: Path, workdir: Path) -> tuple[str, int, float]:
    np.save(workdir / "w.npy", w)
    out = subprocess.run(
        [str(python), "-c", _DA4ML_WORKER, str(workdir / "w.npy"), str(workdir / "da4ml.v")],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return (workdir / "da4ml.v").read_text(), figures["adders"], figures["seconds"]


def _packed_cells(text: str, top: str, workdir: Path) -> int:
    """iCE40 logic cells after nextpnr's packer (no placement: the unit has more I/O than
    any package has pins)."""
    script = [f"read_verilog {top}.v", *synth_script("ice40", top), f"write_json {top}.json"]
    (workdir / f"{top}.v").write_text(text)
    (workdir / f"{top}.ys").write_text("\n".join(script) + "\n")
    run_tool("yosys", ["-q", "-s", f"{top}.ys"], cwd=workdir, timeout_s=1800, what=top)
    args = ["--hx8k", "--json", f"{top}.json", "--pack-only", "--report", f"{top}.rpt.json"]
    run_tool("nextpnr-ice40", [*args, "-q"], cwd=workdir, timeout_s=1800, what=f"{top} pack")
    report = json.loads((workdir / f"{top}.rpt.json").read_text())
    return int(report["utilization"]["ICESTORM_LC"]["used"])


def _measure(name: str, python: Path) -> dict[str, Any]:
    w = _matrix(name)
    row: dict[str, Any] = {"matrix": name, "shape": list(w.shape), "nonzero": int((w != 0).sum())}
    cache = default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="bench_adder_graph_") as tmp:
        made = {
            "tree": _ours(w, "tree"),
            "shared": _ours(w, "shared"),
            "da4ml": _da4ml(w, python, Path(tmp)),
        }
        for flavour, (text, adders, seconds) in made.items():
            top = "da4ml_dut" if flavour == "da4ml" else f"ours_{flavour}"
            job = SynthJob(top=top, verilog=text, label=f"{name} {flavour}")
            generic = synthesize(job, "generic", cache_dir=cache, timeout_s=1800)
            ice40 = synthesize(job, "ice40", cache_dir=cache, timeout_s=1800)
            row[flavour] = {
                "adders": adders,
                "gen_s": round(seconds, 2),
                "gates": generic.gates,
                "lut4": ice40.lut,
                "carry": ice40.carry,
                "cells": _packed_cells(text, top, Path(tmp)),
            }
            print(f"adder_graph: {name} {flavour}: {row[flavour]}", flush=True)
    return row


def run() -> dict[str, Any]:
    wanted = os.environ.get("INQ_HW_BENCH_MATRICES", ",".join(DEFAULT_MATRICES))
    names = _all_names() if wanted == "all" else [n for n in wanted.split(",") if n]
    unknown = sorted(set(names) - set(_all_names()))
    if unknown:
        raise BenchError(f"Unknown matrices {unknown}; known: {_all_names()}")
    python = _env_python()
    rows = [_measure(name, python) for name in names]
    _print(rows)
    skipped = [n for n in _all_names() if n not in names]
    return {"matrices": rows, "not_run": skipped}


def _print(rows: list[dict[str, Any]]) -> None:
    keys = ("adders", "gates", "lut4", "carry", "cells", "gen_s")
    header = ["matrix", "design", *keys, "gates/da4ml", "cells/da4ml"]
    table = []
    for row in rows:
        base = row["da4ml"]
        for flavour in ("tree", "shared", "da4ml"):
            f = row[flavour]
            ratios = [f"{f[k] / base[k]:.2f}" for k in ("gates", "cells")]
            table.append([row["matrix"], flavour, *(str(f[k]) for k in keys), *ratios])
    print_table("Adder graphs vs da4ml 0.6 (8-bit signed inputs)", header, table)
