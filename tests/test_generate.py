"""inq-hw generate: units of a real package, determinism, names, lint, errors."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from inq_hw.cli import main
from inq_hw.intmodel import IntModel, quantize_input, run
from inq_hw.intmodel.package import load_package, save_package
from rtl_gen.generate import build_designs
from tests.conftest import Cli


@pytest.fixture(scope="module")
def package(tiny_inq: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "pkg"
    assert main(["export", str(tiny_inq), "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.hw
def test_generate_layer_is_deterministic_and_lint_clean(
    cli: Cli, package: Path, tmp_path: Path
) -> None:
    args = ["generate", str(package), "--unit", "layer:classifier.fc", "--pipeline", "2", "--lint"]
    code, text, err = cli(*args, "--out", str(tmp_path / "a"), "--json")
    assert code == 0, err
    manifest = json.loads(text)
    (top,) = manifest["tops"]
    assert top["name"] == "classifier_fc_shiftadd" and top["latency"] == 2
    assert top["source_hash"] and top["params"]["mode"] == "shift-add"
    assert cli(*args, "--out", str(tmp_path / "b"))[0] == 0
    for name in ("classifier_fc_shiftadd.v", "manifest.json", "files.f"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    verilog = (tmp_path / "a" / "classifier_fc_shiftadd.v").read_text()
    code_only = re.sub(r"/\*.*?\*/|\(\*.*?\*\)|@\*", "", verilog, flags=re.S)
    assert "*" not in code_only  # no multiplier anywhere


def test_generated_unit_matches_the_golden_layer(package: Path) -> None:
    model = load_package(package)
    (design,) = build_designs(model, unit="layer:classifier.fc", stages=0)
    from inq_hw.data import load_dataset

    x = quantize_input(load_dataset("digits").test.x[:8].numpy(), model.input.out)
    trace = run(model, x, trace=True)
    assert isinstance(trace, dict)
    layer = model.layer("classifier.fc")
    inputs, expected = trace[layer.inputs[0]], trace["classifier.fc"]
    unit = design.component
    seen: list[list[int]] = []

    async def bench(ctx: object) -> None:
        for row in inputs:
            ctx.set(unit.i_data, [int(v) for v in row])  # type: ignore[attr-defined]
            await ctx.delay(1e-9)  # type: ignore[attr-defined]
            seen.append([int(v) for v in ctx.get(unit.o_data)])  # type: ignore[attr-defined]

    sim = Simulator(unit)
    sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(np.array(seen), expected)


def test_mult8_twin_matches_the_golden_baseline(package: Path) -> None:
    model = load_package(package)
    (design,) = build_designs(model, unit="layer:classifier.fc", stages=1, baseline="mult8")
    assert design.params["mode"] == "multiply" and design.params["weight_bits"] == 8
    from inq_hw.data import load_dataset

    x = quantize_input(load_dataset("digits").test.x[:6].numpy(), model.input.out)
    trace = run(model, x, trace=True, weights="baseline")
    assert isinstance(trace, dict)
    inputs, expected = trace["classifier.flatten"], trace["classifier.fc"]
    unit = design.component
    seen: list[list[int]] = []

    async def bench(ctx: object) -> None:
        for row in inputs:
            ctx.set(unit.i_data, [int(v) for v in row])  # type: ignore[attr-defined]
            await ctx.tick()  # type: ignore[attr-defined]
            seen.append([int(v) for v in ctx.get(unit.o_data)])  # type: ignore[attr-defined]

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(np.array(seen), expected)


def test_hostile_layer_names_are_sanitised(package: Path, tmp_path: Path) -> None:
    model = load_package(package)
    renamed = []
    for layer in model.layers:
        name = "fc.1; $finish" if layer.name == "classifier.fc" else layer.name
        renamed.append(dataclasses.replace(layer, name=name))
    hostile = IntModel(layers=tuple(renamed), output="fc.1; $finish", meta=model.meta)
    save_package(hostile, tmp_path / "hostile")
    assert (
        main(
            [
                "generate",
                str(tmp_path / "hostile"),
                "--unit",
                "layer:fc.1; $finish",
                "--out",
                str(tmp_path / "rtl"),
                "--no-progress",
            ]
        )
        == 0
    )
    (verilog,) = (tmp_path / "rtl").glob("*.v")
    text = verilog.read_text()
    assert "$finish" not in text and "fc.1" not in text and "module fc_1_finish" in text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--unit", "layer:nope"], "No layer 'nope'"),
        (["--unit", "layer:features.pool2"], "only weight layers"),
        (["--unit", "everything"], "Unit must be"),
        (["--pipeline", "-1"], "Pipeline stages"),
    ],
)
def test_generate_bad_input(
    cli: Cli,
    package: Path,
    tmp_path: Path,
    args: list[str],
    fragment: str,
) -> None:
    code, _, err = cli("generate", str(package), *args, "--out", str(tmp_path / "rtl"))
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rtl").exists()
