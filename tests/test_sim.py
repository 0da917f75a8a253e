# amaranth: UnusedElaboratable=no
"""cocotb on Icarus Verilog: the rtl_gen blocks and the dataflow top, through Verilog.

The unit testbench (``sim/tb_vectors.py``) checks each block cycle by cycle against the
golden arithmetic; the dataflow testbench (``sim/tb_dataflow.py``) streams images with
random gaps and stalls and checks every output integer. Small designs only: Icarus runs
the full digits-cnn at a few cycles per second (Verilator runs it in benches/bench_sim.py).
"""

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amaranth.lib import wiring

from inq_hw.intmodel.arith import ActFormat, requantize
from inq_hw.intmodel.layers import WeightLayer
from inq_hw.intmodel.package import package_hash, save_package
from rtl_gen.arith import Requantizer
from rtl_gen.dataflow import dataflow_design, generate_dataflow
from rtl_gen.export import Design, export_design, verilator_lint, write_designs
from rtl_gen.pe import ShiftMAC, shift_mac_reference
from rtl_gen.units import ConstDotUnit, Requant
from sim import runner
from sim.fast.engine import fast_available
from sim.runner import SimulationError, run_testbench
from sim.simulate import SimulationMismatch, simulate_package
from sim.streams import decode_fields, encode_fields
from tests.conftest import CLI
from tests.test_dataflow import _images, small_cnn

pytestmark = pytest.mark.hw

S8, U8 = ActFormat(8, True, 0), ActFormat(8, False, 0)


def _run_vectors(
    component: wiring.Component,
    latency: int,
    inputs: list[dict[str, int]],
    expect: list[dict[str, int | None]],
    tmp: Path,
) -> dict[str, Any]:
    manifest = export_design(Design(top="block", component=component, latency=latency), tmp)
    top = manifest.tops[0]
    ports = {p.name: {"width": p.width, "signed": p.signed and p.count == 1} for p in top.ports}
    return run_testbench(
        sources=[tmp / top.file],
        top=top.name,
        module="sim.tb_vectors",
        config={"ports": ports, "inputs": inputs, "expect": expect},
        simulator="icarus",
        cache_dir=tmp / "build",
        timeout_s=300,
    )


def _unit_case(unit: ConstDotUnit, rng: np.random.Generator, count: int) -> tuple[list, list]:
    """Random and extreme input vectors and, ``latency`` cycles later, the exact outputs."""
    fmt, q = unit.in_format, unit.requant
    n_in = unit.weights.shape[1]
    x = rng.integers(fmt.lo, fmt.hi + 1, (count, n_in))
    x[0], x[1] = fmt.lo, fmt.hi
    acc = x @ unit.weights.astype(np.int64).T + unit.bias.astype(np.int64)
    y = requantize(acc, shift=q.shift, relu=q.relu, out=q.out) if q else acc
    bits = q.out.bits if q else unit.acc_bits
    inputs = [{"i_data": encode_fields(row, fmt.bits), "i_valid": 1} for row in x.tolist()]
    inputs += [{"i_valid": 0}] * unit.latency
    expect: list[dict[str, int | None]] = [{"o_valid": None}] * unit.latency
    expect += [{"o_data": encode_fields(row, bits), "o_valid": 1} for row in y.tolist()]
    return inputs, expect


@pytest.mark.parametrize(
    ("mode", "stages", "requant"),
    [
        ("shift-add", 0, Requant(shift=4, relu=True, out=U8)),
        ("shift-add", 2, None),
        ("multiply", 1, Requant(shift=9, relu=False, out=S8)),
    ],
)
def test_const_dot_unit(mode: str, stages: int, requant: Requant | None, tmp_path: Path) -> None:
    rng = np.random.default_rng(stages)
    if mode == "shift-add":
        weights = rng.choice([-1, 0, 1], (3, 10)) << rng.integers(0, 6, (3, 10))
    else:
        weights = rng.integers(-128, 128, (3, 10))
        weights[0, 0] = 3
    unit = ConstDotUnit(
        weights=weights,
        bias=rng.integers(-500, 500, 3),
        in_format=S8,
        mode=mode,
        requant=requant,
        stages=stages,
    )
    inputs, expect = _unit_case(unit, rng, 24)
    result = _run_vectors(unit, stages, inputs, expect, tmp_path)
    assert result["mismatches"] == []
    assert result["checked"] >= 48


def test_requantizer_on_every_extreme(tmp_path: Path) -> None:
    out = ActFormat(6, True, 0)
    block = Requantizer(acc_bits=12, shift=3, relu=False, out=out)
    accs = [-2048, -2047, -5, -4, -3, -1, 0, 3, 4, 5, 2047, 259, -260, 100]
    expected = requantize(np.array(accs), shift=3, relu=False, out=out)
    inputs = [{"i_acc": a} for a in accs]
    expect: list[dict[str, int | None]] = [{"o_data": int(v)} for v in expected]
    result = _run_vectors(block, 0, inputs, expect, tmp_path)
    assert result["mismatches"] == []


def test_shift_mac_sequence(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pe = ShiftMAC(act_bits=8, act_signed=True, weight_bits=4, acc_bits=20)
    acts, codes = rng.integers(-128, 128, 30).tolist(), rng.integers(0, 16, 30).tolist()
    clears = [int(k % 7 == 0) for k in range(30)]
    inputs = [
        {"i_act": a, "i_code": c, "i_valid": 1, "i_clear": cl}
        for a, c, cl in zip(acts, codes, clears, strict=True)
    ]
    after = shift_mac_reference(codes, acts, [1] * 30, clears, weight_bits=4, acc_bits=20)
    # o_acc is the register: in each cycle it shows the sum after the previous edge
    expect: list[dict[str, int | None]] = [{"o_acc": v} for v in [0, *after[:-1]]]
    result = _run_vectors(pe, 1, inputs, expect, tmp_path)
    assert result["mismatches"] == []


def test_a_wrong_expectation_is_reported(tmp_path: Path) -> None:
    block = Requantizer(acc_bits=8, shift=1, relu=True, out=U8)
    result = _run_vectors(block, 0, [{"i_acc": 10}, {"i_acc": 3}], [{"o_data": 6}, {}], tmp_path)
    assert result["mismatches"] == [{"cycle": 0, "port": "o_data", "expected": 6, "seen": 5}]


# --- the dataflow top ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pkg")
    save_package(small_cnn(), directory)
    return directory


def test_dataflow_top_is_bit_exact_with_stalls(small_package: Path, tmp_path: Path) -> None:
    model = small_cnn()
    x = _images(model, 6, 1)
    generate_dataflow(small_package, tmp_path / "rtl", folding={"c2": 2})
    summary = simulate_package(
        small_package, rtl_dir=tmp_path / "rtl", images=x, simulator="icarus", seed=4
    )
    assert summary["mismatched_samples"] == 0
    assert summary["samples"] == 6
    assert summary["timing_matches_manifest"], summary
    assert summary["interval_cycles"] == summary["claimed_interval_cycles"] > 0


def test_pipelined_top_is_bit_exact_with_stalls_and_its_latency_is_the_manifests(
    small_package: Path, tmp_path: Path
) -> None:
    """Unrolled and folded dot stages with register stages, through Verilog on Icarus."""
    x = _images(small_cnn(), 5, 3)
    pipeline = {"c1": 2, "c2": 1, "f1": 3, "f2": 1}
    manifest = generate_dataflow(
        small_package, tmp_path / "rtl", folding={"c2": 2, "f1": 3}, pipeline=pipeline
    )
    params = manifest["tops"][0]["params"]
    assert [e["pipeline"] for e in params["engines"] if e["layer"] in pipeline] == [2, 1, 3, 1]
    summary = simulate_package(
        small_package, rtl_dir=tmp_path / "rtl", images=x, simulator="icarus", seed=2, stall=0.5
    )
    assert summary["mismatched_samples"] == 0 and summary["samples"] == 5
    assert summary["latency_cycles"] == params["latency_cycles"]
    assert summary["interval_cycles"] == params["interval_cycles"]
    flat = dataflow_design(small_cnn(), folding={"c2": 2, "f1": 3})
    assert params["latency_cycles"] > flat.params["latency_cycles"]


def corrupted_design(package: Path, out: Path) -> None:
    """Write to ``out`` a top whose largest fc weight has its sign flipped, under the
    manifest (and package hash) of the true ``package``: one weight code changed after
    generation."""
    import dataclasses

    model = small_cnn()
    fc = model.layer("f2")
    assert isinstance(fc, WeightLayer)
    codes = fc.codes.copy()
    codes.flat[np.argmax(np.abs(fc.weights_int()))] ^= 1 << (fc.bits - 2)
    bad = dataclasses.replace(
        model,
        layers=tuple(
            dataclasses.replace(fc, codes=codes) if layer is fc else layer for layer in model.layers
        ),
    )
    write_designs([dataflow_design(bad, source_hash=package_hash(package))], out)


@pytest.mark.parametrize(
    ("engine", "simulator"),
    [
        ("cocotb", "icarus"),
        pytest.param(
            "fast",
            None,
            marks=pytest.mark.skipif(not fast_available(), reason="Verilator missing"),
        ),
    ],
)
def test_a_corrupted_design_is_caught(
    engine: str, simulator: str | None, small_package: Path, tmp_path: Path
) -> None:
    """Both engines catch one weight's sign flipped after generation."""
    corrupted_design(small_package, tmp_path / "rtl")
    with pytest.raises(SimulationMismatch, match="differ from the golden model") as caught:
        simulate_package(
            small_package,
            rtl_dir=tmp_path / "rtl",
            images=_images(small_cnn(), 4, 2),
            engine=engine,
            simulator=simulator,
        )
    summary = caught.value.summary  # type: ignore[attr-defined]
    assert summary["engine"] == engine
    # CPU time of the run's processes: the cocotb child with its simulator, or the harness
    if engine == "cocotb":
        assert summary["run_cpu_seconds"] > 0
    else:
        assert summary["run_cpu_seconds"] == summary["harness_process_cpu_seconds"] is not None
    first = summary["mismatches"][0]
    assert {"sample", "output", "expected", "seen"} <= set(first)
    assert first["expected"] != first["seen"]


def test_rtl_of_another_package_is_refused(small_package: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    save_package(small_cnn(padding=2), other)
    generate_dataflow(other, tmp_path / "rtl")
    with pytest.raises(SimulationError, match="generated from another package"):
        simulate_package(small_package, rtl_dir=tmp_path / "rtl", images=np.zeros((1, 2, 7, 9)))


def test_cycle_limit_and_wall_clock_limit(small_package: Path, tmp_path: Path) -> None:
    x = _images(small_cnn(), 2, 0)
    rtl = tmp_path / "rtl"
    with pytest.raises(SimulationError, match="cycle limit"):
        simulate_package(small_package, rtl_dir=rtl, images=x, simulator="icarus", max_cycles=40)
    many = _images(small_cnn(), 400, 0)
    with pytest.raises(SimulationError, match="did not finish within"):
        simulate_package(small_package, rtl_dir=rtl, images=many, simulator="icarus", timeout_s=1)


def test_missing_or_unknown_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SimulationError, match="must be one of"):
        runner.choose_simulator("modelsim")
    monkeypatch.setattr(runner.shutil, "which", lambda name: None)
    with pytest.raises(SimulationError, match="'icarus' is not installed"):
        runner.choose_simulator("icarus")


def test_simulate_command(tiny_inq: Path, tmp_path: Path) -> None:
    """The CLI end to end on a tiny digits-cnn package, three test images."""
    package = tmp_path / "pkg"
    subprocess.run([*CLI, "export", str(tiny_inq), "--out", str(package)], check=True)
    done = subprocess.run(
        [*CLI, "simulate", str(package), "--samples", "3", "--simulator", "icarus", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["mismatched_samples"] == 0 and summary["samples"] == 3
    assert summary["timing_matches_manifest"]
    saved = json.loads((package / "rtl-dataflow" / "simulation.json").read_text())
    assert saved["samples"] == 3
    bad = subprocess.run(
        [*CLI, "simulate", str(package), "--samples", "0"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    wrong = subprocess.run(
        [*CLI, "simulate", str(package), "--engine", "fast", "--simulator", "icarus"],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 2 and "runs on Verilator" in wrong.stderr
    assert wrong.stderr.count("\n") == 1
    assert decode_fields(encode_fields([-3, 5], 8), 2, 8, True) == [-3, 5]


@pytest.mark.parametrize("baseline", [None, "mult8"])
def test_dataflow_verilog_is_lint_clean(baseline: str | None, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    save_package(small_cnn(), package)
    manifest = generate_dataflow(
        package, tmp_path / "rtl", baseline=baseline, folding={"c1": 3, "f1": 2}
    )
    (top,) = manifest["tops"]
    assert verilator_lint([tmp_path / "rtl" / top["file"]], top["name"]) == []


def test_waves_are_written(small_package: Path, tmp_path: Path) -> None:
    summary = simulate_package(
        small_package,
        rtl_dir=tmp_path / "rtl",
        images=_images(small_cnn(), 2, 0),
        simulator="icarus",
        waves=True,
    )
    waves = Path(summary["waves"])
    assert waves.suffix == ".fst" and waves.stat().st_size > 1000
