"""INQ core: schedules, partitions, and frozen weights that no optimizer can move."""

import copy
from typing import TypeVar

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from inq_hw.errors import ConfigError, ModelError
from inq_hw.fold import fold_batchnorm
from inq_hw.inq import (
    IncrementalQuantizer,
    INQConfig,
    one_shot_quantize,
    parse_schedule,
    partition_by_magnitude,
    partition_random,
    portion_count,
)
from inq_hw.inq.partition import step_generator
from inq_hw.models import build_model
from inq_hw.quant import is_po2_grid, quantize_po2


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    )


_M = TypeVar("_M", bound=nn.Module)


def _layer(model: nn.Module, index: int, kind: type[_M]) -> _M:
    """``model[index]``, narrowed to ``kind`` for the type checker."""
    layer = model.get_submodule(str(index))
    assert isinstance(layer, kind)
    return layer


# --- schedules ---------------------------------------------------------------------------


def test_schedule_parsing() -> None:
    assert parse_schedule("0.5,0.75,0.875,1") == (0.5, 0.75, 0.875, 1.0)
    assert parse_schedule("default") == (0.5, 0.75, 0.875, 1.0)
    assert parse_schedule("paper2")[-2:] == (0.975, 1.0)
    assert parse_schedule("auto", bits=3) == parse_schedule("paper3")
    assert parse_schedule("auto", bits=6) == parse_schedule("default")
    assert parse_schedule([1.0]) == (1.0,)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0.5,0.5,1", "strictly increasing"),
        ("0.75,0.5,1", "strictly increasing"),
        ("0.5,0.9", "end at 1.0"),
        ("0,0.5,1", r"lie in \(0, 1\]"),
        ("0.5,1.5", r"lie in \(0, 1\]"),
        ("a,b", "must be a name"),
        ("nan,1", r"lie in \(0, 1\]"),
        ("", "must be a name"),
        ([], "at least one portion"),
    ],
)
def test_bad_schedules(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_schedule(spec)  # type: ignore[arg-type]


# --- partitions --------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 0.5, -0.5, 1.0, 0.25, -2.0, 3.0]), min_size=1, max_size=60),
    st.lists(st.floats(0.05, 1.0), min_size=1, max_size=5),
)
def test_magnitude_partition_exact_counts_with_ties_and_zeros(
    values: list[float], portions: list[float]
) -> None:
    w = torch.tensor(values)
    frozen = torch.zeros_like(w, dtype=torch.bool)
    for portion in sorted(portions):
        count = portion_count(w.numel(), portion)
        count = max(count, int(frozen.sum()))
        new = partition_by_magnitude(w, frozen, count)
        assert int(new.sum()) == count
        assert bool((new | ~frozen).all())  # nothing frozen is ever freed
        newly = new & ~frozen
        still_free = ~new
        if bool(newly.any()) and bool(still_free.any()):
            assert float(w[newly].abs().min()) >= float(w[still_free].abs().max())
        frozen = new


def test_magnitude_partition_ignores_frozen_zeros() -> None:
    # A quantile over all weights would be dragged to 0 by frozen zeros; rank among free.
    w = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4])
    frozen = torch.tensor([True] * 4 + [False] * 4)
    new = partition_by_magnitude(w, frozen, 6)
    assert new.tolist() == [True] * 4 + [False, False, True, True]


def test_ties_go_to_lower_index_deterministically() -> None:
    w = torch.ones(10)
    new = partition_by_magnitude(w, torch.zeros(10, dtype=torch.bool), 3)
    assert new.tolist() == [True] * 3 + [False] * 7


def test_random_partition_seeded_and_never_unfreezes() -> None:
    frozen = torch.zeros(1000, dtype=torch.bool)
    a = partition_random(torch.zeros(1000), frozen, 300, step_generator(1, "conv", 0))
    b = partition_random(torch.zeros(1000), frozen, 300, step_generator(1, "conv", 0))
    c = partition_random(torch.zeros(1000), frozen, 300, step_generator(2, "conv", 0))
    assert torch.equal(a, b) and not torch.equal(a, c) and int(a.sum()) == 300
    d = partition_random(torch.zeros(1000), a, 700, step_generator(1, "conv", 1))
    assert int(d.sum()) == 700 and bool((d | ~a).all())


def test_partition_rejects_impossible_counts() -> None:
    frozen = torch.tensor([True, True, False])
    with pytest.raises(ConfigError, match="Frozen count"):
        partition_by_magnitude(torch.ones(3), frozen, 1)
    with pytest.raises(ConfigError, match="Frozen count"):
        partition_by_magnitude(torch.ones(3), frozen, 4)


def test_portion_count() -> None:
    assert portion_count(9, 0.5) == 5
    assert portion_count(9, 1.0) == 9
    assert portion_count(8, 0.875) == 7
    assert portion_count(0, 0.5) == 0


# --- the quantizer -----------------------------------------------------------------------


def test_steps_reach_every_portion_and_end_on_the_grid() -> None:
    model = small_net()
    inq = IncrementalQuantizer(model, INQConfig(bits=4, schedule=(0.3, 0.6, 1.0)))
    for portion in (0.3, 0.6, 1.0):
        assert inq.advance() == portion
        for layer in inq.layers:
            assert int(layer.frozen.sum()) == portion_count(layer.frozen.numel(), portion)
        assert inq.check()
    assert inq.done
    for layer in inq.layers:
        assert is_po2_grid(layer.weight.detach(), 4, layer.n1)
    with pytest.raises(ConfigError, match="already finished"):
        inq.advance()


def test_n1_fixed_from_weights_before_inq() -> None:
    model = small_net()
    inq = IncrementalQuantizer(model, INQConfig(bits=5))
    first = [layer.n1 for layer in inq.layers]
    with torch.no_grad():
        for layer in inq.layers:
            layer.weight.mul_(8.0)  # re-training that grows weights must not move n1
    inq.advance()
    assert [layer.n1 for layer in inq.layers] == first
    for layer in inq.layers:
        frozen = layer.weight.detach()[layer.frozen]
        assert float(frozen.abs().max()) == 2.0**layer.n1  # clipped, not zeroed


def test_only_conv_and_linear_weights_are_quantized() -> None:
    model = small_net()
    bn_before = copy.deepcopy(model[1].state_dict())
    bias = _layer(model, 0, nn.Conv2d).bias
    assert bias is not None
    bias_before = bias.detach().clone()
    inq = IncrementalQuantizer(model, INQConfig(bits=3, schedule=(1.0,)))
    inq.advance()
    assert [layer.name for layer in inq.layers] == ["0", "4"]
    for key, value in model[1].state_dict().items():
        assert torch.equal(value, bn_before[key]), key
    bias_after = _layer(model, 0, nn.Conv2d).bias
    assert bias_after is not None
    assert torch.equal(bias_after.detach(), bias_before)


def test_skip_patterns() -> None:
    inq = IncrementalQuantizer(small_net(), INQConfig(bits=5, skip=("4",)))
    assert [layer.name for layer in inq.layers] == ["0"]
    with pytest.raises(ModelError, match="no Conv2d or Linear"):
        IncrementalQuantizer(small_net(), INQConfig(bits=5, skip=("*",)))


def test_model_without_quantizable_layers() -> None:
    with pytest.raises(ModelError, match="no Conv2d or Linear"):
        IncrementalQuantizer(nn.Sequential(nn.ReLU(), nn.Flatten()), INQConfig())


def test_non_finite_weights_are_rejected() -> None:
    model = small_net()
    with torch.no_grad():
        _layer(model, 0, nn.Conv2d).weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ConfigError, match="Layer '0' has NaN or Inf"):
        IncrementalQuantizer(model, INQConfig())


def test_all_zero_layer_quantizes_to_zero_codes() -> None:
    model = small_net()
    with torch.no_grad():
        _layer(model, 0, nn.Conv2d).weight.zero_()
    inq = IncrementalQuantizer(model, INQConfig(bits=4, schedule=(0.5, 1.0)))
    inq.advance()
    assert bool(inq.layers[0].frozen.all())  # frozen whole at once: no scale to re-train to
    inq.advance()
    assert torch.equal(
        _layer(model, 0, nn.Conv2d).weight.detach(),
        torch.zeros_like(_layer(model, 0, nn.Conv2d).weight),
    )
    assert inq.check()


@pytest.mark.parametrize(
    ("optimizer_name", "make"),
    [
        ("sgd", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4)),
        (
            "sgd-nesterov",
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
        ),
        ("adam", lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=5e-4)),
        ("adamw", lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    ],
)
def test_frozen_weights_never_move(optimizer_name: str, make: object) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    optimizer = make(model.parameters())  # type: ignore[operator]
    # Build momentum / Adam state on every weight before anything freezes.
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 1, 8, 8)).pow(2).mean().backward()
        optimizer.step()
    inq = IncrementalQuantizer(model, INQConfig(bits=4, schedule=(0.5, 1.0)))
    handle = inq.attach(optimizer)
    inq.advance()
    frozen_values = [layer.weight.detach()[layer.frozen].clone() for layer in inq.layers]
    free_before = [layer.weight.detach()[~layer.frozen].clone() for layer in inq.layers]
    for _ in range(20):
        optimizer.zero_grad()
        model(torch.randn(8, 1, 8, 8)).pow(2).mean().backward()
        optimizer.step()
        for layer, values in zip(inq.layers, frozen_values, strict=True):
            assert torch.equal(layer.weight.detach()[layer.frozen], values), optimizer_name
    for layer, before in zip(inq.layers, free_before, strict=True):
        assert not torch.equal(layer.weight.detach()[~layer.frozen], before)  # free ones train
        for value in optimizer.state[layer.weight].values():
            if isinstance(value, torch.Tensor) and value.shape == layer.weight.shape:
                # no momentum / moment builds up on frozen weights
                assert float(value[layer.frozen].abs().max()) == 0.0
    handle.remove()
    assert inq.check()


def test_freezing_is_needed() -> None:
    """Counter-test: without the hooks the same optimizer moves frozen weights."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    inq = IncrementalQuantizer(model, INQConfig(bits=4, schedule=(0.5, 1.0)))
    inq.advance()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    optimizer.zero_grad()
    model(torch.randn(4, 1, 4, 4)).sum().backward()
    optimizer.step()
    assert not inq.check()


def test_state_dict_round_trip() -> None:
    model = small_net()
    config = INQConfig(bits=3, schedule=(0.5, 0.75, 1.0), partition="random", seed=3)
    inq = IncrementalQuantizer(model, config)
    inq.advance()
    inq.advance()
    restored_model = small_net()
    restored = IncrementalQuantizer(restored_model, config)
    restored_model.load_state_dict(model.state_dict())
    restored.load_state_dict(inq.state_dict())
    assert restored.step == 2
    for a, b in zip(inq.layers, restored.layers, strict=True):
        assert torch.equal(a.frozen, b.frozen) and a.n1 == b.n1
    inq.advance()
    restored.advance()
    assert all(
        torch.equal(a.weight, b.weight) for a, b in zip(inq.layers, restored.layers, strict=True)
    )
    with pytest.raises(ConfigError, match="different config"):
        IncrementalQuantizer(small_net(), INQConfig(bits=4)).load_state_dict(inq.state_dict())


def test_config_validation_and_round_trip() -> None:
    config = INQConfig(bits=3, schedule=(0.2, 1.0), partition="random", seed=5, skip=("fc",))
    assert INQConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="Bit-width"):
        INQConfig(bits=9)
    with pytest.raises(ConfigError, match="Partition"):
        INQConfig(partition="largest")
    with pytest.raises(ConfigError, match="Unknown INQ config keys"):
        INQConfig.from_dict({"bits": 4, "colour": "red"})


def test_one_shot_quantize_leaves_the_original() -> None:
    model = small_net()
    before = copy.deepcopy(model.state_dict())
    quantized = one_shot_quantize(model, 4)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(
        _layer(quantized, 0, nn.Conv2d).weight, quantize_po2(_layer(model, 0, nn.Conv2d).weight, 4)
    )


def test_resnet18_shaped_model_built_in_code() -> None:
    model = build_model(
        "resnet",
        in_channels=3,
        num_classes=1000,
        input_size=32,
        widths=[64, 128, 256, 512],
        blocks=[2, 2, 2, 2],
    )
    fold_batchnorm(model)
    inq = IncrementalQuantizer(model, INQConfig(bits=5))
    assert len(inq.layers) == 21  # 17 3x3 convs + 3 projections + fc
    inq.advance()
    assert sum(int(layer.frozen.sum()) for layer in inq.layers) == sum(
        portion_count(layer.frozen.numel(), 0.5) for layer in inq.layers
    )
    assert inq.check()


def test_diverged_step_is_detected() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    inq = IncrementalQuantizer(model, INQConfig(bits=4, schedule=(0.5, 1.0)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    inq.attach(optimizer)
    inq.advance()
    assert inq.check()
    optimizer.zero_grad()
    model(torch.randn(4, 1, 4, 4)).sum().backward()
    grad = _layer(model, 1, nn.Linear).weight.grad
    assert grad is not None
    grad.fill_(float("nan"))
    optimizer.step()
    assert not inq.check()


def test_mask_gradients_for_hand_written_updates() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    inq = IncrementalQuantizer(model, INQConfig(bits=4, schedule=(0.5, 1.0)))
    inq.advance()
    model(torch.randn(4, 1, 4, 4)).sum().backward()
    inq.mask_gradients()
    layer = inq.layers[0]
    assert float(layer.weight.grad[layer.frozen].abs().max()) == 0.0  # type: ignore[index]
    assert float(layer.weight.grad[~layer.frozen].abs().max()) > 0.0  # type: ignore[index]
