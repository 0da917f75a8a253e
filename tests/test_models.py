"""The model zoo: shapes, registry, argument checks, determinism and hardware-friendly layers."""

import json
import time

import pytest
import torch
from torch import nn

from inq_hw.errors import ConfigError
from inq_hw.models import (
    BasicBlock,
    ResidualAdd,
    build_model,
    count_quantizable,
    model_names,
    register_model,
)

# (name, in_channels, num_classes, input_size, kwargs)
ZOO = [
    ("digits-cnn", 1, 10, 8, {}),
    ("digits-cnn", 3, 5, 12, {"channels": [4, 8, 8]}),
    ("lenet5", 1, 10, 28, {}),
    ("lenet5", 1, 10, 32, {}),
    ("resnet", 3, 10, 32, {}),
    ("resnet", 3, 7, 16, {"widths": [8, 16], "blocks": [2, 1]}),
    ("resnet8", 3, 10, 32, {}),
]

RESNET18_SHAPE = {"widths": [64, 128, 256, 512], "blocks": [2, 2, 2, 2]}

# Modules that are containers only; every other module must be a hardware-friendly layer.
CONTAINERS = (nn.Sequential, BasicBlock)


def _hardware_violations(model: nn.Module) -> list[str]:
    """Names of modules the integer hardware cannot implement (empty if all is well)."""
    bad = []
    previous: nn.Module | None = None
    for name, module in model.named_modules():
        if isinstance(module, CONTAINERS):
            continue
        ok = False
        if isinstance(module, nn.Conv2d):
            ok = module.dilation == (1, 1) and module.groups == 1
        elif isinstance(module, nn.AvgPool2d):
            k = module.kernel_size
            kh, kw = (k, k) if isinstance(k, int) else k
            ok = (kh * kw) & (kh * kw - 1) == 0 and module.padding == 0
        elif isinstance(module, nn.BatchNorm2d):
            # Registration order follows the forward order in every zoo model.
            ok = isinstance(previous, nn.Conv2d)
        else:
            ok = type(module) in (nn.Linear, nn.ReLU, nn.MaxPool2d, nn.Flatten, ResidualAdd)
        if not ok:
            bad.append(name)
        previous = module
    return bad


def _build(name, in_channels, num_classes, input_size, kwargs, seed=0):
    torch.manual_seed(seed)
    return build_model(
        name,
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=input_size,
        **kwargs,
    )


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "cin", "classes", "size", "kwargs"), ZOO)
def test_forward_shape(name, cin, classes, size, kwargs):
    model = _build(name, cin, classes, size, kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(3, cin, size, size))
    assert out.shape == (3, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "cin", "classes", "size", "kwargs"), ZOO)
def test_only_hardware_friendly_layers(name, cin, classes, size, kwargs):
    assert _hardware_violations(_build(name, cin, classes, size, kwargs)) == []


@pytest.mark.parametrize(
    "bad_layer",
    [
        nn.AdaptiveAvgPool2d(1),
        nn.AvgPool2d(3),
        nn.Conv2d(4, 4, 3, dilation=2),
        nn.Conv2d(4, 4, 3, groups=2),
        nn.Sigmoid(),
    ],
)
def test_hardware_check_catches_bad_layers(bad_layer):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), bad_layer)
    assert _hardware_violations(model) == ["1"]
    assert _hardware_violations(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4))) == ["1"]


@pytest.mark.parametrize(("name", "cin", "classes", "size", "kwargs"), ZOO)
def test_seeded_construction_is_deterministic(name, cin, classes, size, kwargs):
    first = _build(name, cin, classes, size, kwargs, seed=1).state_dict()
    second = _build(name, cin, classes, size, kwargs, seed=1).state_dict()
    other = _build(name, cin, classes, size, kwargs, seed=2).state_dict()
    assert first.keys() == second.keys() == other.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize(("name", "cin", "classes", "size", "kwargs"), ZOO)
def test_rebuild_from_json_kwargs(name, cin, classes, size, kwargs):
    stored = json.loads(json.dumps({"name": name, "kwargs": kwargs}))
    saved = _build(name, cin, classes, size, kwargs, seed=3).state_dict()
    rebuilt = _build(stored["name"], cin, classes, size, stored["kwargs"], seed=4)
    rebuilt.load_state_dict(saved)  # strict: same keys and shapes


def test_tuples_and_lists_build_the_same_model():
    as_list = _build("resnet", 3, 10, 32, {"widths": [8, 16], "blocks": [1, 2]})
    as_tuple = _build("resnet", 3, 10, 32, {"widths": (8, 16), "blocks": (1, 2)})
    assert str(as_list) == str(as_tuple)


def test_registry_lists_the_zoo():
    names = model_names()
    assert names == sorted(names)
    assert {"digits-cnn", "lenet5", "resnet", "resnet8"} <= set(names)


def test_register_twice_is_refused():
    with pytest.raises(ConfigError, match="digits-cnn"):
        register_model("digits-cnn")(lambda **kwargs: nn.Identity())


@pytest.mark.parametrize(
    ("name", "size", "kwargs", "match"),
    [
        ("no-such-net", 8, {}, "no-such-net"),
        ("digits-cnn", 8, {"widths": [1, 2, 3]}, "widths"),
        ("digits-cnn", 3, {}, "at least 4, not 3"),
        ("digits-cnn", 8, {"channels": [16, 32]}, r"\[16, 32\]"),
        ("digits-cnn", 8, {"channels": "16"}, "'16'"),
        ("digits-cnn", 8, {"channels": 16}, "not 16"),
        ("digits-cnn", 8, {"channels": [16, 32.0, 32]}, r"channels\[1\].*32\.0"),
        ("digits-cnn", 8, {"channels": [16, 0, 32]}, r"channels\[1\].*not 0"),
        ("digits-cnn", 8.0, {}, "input_size.*8.0"),
        ("lenet5", 12, {}, "not 12"),
        ("resnet", 28, {}, "7x7.*not 28"),
        ("resnet", 24, {}, "6x6.*not 24"),
        ("resnet", 32, {"widths": [8, 16], "blocks": [1]}, r"blocks.*\[1\]"),
        ("resnet", 32, {"widths": [], "blocks": []}, r"\[\]"),
        ("resnet", 32, {"blocks": [1, True, 1]}, r"blocks\[1\].*True"),
        ("resnet8", 32, {"widths": [8, 16, 32]}, "widths"),
    ],
)
def test_bad_arguments_raise_config_error(name, size, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _build(name, 1, 10, size, kwargs)


@pytest.mark.parametrize(
    ("cin", "classes", "match"),
    [(0, 10, "in_channels.*not 0"), (True, 10, "in_channels.*True"), (1, -1, "num_classes")],
)
def test_bad_io_arguments_raise_config_error(cin, classes, match):
    for name in model_names():
        with pytest.raises(ConfigError, match=match):
            _build(name, cin, classes, 32, {})


def test_digits_cnn_size():
    # 3x3 convs 1→16→32→32 and a 32·2·2 → 10 classifier: small enough to unroll.
    model = _build("digits-cnn", 1, 10, 8, {})
    assert count_quantizable(model) == 9 * (16 + 16 * 32 + 32 * 32) + 128 * 10 == 15_248
    assert _n_params(model) == 15_248 + 16 + 32 + 32 + 10
    assert dict(model.named_modules())["classifier.fc"].in_features == 128


def test_lenet5_size():
    model = _build("lenet5", 1, 10, 28, {})
    assert _n_params(model) == 44_426  # LeNet-5 on 28x28 without padding: 16·4·4 → 120
    assert dict(model.named_modules())["classifier.fc1"].in_features == 256


def test_resnet8_structure():
    model = _build("resnet8", 3, 10, 32, {})
    modules = dict(model.named_modules())
    assert sum(isinstance(m, ResidualAdd) for m in modules.values()) == 3
    assert modules["stage1.block1"].shortcut is None
    assert modules["stage2.block1.shortcut.conv"].stride == (2, 2)
    assert modules["head.pool"].kernel_size == 8
    convs = [m for m in modules.values() if isinstance(m, nn.Conv2d)]
    assert all(m.bias is None for m in convs)  # every conv feeds a BatchNorm
    assert _n_params(model) == 78_042


def test_resnet18_shape_parameter_count_and_build_time():
    start = time.perf_counter()
    model = _build("resnet", 3, 1000, 32, RESNET18_SHAPE)
    elapsed = time.perf_counter() - start
    # torchvision's ResNet-18 has 11,689,512; ours has a 3x3 stem instead of a 7x7 one.
    assert 11_000_000 <= _n_params(model) <= 12_000_000
    assert elapsed < 3.0
    assert dict(model.named_modules())["head.pool"].kernel_size == 4


def test_count_quantizable_counts_only_conv_and_linear_weights():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 5))
    assert count_quantizable(model) == 2 * 3 * 9 + 12 * 5


def test_residual_add_adds():
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(ResidualAdd()(a, b), a + b)
