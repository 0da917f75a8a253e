"""`simulate` refuses a ``--fold`` or ``--pipeline`` that the RTL it finds was not
generated with, instead of silently simulating other RTL (issue 20). No simulator runs:
the refusal comes before any build."""

from pathlib import Path

import pytest

from inq_hw.intmodel.package import load_package
from rtl_gen.dataflow import generate_dataflow
from tests.conftest import Cli


@pytest.fixture(scope="module")
def folded_rtl(tiny_package: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The dataflow top generated with the first weight layer folded by 2 (read only: the
    refusals come before any build), and that layer's name."""
    first = load_package(tiny_package).weight_layers()[0].name
    out = tmp_path_factory.mktemp("folded") / "rtl"
    generate_dataflow(tiny_package, out, folding={first: 2})
    return out, first


def test_simulate_refuses_a_fold_the_rtl_was_not_built_with(
    tiny_package: Path, folded_rtl: tuple[Path, str], cli: Cli
) -> None:
    rtl, layer = folded_rtl
    code, _, err = cli("simulate", str(tiny_package), "--rtl", str(rtl), "--fold", f"{layer}=4")
    assert code == 2
    assert f"fold 2 for layer {layer!r}, not the --fold 4" in err
    assert len(err.strip().splitlines()) == 1


def test_simulate_refuses_a_pipeline_the_rtl_was_not_built_with(
    tiny_package: Path, folded_rtl: tuple[Path, str], cli: Cli
) -> None:
    rtl, _ = folded_rtl
    code, _, err = cli("simulate", str(tiny_package), "--rtl", str(rtl), "--pipeline", "2")
    assert code == 2
    assert "not the --pipeline 2 asked for" in err
