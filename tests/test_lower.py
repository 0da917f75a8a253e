"""Lowering: the integer model tracks the float one, exact formats and widths, errors."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from inq_hw.checkpoint import file_sha256, load_checkpoint
from inq_hw.driver import load_model, run_inq
from inq_hw.errors import CheckpointError, ConfigError, ModelError
from inq_hw.fold import fold_batchnorm
from inq_hw.inq import IncrementalQuantizer, INQConfig
from inq_hw.intmodel import (
    AddLayer,
    AvgPoolLayer,
    IntModel,
    Layer,
    ReLULayer,
    WeightLayer,
    predict,
    quantize_input,
    run,
)
from inq_hw.lower import CalibrationConfig, lower_checkpoint, lower_model
from inq_hw.models import ResidualAdd, build_model
from inq_hw.train import TrainConfig
from tests.conftest import TINY_TRAIN

BITS = (2, 3, 4, 5)
# The FP32 source is conftest's session checkpoint, trained once: 10 epochs of batch 32 (a
# model near chance, e.g. 3 epochs of batch 128, would make agreement with it say little).
INQ_TRAIN = TrainConfig(epochs=2, lr=0.01, batch_size=32)


@pytest.fixture(scope="module")
def trained_fp32(tiny_fp32: Path) -> Path:
    assert TrainConfig(epochs=10, lr=0.05, batch_size=32) == TINY_TRAIN
    return tiny_fp32


@pytest.fixture(scope="module")
def inq_checkpoints(
    trained_fp32: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, Path]:
    out = tmp_path_factory.mktemp("inq")
    return {
        bits: Path(
            run_inq(
                trained_fp32,
                INQConfig(bits=bits, schedule=(0.5, 1.0)),
                INQ_TRAIN,
                out / f"inq{bits}.pt",
            )["out"]
        )
        for bits in BITS
    }


def _on_grid(model: nn.Module, bits: int = 4) -> dict[str, int]:
    """Put every weight on its power-of-two grid in one INQ step; n1 per layer."""
    inq = IncrementalQuantizer(model, INQConfig(bits=bits, schedule=(1.0,)))
    inq.advance()
    return {layer.name: layer.n1 for layer in inq.layers}


def _zoo(name: str, channels: int, size: int) -> tuple[nn.Module, dict[str, int], torch.Tensor]:
    """A zoo model with BatchNorm statistics far from identity, folded, weights on grid."""
    torch.manual_seed(0)
    model = build_model(name, in_channels=channels, num_classes=10, input_size=size)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    fold_batchnorm(model)
    n1 = _on_grid(model)
    return model.eval(), n1, torch.rand(64, channels, size, size)


def _float_outputs(model: nn.Module, x: torch.Tensor, int_model: IntModel) -> dict[str, np.ndarray]:
    """Float value of every integer layer: its module's output, ReLU applied where fused."""
    found: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, n=name: found.__setitem__(n, out))
        for name, module in model.named_modules()
        if name
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    result = {"input": x.numpy()}
    for layer in int_model.layers[1:]:
        value = found[layer.name]
        result[layer.name] = (
            value.clamp(min=0) if getattr(layer, "relu", False) else value
        ).numpy()
    return result


def _relative_errors(model: nn.Module, x: torch.Tensor, int_model: IntModel) -> dict[str, float]:
    """Per layer: ‖dequantized integer output − float output‖ / ‖float output‖."""
    ints = run(int_model, quantize_input(x.numpy(), int_model.input.out), trace=True)
    assert isinstance(ints, dict)
    floats = _float_outputs(model, x, int_model)
    return {
        layer.name: float(
            np.linalg.norm(ints[layer.name] * 2.0**-layer.out.frac - floats[layer.name])
            / np.linalg.norm(floats[layer.name])
        )
        for layer in int_model.layers
    }


# --- the integer model tracks the float model ---------------------------------------------


@pytest.mark.parametrize("bits", BITS)
def test_digits_checkpoint_agrees_with_float(bits: int, inq_checkpoints: dict[int, Path]) -> None:
    path = inq_checkpoints[bits]
    int_model = lower_checkpoint(path)
    model, data = load_model(load_checkpoint(path, kinds=("inq",)))
    with torch.no_grad():
        float_logits = model.eval()(data.test.x).numpy()
    int_logits = run(int_model, quantize_input(data.test.x.numpy(), int_model.input.out))
    assert isinstance(int_logits, np.ndarray)
    classes = predict(int_model, quantize_input(data.test.x.numpy(), int_model.input.out))
    agreement = float((classes == float_logits.argmax(axis=1)).mean())
    float_accuracy = float((float_logits.argmax(axis=1) == data.test.y.numpy()).mean())
    int_accuracy = float((classes == data.test.y.numpy()).mean())
    print(
        f"\n{bits}-bit digits-cnn: integer/float agreement {agreement:.4f}, "
        f"accuracy float {float_accuracy:.4f} integer {int_accuracy:.4f}"
    )
    assert agreement >= 0.95
    if bits == 5:
        assert float_accuracy > 0.9  # a trained model, else agreement means little
    dequantized = int_logits * 2.0 ** -int_model.layer(int_model.output).out.frac
    np.testing.assert_allclose(dequantized, float_logits, atol=0.05 * np.abs(float_logits).max())
    assert np.corrcoef(dequantized.ravel(), float_logits.ravel())[0, 1] > 0.999


def test_checkpoint_provenance(inq_checkpoints: dict[int, Path]) -> None:
    path = inq_checkpoints[4]
    config = CalibrationConfig(samples=100, method="percentile", a_bits=10)
    meta = lower_checkpoint(path, config).meta
    payload = load_checkpoint(path)
    assert meta["source"] == {"path": str(path), "sha256": file_sha256(path)}
    assert meta["model"] == payload["model"] and meta["dataset"] == payload["dataset"]
    assert meta["bits"] == 4 and meta["calibration"] == config.to_dict()
    assert meta["float_accuracy"] == payload["metrics"]["accuracy"]


@pytest.mark.parametrize(
    ("name", "channels", "size"),
    [
        ("digits-cnn", 1, 8),
        ("lenet5", 1, 28),
        # the whole ResNet-8 is integration; test_lower_ops lowers its add and pooling fast
        pytest.param("resnet8", 3, 32, marks=pytest.mark.integration),
    ],
)
def test_every_layer_tracks_its_float_node(name: str, channels: int, size: int) -> None:
    model, n1, x = _zoo(name, channels, size)
    int_model = lower_model(model, x, bits=4, n1=n1)
    errors = _relative_errors(model, x, int_model)
    assert max(errors.values()) < 0.05, errors
    # More activation bits, closer tracking: the error is quantization, not a bug.
    finer = _relative_errors(model, x, lower_model(model, x, bits=4, n1=n1, config=_bits(12)))
    assert max(finer.values()) < max(errors.values()) / 4, finer
    if name == "resnet8":
        kinds = {type(layer) for layer in int_model.layers}
        assert AddLayer in kinds and AvgPoolLayer in kinds and ReLULayer not in kinds


def _bits(a_bits: int) -> CalibrationConfig:
    return CalibrationConfig(a_bits=a_bits)


# --- structure ------------------------------------------------------------------------------


def _source(int_model: IntModel, layer: Layer, index: int = 0) -> Layer:
    return int_model.layer(layer.inputs[index])


def test_digits_structure_and_shifts(inq_checkpoints: dict[int, Path]) -> None:
    int_model = lower_checkpoint(inq_checkpoints[3])
    assert [layer.kind for layer in int_model.layers] == [
        "input",
        "conv2d",
        "conv2d",
        "maxpool",
        "conv2d",
        "maxpool",
        "flatten",
        "linear",
    ]
    assert int_model.output == "classifier.fc"
    assert not int_model.input.out.signed  # images in [0, 1]
    for wlayer in int_model.weight_layers():
        assert wlayer.relu == (wlayer.kind == "conv2d")  # conv+ReLU fused, the logits signed
        assert wlayer.out.signed == (not wlayer.relu)
        assert wlayer.shift == _source(int_model, wlayer).out.frac - wlayer.n2 - wlayer.out.frac
        assert wlayer.n2 == wlayer.n1 + 1 - 2 ** (3 - 2)
    for layer in int_model.layers:
        if layer.kind in ("maxpool", "flatten"):
            assert layer.out == _source(int_model, layer).out


def _worst_accumulator(int_model: IntModel, layer: Layer) -> int:
    """|bias| + Σ|w_int|·max|x_int| per output, in Python integers, maximised."""
    if isinstance(layer, AddLayer):
        operands = [_source(int_model, layer, i).out.max_abs for i in range(2)]
        return sum(m << a for m, a in zip(operands, layer.align, strict=True))
    assert isinstance(layer, WeightLayer)
    x_max = _source(int_model, layer).out.max_abs
    weights = layer.weights_int().reshape(layer.codes.shape[0], -1).tolist()
    worst = 0
    for row, bias in zip(weights, layer.bias.tolist(), strict=True):
        total = abs(bias)
        for w in row:
            total += abs(w) * x_max
        worst = max(worst, total)
    return worst


@pytest.mark.parametrize(("name", "channels", "size"), [("digits-cnn", 1, 8), ("resnet8", 3, 32)])
def test_accumulator_widths_are_the_worst_case(name: str, channels: int, size: int) -> None:
    model, n1, x = _zoo(name, channels, size)
    int_model = lower_model(model, x, bits=5, n1=n1)
    checked = 0
    for layer in int_model.layers:
        if isinstance(layer, WeightLayer | AddLayer):
            worst = _worst_accumulator(int_model, layer)
            # The smallest two's-complement width holding ±worst.
            assert 2 ** (layer.acc_bits - 2) <= worst < 2 ** (layer.acc_bits - 1), layer.name
            checked += 1
    assert checked == (4 if name == "digits-cnn" else 13)


def test_bias_is_rounded_half_up_at_accumulator_scale() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5))
    n1 = _on_grid(model)
    x = torch.rand(16, 4)
    first = lower_model(model, x, bits=4, n1=n1)
    layer = first.layer("1")
    assert isinstance(layer, WeightLayer)
    # Bias units are 2**(n2 - frac_in); the bias does not change either exponent.
    unit = 2.0 ** (layer.n2 - first.input.out.frac)
    in_units = [2.5, -2.5, 0.5, -0.5, 1 / 3]
    with torch.no_grad():
        linear = model[1]
        assert isinstance(linear, nn.Linear)
        linear.bias.copy_(torch.tensor(in_units, dtype=torch.float64) * unit)
    layer = lower_model(model, x, bits=4, n1=n1).layer("1")
    assert isinstance(layer, WeightLayer)
    assert layer.bias.tolist() == [3, -2, 1, 0, 0]  # ties go up, as in requantisation


class _TwoUsers(nn.Module):
    """Conv whose output feeds both a ReLU and the add: nothing fuses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.add = ResidualAdd()
        self.pool = nn.MaxPool2d(2)
        self.after_pool = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.after_pool(self.pool(self.add(self.relu(y), y)))


def test_relus_that_cannot_fuse_become_layers() -> None:
    torch.manual_seed(0)
    model = _TwoUsers()
    n1 = _on_grid(model)
    x = torch.rand(32, 2, 6, 6) - 0.5
    int_model = lower_model(model, x, bits=5, n1=n1)
    assert [layer.kind for layer in int_model.layers] == [
        "input",
        "conv2d",
        "relu",
        "add",
        "maxpool",
        "relu",
    ]
    assert int_model.input.out.signed  # the calibration data has negative values
    conv, relu, add = (int_model.layer(n) for n in ("conv", "relu", "add"))
    assert isinstance(conv, WeightLayer) and not conv.relu and conv.out.signed
    assert relu.out.frac == conv.out.frac and not relu.out.signed
    assert isinstance(add, AddLayer) and not add.relu and add.out.signed
    assert add.inputs == ("relu", "conv") and min(add.align) == 0
    assert add.shift == max(relu.out.frac, conv.out.frac) - add.out.frac
    assert max(_relative_errors(model, x, int_model).values()) < 0.05


# --- calibration ----------------------------------------------------------------------------


def _input_format(x: torch.Tensor, **config: Any) -> tuple[bool, int]:
    int_model = lower_model(
        nn.Sequential(nn.Flatten()), x, bits=4, n1={}, config=CalibrationConfig(**config)
    )
    return int_model.input.out.signed, int_model.input.out.frac


def test_input_format_is_exact_at_the_boundary() -> None:
    edge = torch.full((2, 3), 255 / 128)  # ·2**7 is exactly 255, the unsigned maximum
    assert _input_format(edge) == (False, 7)
    assert _input_format(edge.nextafter(torch.tensor(9.0))) == (False, 6)
    signed = torch.cat([edge, -edge])  # 127.5 > 127 at frac 6
    assert _input_format(signed) == (True, 5)
    assert _input_format(torch.zeros(2, 3)) == (False, 0)
    assert _input_format(torch.full((2, 3), 1000.0), a_bits=4) == (False, -7)


def test_percentile_ignores_outliers() -> None:
    x = torch.rand(1000, 10, generator=torch.Generator().manual_seed(0)) * 0.5
    x[0, 0] = 100.0
    assert _input_format(x)[1] == 1
    assert _input_format(x, method="percentile", percentile=99.0)[1] == 9
    assert _input_format(x, method="percentile", percentile=100.0)[1] == 1


def test_calibration_config_round_trip() -> None:
    config = CalibrationConfig(samples=64, method="percentile", percentile=99.9, a_bits=6)
    assert CalibrationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="Unknown"):
        CalibrationConfig.from_dict({"sample": 3})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"samples": 0},
        {"samples": 2.5},
        {"samples": True},
        {"method": "minmax"},
        {"percentile": 0},
        {"percentile": 100.5},
        {"percentile": "99"},
        {"a_bits": 3},
        {"a_bits": 17},
        {"version": 2},
    ],
)
def test_bad_calibration_config(kwargs: dict[str, object]) -> None:
    (value,) = kwargs.values()
    with pytest.raises(ConfigError, match=re.escape(f"not {value!r}") + "$"):
        CalibrationConfig(**kwargs)  # type: ignore[arg-type]


# --- errors ---------------------------------------------------------------------------------


def _digits() -> tuple[nn.Module, dict[str, int], torch.Tensor]:
    return _zoo("digits-cnn", 1, 8)


def test_weight_off_the_grid() -> None:
    model, n1, x = _digits()
    with torch.no_grad():
        conv2 = model.get_submodule("features.conv2")
        assert isinstance(conv2, nn.Conv2d)
        conv2.weight[0, 0, 0, 0] *= 1.01
    with pytest.raises(ModelError, match=r"'features\.conv2' is not fully quantized: 1 of"):
        lower_model(model, x, bits=4, n1=n1)


def test_weight_of_another_bit_width() -> None:
    model, n1, x = _digits()  # 4-bit weights read as 2-bit codes: most are off that grid
    with pytest.raises(ModelError, match="not fully quantized"):
        lower_model(model, x, bits=2, n1=n1)


def test_layer_skipped_by_inq() -> None:
    model, n1, x = _digits()
    del n1["classifier.fc"]
    with pytest.raises(ModelError, match=r"'classifier\.fc' has no n1"):
        lower_model(model, x, bits=4, n1=n1)


def _conv(**kwargs: object) -> nn.Conv2d:
    return nn.Conv2d(4, 4, 3, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: nn.Sequential(_conv(), nn.Sigmoid()), r"no multiplier-free .* '1' \(Sigmoid\)"),
        (lambda: nn.Sequential(_conv(padding_mode="reflect")), r"padding_mode"),
        (lambda: nn.Sequential(_conv(), nn.MaxPool2d(2, dilation=2)), r"'1' \(MaxPool2d\): pad"),
        (lambda: nn.Sequential(_conv(), nn.AvgPool2d(3, padding=1)), r"'1' \(AvgPool2d\): pad"),
        (lambda: nn.Sequential(_conv(), nn.BatchNorm2d(4)), r"'1' \(BatchNorm2d\)"),
        (lambda: nn.Sequential(_conv(), nn.Flatten(2)), r"'1' \(Flatten\): only"),
        (lambda: nn.Sequential(nn.Linear(8, 4)), r"'0' \(Linear\): needs a 1-D input"),
    ],
)
def test_unsupported_modules(make: Callable[[], nn.Module], match: str) -> None:
    torch.manual_seed(0)
    model = make()
    n1 = _on_grid(model)
    with pytest.raises(ModelError, match=match):
        lower_model(model, torch.rand(4, 4, 8, 8), bits=4, n1=n1)


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.act = nn.SiLU()
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(x) * self.act(x)
        return self.fc(torch.flatten(x, 1))


def test_every_unsupported_node_is_listed_at_once() -> None:
    model = _Functional()
    with pytest.raises(ModelError) as info:
        lower_model(model, torch.rand(4, 1, 4, 4), bits=4, n1=_on_grid(model))
    message = str(info.value)
    assert "\n" not in message and "3 node(s)" in message
    for part in ("'sigmoid' (call_function sigmoid)", "'act' (SiLU)", "'mul' (call_function mul)"):
        assert part in message


def test_module_called_twice() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.relu = nn.ReLU()
            self.pool = nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.pool(self.relu(x)))

    with pytest.raises(ModelError, match="'relu' is called more than once"):
        lower_model(Twice(), torch.rand(2, 1, 4, 4), bits=4, n1={})


def test_lower_checkpoint_needs_an_inq_checkpoint(trained_fp32: Path) -> None:
    with pytest.raises(CheckpointError, match="of kind 'fp32'"):
        lower_checkpoint(trained_fp32)
