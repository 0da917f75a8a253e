# amaranth: UnusedElaboratable=no
"""The pipeline-depth chooser: the delay model, its fit, the per-layer choice, the CLI."""

import gc
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inq_hw.cli import main
from inq_hw.errors import ConfigError
from inq_hw.intmodel.package import save_package
from rtl_gen import dataflow
from rtl_gen.dataflow import build_dataflow
from rtl_gen.pipelining import (
    DELAY_MODELS,
    MAX_STAGES,
    DelayModel,
    DotPath,
    PipelineError,
    Sample,
    dot_path,
    dot_paths,
    fit,
    path_delay_ns,
    pipeline_for_clock,
    stages_for_clock,
)
from tests.test_dataflow import U8, small_cnn

WIDE = DotPath(levels=9, width=22)


@pytest.mark.parametrize("family", sorted(DELAY_MODELS))
def test_more_stages_never_lengthen_the_path(family: str) -> None:
    model = DELAY_MODELS[family]
    for path in (WIDE, DotPath(levels=3, width=12, pre_luts=3), DotPath(0, 9, pre_levels=3)):
        delays = [path_delay_ns(path, n, model) for n in range(12)]
        assert all(b <= a + 1e-9 for a, b in itertools.pairwise(delays)), delays


def test_a_faster_clock_needs_at_least_as_many_stages() -> None:
    depths = [stages_for_clock(WIDE, clock_mhz=f, family="ecp5") for f in (10, 60, 90, 120)]
    assert depths[0] == 0 and depths == sorted(depths) and depths[-1] > 0
    chosen = depths[-1]
    model = DELAY_MODELS["ecp5"]
    assert path_delay_ns(WIDE, chosen, model) <= 1e3 / 120 < path_delay_ns(WIDE, chosen - 1, model)


def test_unreachable_clocks_and_bad_requests_are_refused() -> None:
    with pytest.raises(PipelineError, match="No pipeline depth reaches 5000 MHz on ice40"):
        stages_for_clock(WIDE, clock_mhz=5000, family="ice40")
    with pytest.raises(PipelineError, match="family must be one of"):
        stages_for_clock(WIDE, clock_mhz=50, family="virtex")
    with pytest.raises(PipelineError, match="positive number of MHz"):
        stages_for_clock(WIDE, clock_mhz=0, family="ice40")


def test_fit_recovers_the_constants_it_was_measured_with() -> None:
    truth = DelayModel(register_ns=1.5, level_ns=0.9, bit_ns=0.2)
    paths = [DotPath(3, 14), DotPath(5, 15), DotPath(7, 18), DotPath(5, 11), DotPath(7, 10)]
    samples = [Sample(p, 1e3 / truth.segment_ns(p.levels, 0, p.width)) for p in paths]
    fitted = fit(samples)
    assert np.allclose(
        [fitted.register_ns, fitted.level_ns, fitted.bit_ns], [1.5, 0.9, 0.2], atol=1e-6
    )
    with pytest.raises(PipelineError, match="at least three"):
        fit(samples[:2])


def test_dot_paths_follow_the_weights() -> None:
    weights = np.array([[1, 0, -4, 2], [0, 0, 8, 0]])
    unrolled = dot_path(weights, np.array([1, -1]), U8, mode="shift-add", fold=1)
    assert unrolled.levels == 2 and unrolled.pre_luts == 0  # 3 nonzero terms + the bias
    folded = dot_path(weights, np.array([1, -1]), U8, mode="shift-add", fold=2)
    assert folded.levels == 3 and folded.pre_luts > 0  # runtime weights: every input
    assert dot_path(weights * 3, np.array([1, -1]), U8, mode="multiply", fold=2).pre_levels


def test_pipeline_for_clock_gives_a_buildable_choice_per_weight_layer() -> None:
    model = small_cnn()
    folding = {"c2": 2}
    paths = dot_paths(model, folding=folding).values()
    delay = max(path_delay_ns(p, MAX_STAGES, DELAY_MODELS["ice40"]) for p in paths)
    slow = pipeline_for_clock(model, clock_mhz=20, family="ice40", folding=folding)
    fast = pipeline_for_clock(model, clock_mhz=950 / delay, family="ice40", folding=folding)
    assert set(slow) == set(fast) == {"c1", "c2", "f1", "f2"}
    assert all(fast[name] >= slow[name] for name in slow) and sum(fast.values()) > 0
    top = build_dataflow(model, folding=folding, pipeline=fast)
    assert [s.info["pipeline"] for s in top.stages if s.info["kind"] != "maxpool"][:2] == [
        fast["c1"],
        fast["c2"],
    ]
    with pytest.raises(PipelineError, match="Layer 'c1'"):
        pipeline_for_clock(model, clock_mhz=9000, family="ecp5")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    gc.collect()  # warnings about earlier tests' unelaborated tops go before, not into, err
    capsys.readouterr()
    code = main([*argv, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_dataflow_pipeline_n_applies_to_every_weight_layer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    save_package(small_cnn(), package)
    seen: dict[str, Any] = {}

    def record(*args: Any, **kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        raise ConfigError("recorded")

    monkeypatch.setattr(dataflow, "generate_dataflow", record)
    args = ["generate", str(package), "--unit", "dataflow", "--pipeline", "3", "--fold", "c2=2"]
    assert _cli(capsys, *args)[0] == 2
    assert seen["pipeline"] == dict.fromkeys(["c1", "c2", "f1", "f2"], 3)
    assert seen["folding"] == {"c2": 2}


def test_generate_dataflow_pipeline_auto(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    package = tmp_path / "pkg"
    save_package(small_cnn(), package)
    folding = dict.fromkeys(["c1", "c2", "f1", "f2"], 2)
    paths = dot_paths(small_cnn(), folding=folding).values()
    clock = 950 / max(path_delay_ns(p, MAX_STAGES, DELAY_MODELS["ice40"]) for p in paths)
    auto = ["generate", str(package), "--unit", "dataflow", "--fold", "all=2", "--json"]
    auto += ["--pipeline", "auto", "--clock-mhz", f"{clock:.3f}", "--family", "ice40"]
    code, text, err = _cli(capsys, *auto, "--out", str(tmp_path / "rtl"))
    assert code == 0, err
    expected = pipeline_for_clock(
        small_cnn(), clock_mhz=float(f"{clock:.3f}"), family="ice40", folding=folding
    )
    assert sum(expected.values()) > 0
    top = json.loads(text)["tops"][0]
    engines = top["params"]["engines"]
    assert {e["layer"]: e["pipeline"] for e in engines if e["layer"] in expected} == expected
    assert top["latency"] == top["params"]["latency_cycles"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--pipeline", "auto"], "needs --clock-mhz"),
        (["--pipeline", "x"], "Pipeline stages must be"),
        (["--pipeline", "2", "--clock-mhz", "50"], "applies to --pipeline auto only"),
        (["--pipeline", "auto", "--clock-mhz", "9000"], "No pipeline depth reaches"),
    ],
)
def test_generate_dataflow_bad_pipeline_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], fragment: str
) -> None:
    package = tmp_path / "pkg"
    save_package(small_cnn(), package)
    out = tmp_path / "rtl"
    code, _, err = _cli(
        capsys, "generate", str(package), "--unit", "dataflow", *args, "--out", str(out)
    )
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
