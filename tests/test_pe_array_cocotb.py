"""The PE array's Verilog under cocotb (Icarus, Verilator) against the golden executor:
bit-exact outputs, and cycles (the array's ``o_cycles`` and the testbench's count) equal to
the cycle model's prediction.

The default tier runs one small case on Icarus (the tiny digits-cnn on a 2x2 array) and
the checkers' failure cases on the same build. The matrix (digits-cnn and lenet5, two
array shapes, two code widths, and the multiplier twin) runs on Verilator with
``pytest -m slow``; Verilator builds of the larger programs take a minute each.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inq_hw.intmodel import IntModel
from inq_hw.intmodel.package import load_package, save_package
from inq_hw.lower import lower_checkpoint
from rtl_gen.export import load_manifest
from rtl_gen.pe_program import Program, compile_program, fit_config
from sim.pe_array_sim import (
    CycleMismatch,
    check_summary,
    golden_outputs,
    simulate_pe_array,
)
from sim.runner import SimulationError, available_simulators
from sim.simulate import SimulationMismatch
from tests.test_pe_array import digit_images, digits, zoo_model

__all__ = ["digits"]  # the 3- and 4-bit digits-cnn packages (fixture)


def _needs(simulator: str) -> None:
    if simulator not in available_simulators():
        pytest.skip(f"{simulator} is not installed")


#: ``slow`` tests run only when ``-m`` selects them (``pytest -m slow``); evaluated before
#: any fixture is set up.
opt_in = pytest.mark.skipif("'slow' not in config.option.markexpr", reason="run with -m slow")


@pytest.fixture(scope="module")
def digits4(tiny_inq: Path, tmp_path_factory: pytest.TempPathFactory) -> IntModel:
    """The tiny trained 4-bit digits-cnn, through its package files."""
    out = tmp_path_factory.mktemp("pe_cocotb") / "pkg4"
    save_package(lower_checkpoint(tiny_inq), out)
    return load_package(out)


@dataclass(frozen=True)
class Case:
    model: IntModel
    program: Program
    images: np.ndarray
    root: Path

    def run(self, **options: Any) -> dict[str, Any]:
        """Simulate on Icarus; every run of the case shares one build."""
        _needs("icarus")
        return simulate_pe_array(
            self.model,
            self.program,
            self.images,
            out_dir=self.root / "rtl",
            cache_dir=self.root / "sim_build",
            simulator="icarus",
            **options,
        )


@pytest.fixture(scope="module")
def small(digits4: IntModel, tmp_path_factory: pytest.TempPathFactory) -> Case:
    """The 2x2 shift array for the 4-bit digits-cnn and two test images."""
    program = compile_program(digits4, fit_config(digits4, rows=2, cols=2))
    return Case(digits4, program, digit_images(digits4, 2), tmp_path_factory.mktemp("pe_icarus"))


# --- default tier: one small case on Icarus, and the checkers failing ---------------------


@pytest.mark.hw
def test_icarus_digits_cnn_bit_exact_cycles_equal_model(small: Case) -> None:
    summary = small.run()
    check_summary(summary)
    program = small.program
    assert summary["simulator"] == "icarus" and summary["completed"] == 2
    assert summary["mismatched_samples"] == 0
    predicted = summary["predicted_cycles"]
    assert summary["o_cycles"] == summary["counted_cycles"] == [predicted, predicted]
    # The manifest states the array's parameters and the prediction.
    top = load_manifest(small.root / "rtl").tops[0]
    assert top.name == "pe_array_shift_2x2"
    assert top.params["config"] == program.config.to_dict()
    assert top.params["predicted_cycles"] == predicted
    assert top.params["output"] == {"base": program.output.base, "size": program.output.size}
    assert {p.name for p in top.ports} >= {"clk", "rst", "i_start", "o_done", "o_cycles"}


@pytest.mark.hw
def test_a_wrong_integer_is_caught(small: Case) -> None:
    """The testbench compares every integer: one logit off by one fails the run."""
    expected = golden_outputs(small.model, small.program, small.images)
    expected[1, 3] += 1
    summary = small.run(expected=expected)
    assert summary["mismatched_samples"] == 1
    assert summary["mismatches"] == [
        {"sample": 1, "output": 3, "expected": int(expected[1, 3]), "seen": expected[1, 3] - 1}
    ]
    with pytest.raises(SimulationMismatch, match=r"1 of 2 images differ.*image 1, output 3"):
        check_summary(summary)


@pytest.mark.hw
def test_an_array_that_never_finishes_times_out(small: Case) -> None:
    summary = small.run(max_cycles=100)
    assert summary["timeout"] and summary["completed"] == 0
    with pytest.raises(SimulationError, match="0 of 2 inferences finished"):
        check_summary(summary)


def test_cycles_other_than_the_model_are_caught() -> None:
    good = {
        "top": "pe_array_shift_2x2",
        "images": 1,
        "completed": 1,
        "timeout": False,
        "mismatched_samples": 0,
        "mismatches": [],
        "o_cycles": [100],
        "counted_cycles": [100],
        "predicted_cycles": 100,
        "cycles_match_model": True,
    }
    check_summary(good)
    late = {**good, "o_cycles": [101], "cycles_match_model": False}
    with pytest.raises(CycleMismatch, match=r"o_cycles=\[101\].*predicts 100"):
        check_summary(late)


# --- the matrix on Verilator (opt-in) -----------------------------------------------------


def _verilator_case(
    model: IntModel, images: np.ndarray, rows: int, cols: int, pe: str, tmp: Path
) -> dict[str, object]:
    _needs("verilator")
    program = compile_program(model, fit_config(model, rows=rows, cols=cols, pe=pe))
    summary = simulate_pe_array(model, program, images, out_dir=tmp, simulator="verilator")
    check_summary(summary)
    assert summary["o_cycles"] == [summary["predicted_cycles"]] * len(images)
    return summary


@pytest.mark.hw
@pytest.mark.slow
@opt_in
@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize(("rows", "cols"), [(2, 3), (4, 4)])
def test_verilator_digits_cnn(
    digits: dict[int, IntModel], bits: int, rows: int, cols: int, tmp_path: Path
) -> None:
    model = digits[bits]
    _verilator_case(model, digit_images(model, 8), rows, cols, "shift", tmp_path)


@pytest.mark.hw
@pytest.mark.slow
@opt_in
@pytest.mark.parametrize("bits", [3, 5])
@pytest.mark.parametrize(("rows", "cols"), [(2, 3), (4, 4)])
def test_verilator_lenet5(bits: int, rows: int, cols: int, tmp_path: Path) -> None:
    model, x = zoo_model("lenet5", 1, 28, bits)
    _verilator_case(model, x[:4], rows, cols, "shift", tmp_path)


@pytest.mark.hw
@pytest.mark.slow
@opt_in
def test_verilator_multiplier_twin(digits: dict[int, IntModel], tmp_path: Path) -> None:
    model = digits[4]
    summary = _verilator_case(model, digit_images(model, 4), 4, 4, "mult", tmp_path)
    assert summary["top"] == "pe_array_mult_4x4"
