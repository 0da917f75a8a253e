"""`simulate` refuses a ``--fold`` or ``--pipeline`` that the RTL it finds was not
generated with, instead of silently simulating other RTL (issue 20). No simulator runs:
the refusal comes before any build."""

from pathlib import Path

from inq_hw.intmodel.package import load_package
from rtl_gen.dataflow import generate_dataflow
from tests.conftest import Cli


def _folded_rtl(package: Path, out: Path) -> str:
    """Generate the dataflow top with the first weight layer folded by 2; its name."""
    first = load_package(package).weight_layers()[0].name
    generate_dataflow(package, out, folding={first: 2})
    return first


def test_simulate_refuses_a_fold_the_rtl_was_not_built_with(
    tiny_package: Path, tmp_path: Path, cli: Cli
) -> None:
    layer = _folded_rtl(tiny_package, tmp_path / "rtl")
    code, _, err = cli(
        "simulate", str(tiny_package), "--rtl", str(tmp_path / "rtl"), "--fold", f"{layer}=4"
    )
    assert code == 2
    assert f"fold 2 for layer {layer!r}, not the --fold 4" in err
    assert len(err.strip().splitlines()) == 1


def test_simulate_refuses_a_pipeline_the_rtl_was_not_built_with(
    tiny_package: Path, tmp_path: Path, cli: Cli
) -> None:
    _folded_rtl(tiny_package, tmp_path / "rtl")
    code, _, err = cli(
        "simulate", str(tiny_package), "--rtl", str(tmp_path / "rtl"), "--pipeline", "2"
    )
    assert code == 2
    assert "not the --pipeline 2 asked for" in err
