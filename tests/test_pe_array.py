"""The programmable PE array: bit-exact against the golden executor in Amaranth's simulator,
measured cycles equal to the cycle model's, and the compiler's errors before any RTL."""

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inq_hw.driver import run_inq
from inq_hw.fold import fold_batchnorm
from inq_hw.inq import IncrementalQuantizer, INQConfig
from inq_hw.intmodel import IntModel, Layer, quantize_input, run
from inq_hw.intmodel.package import load_package, save_package
from inq_hw.lower import lower_checkpoint, lower_model
from inq_hw.models import build_model
from inq_hw.train import TrainConfig
from rtl_gen import pe_array
from rtl_gen.export import RTLError
from rtl_gen.pe_array import PEArray, simulate
from rtl_gen.pe_program import (
    SETTLE_CYCLES,
    ArrayConfig,
    ProgramError,
    allocate,
    compile_program,
    fit_config,
)
from sim.cycle_model import predict

# --- packages ----------------------------------------------------------------------------


def on_grid_model(
    model: nn.Module, x: torch.Tensor, bits: int, twin_bits: int | None = None
) -> IntModel:
    """Lower ``model`` after one INQ step puts every weight on its grid; the model as it
    was before gives the 8-bit baseline, or with ``twin_bits`` the uniform twin of that
    width (one uniform INQ step on the same model, as ``export --twin`` carries)."""
    fold_batchnorm(model)
    baseline = copy.deepcopy(model).eval()
    if twin_bits is not None:
        uniform = INQConfig(bits=twin_bits, schedule=(1.0,), weight_format="uniform")
        IncrementalQuantizer(baseline, uniform).advance()
    inq = IncrementalQuantizer(model, INQConfig(bits=bits, schedule=(1.0,)))
    inq.advance()
    n1 = {layer.name: layer.n1 for layer in inq.layers}
    return lower_model(
        model.eval(), x, bits=bits, n1=n1, baseline_model=baseline, twin_bits=twin_bits
    )


def zoo_model(
    name: str, in_channels: int, size: int, bits: int, **options: object
) -> tuple[IntModel, np.ndarray]:
    """A zoo model with random weights, lowered; and 64 integer inputs."""
    torch.manual_seed(0)
    model = build_model(name, in_channels=in_channels, num_classes=10, input_size=size, **options)
    x = torch.rand(64, in_channels, size, size)
    int_model = on_grid_model(model, x, bits)
    return int_model, quantize_input(x.numpy(), int_model.input.out)


class _Odd(nn.Module):
    """Strided padded conv, an unfused ReLU (after a pool), overlapping pool, signed input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 5, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=1)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(5 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.relu(self.pool(self.conv(x)))))


def odd_model(twin_bits: int | None = None) -> tuple[IntModel, np.ndarray]:
    """:class:`_Odd` at 5 bits (with its 8-bit twin, or the ``twin_bits`` uniform twin),
    three integer inputs and the two extreme ones."""
    torch.manual_seed(1)
    x = torch.randn(64, 2, 5, 5)
    int_model = on_grid_model(_Odd(), x, bits=5, twin_bits=twin_bits)
    fmt = int_model.input.out
    x_int = quantize_input(x[:3].numpy(), fmt)
    # The extreme inputs: every PE sees the largest magnitudes of the input format.
    extremes = np.stack([np.full(x_int.shape[1:], fmt.hi), np.full(x_int.shape[1:], fmt.lo)])
    return int_model, np.concatenate([x_int, extremes])


@pytest.fixture(scope="module")
def odd() -> tuple[IntModel, np.ndarray]:
    return odd_model()


@pytest.fixture(scope="module")
def digits(
    tiny_fp32: Path, tiny_inq: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, IntModel]:
    """The tiny trained digits-cnn at 4 bits (conftest) and 3 bits, through package files."""
    out = tmp_path_factory.mktemp("pe_pkg")
    inq3 = run_inq(
        tiny_fp32,
        INQConfig(bits=3, schedule=(0.5, 1.0)),
        TrainConfig(epochs=1, lr=0.05, batch_size=128),
        out / "inq3.pt",
    )["out"]
    models = {}
    for bits, checkpoint in ((4, tiny_inq), (3, Path(inq3))):
        save_package(lower_checkpoint(checkpoint), out / f"pkg{bits}")
        models[bits] = load_package(out / f"pkg{bits}")
    return models


def digit_images(model: IntModel, count: int) -> np.ndarray:
    from inq_hw.data import load_dataset

    return quantize_input(load_dataset("digits").test.x[:count].numpy(), model.input.out)


def check_array(
    model: IntModel, images: np.ndarray, rows: int, cols: int, pe: str = "shift"
) -> list[int]:
    """Simulate the array; assert bit-exact outputs and cycles equal to the model's."""
    program = compile_program(model, fit_config(model, rows=rows, cols=cols, pe=pe))
    result = simulate(PEArray(program), images)
    golden = run(model, images, weights="po2" if pe == "shift" else "baseline")
    assert isinstance(golden, np.ndarray)
    np.testing.assert_array_equal(result.outputs, golden.reshape(len(images), -1))
    assert result.cycles == [predict(program).cycles] * len(images)
    return result.cycles


# --- bit-exact, exact cycles ---------------------------------------------------------------


@pytest.mark.integration  # a whole CNN through the PE array RTL in Amaranth's simulator
@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize(("rows", "cols"), [(2, 2), (4, 3)])
def test_digits_cnn_bit_exact(digits: dict[int, IntModel], bits: int, rows: int, cols: int) -> None:
    model = digits[bits]
    # Two inferences in a row once: the array restarts from DONE.
    count = 2 if (bits, rows) == (4, 4) else 1
    check_array(model, digit_images(model, count), rows, cols)


@pytest.mark.integration  # a whole CNN through the PE array RTL in Amaranth's simulator
def test_multiplier_twin_bit_exact(digits: dict[int, IntModel]) -> None:
    model = digits[4]
    check_array(model, digit_images(model, 1), 3, 3, pe="mult")


def test_strided_padded_conv_relu_pool_and_extremes(odd: tuple[IntModel, np.ndarray]) -> None:
    model, images = odd
    assert {layer.kind for layer in model.layers} >= {"conv2d", "maxpool", "relu", "linear"}
    check_array(model, images, 3, 2)
    check_array(model, images[-2:], 2, 3, pe="mult")


@pytest.mark.integration  # a small ResNet through the PE array RTL in Amaranth's simulator
def test_residual_add_and_average_pool() -> None:
    model, x = zoo_model("resnet", 3, 8, 4, widths=[4, 8], blocks=[1, 1])
    assert {layer.kind for layer in model.layers} >= {"add", "avgpool"}
    check_array(model, x[:1], 3, 5)


def test_array_that_computes_wrong_is_caught(odd: tuple[IntModel, np.ndarray]) -> None:
    """The comparison can fail: the classifier's weights with their sign bits flipped."""
    model, images = odd
    program = compile_program(model, fit_config(model, rows=2, cols=2))
    b, fc_base = program.config.weight_bits, program.instructions[-2]["w_base"]
    signs = sum(1 << (c * b + b - 2) for c in range(2))
    words = [w ^ signs if i >= fc_base else w for i, w in enumerate(program.weight_words)]
    broken = dataclasses.replace(program, weight_words=tuple(words))
    result = simulate(PEArray(broken), images[:1])
    golden = run(model, images[:1])
    assert isinstance(golden, np.ndarray)
    assert not np.array_equal(result.outputs, golden.reshape(1, -1))


def test_array_without_its_settle_cycles_is_caught(
    odd: tuple[IntModel, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settle cycles are needed: fetching the next instruction at once after a layer's
    last issue, its last outputs are written after the next layer has begun (with its
    requantisation) and read, so the outputs go wrong."""
    model, images = odd
    program = compile_program(model, fit_config(model, rows=2, cols=2))
    monkeypatch.setattr(pe_array, "SETTLE_CYCLES", 0)
    monkeypatch.setattr(pe_array, "_AFTER_ISSUE", "FETCH")
    result = simulate(PEArray(program), images[:1])
    golden = run(model, images[:1])
    assert isinstance(golden, np.ndarray)
    assert not np.array_equal(result.outputs, golden.reshape(1, -1))
    layers = len(program.instructions) - 1
    assert result.cycles == [predict(program).cycles - layers * SETTLE_CYCLES]


# --- the compiler -------------------------------------------------------------------------


def test_memory_map_reuses_dead_tensors(odd: tuple[IntModel, np.ndarray]) -> None:
    model, _ = odd
    regions, peak = allocate(model)
    assert regions["input"].base == 0
    assert regions["flatten"].base == regions["relu"].base  # Flatten aliases its input
    for layer in model.layers:  # no layer writes over what it reads
        out = regions[layer.name]
        for name in layer.inputs:
            src = regions[name]
            if layer.kind != "flatten":
                assert out.base >= src.base + src.size or src.base >= out.base + out.size
    assert peak < sum(r.size for n, r in regions.items() if n != "flatten")


def test_weight_words_pack_lanes(odd: tuple[IntModel, np.ndarray]) -> None:
    model, _ = odd
    program = compile_program(model, fit_config(model, rows=2, cols=4))
    conv = model.weight_layers()[0]
    b = conv.bits
    word = program.weight_words[0]
    lanes = [(word >> (c * b)) & ((1 << b) - 1) for c in range(4)]
    assert lanes == [int(v) for v in conv.codes.reshape(5, -1)[:4, 0]]
    # 5 channels on 4 columns: the second tile's lanes 1..3 hold the zero code.
    second = program.weight_words[conv.codes[0].size]
    assert [(second >> (c * b)) & ((1 << b) - 1) for c in (1, 2, 3)] == [1 << (b - 1)] * 3


def _fitted(model: IntModel, **changes: object) -> ArrayConfig:
    return dataclasses.replace(fit_config(model, rows=2, cols=2), **changes)  # type: ignore[arg-type]


def test_errors_before_any_rtl(odd: tuple[IntModel, np.ndarray]) -> None:
    model, _ = odd
    fitted = fit_config(model, rows=2, cols=2)
    compile_program(model, fitted)  # fits
    # A package whose worst case needs a wider accumulator than the array has.
    fc = model.weight_layers()[-1]
    wide = dataclasses.replace(fc, acc_bits=fitted.acc_bits + 1)
    wider = IntModel(tuple(wide if layer is fc else layer for layer in model.layers), "fc")
    with pytest.raises(ProgramError, match=f"accumulator too narrow.*needs {fitted.acc_bits + 1}"):
        compile_program(wider, fitted)
    cases = {
        "activation memory is too small": {"act_depth": 8},
        "weight memory is too small": {"weight_depth": 4},
        "bias memory is too small": {"bias_depth": 2},
        "program memory is too small": {"program_depth": 2},
        "activation words": {"act_bits": 8, "acc_bits": 40},
        "weight codes": {"weight_bits": 4},
    }
    for message, changes in cases.items():
        with pytest.raises(ProgramError, match=message):
            compile_program(model, _fitted(model, **changes))
    assert issubclass(ProgramError, RTLError)


def test_layer_the_controller_cannot_run(odd: tuple[IntModel, np.ndarray]) -> None:
    model, _ = odd

    @dataclasses.dataclass(frozen=True, eq=False)
    class Softmax(Layer):
        kind = "softmax"

    layers = (*model.layers, Softmax("softmax", (model.output,), (3,), model.layers[-1].out))
    strange = IntModel(layers, "softmax")
    with pytest.raises(ProgramError, match=r"'softmax' \(softmax\) cannot run on the PE array"):
        compile_program(strange, fit_config(model, rows=2, cols=2))


def test_left_shift_and_twin_without_baseline(odd: tuple[IntModel, np.ndarray]) -> None:
    model, _ = odd
    fc = model.weight_layers()[-1]
    left = dataclasses.replace(fc, shift=-3)
    shifted = IntModel(tuple(left if layer is fc else layer for layer in model.layers), "fc")
    with pytest.raises(ProgramError, match="left shift 3 exceeds"):
        compile_program(shifted, _fitted(model, max_lshift=2))
    bare = [
        dataclasses.replace(
            layer,
            baseline_weights=None,
            baseline_bias=None,
            baseline_exp=None,
            baseline_shift=None,
            baseline_acc_bits=None,
        )
        if layer in model.weight_layers()
        else layer
        for layer in model.layers
    ]
    with pytest.raises(ProgramError, match="uniform baseline"):
        fit_config(IntModel(tuple(bare), model.output), rows=2, cols=2, pe="mult")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="Array rows must be an integer from 1 to 64, not 0"):
        ArrayConfig(rows=0, cols=1)
    with pytest.raises(ValueError, match="PE kind"):
        ArrayConfig(rows=1, cols=1, pe="float")
    with pytest.raises(ValueError, match="Accumulator width"):
        ArrayConfig(rows=1, cols=1, act_bits=9, weight_bits=5, acc_bits=10)
