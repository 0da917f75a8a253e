"""BatchNorm folding: numeric equivalence, structure, idempotence, errors, checkpoint round trip."""

import io

import pytest
import torch
from torch import nn

from inq_hw.errors import ModelError
from inq_hw.fold import fold_batchnorm, fold_mean_pools, has_batchnorm
from inq_hw.models import build_model, model_names

RESNET8 = {"in_channels": 3, "num_classes": 10, "input_size": 32}


def _randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm statistics and affine parameters far from the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=gen) * 0.5)


def _resnet8(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("resnet8", **RESNET8)
    _randomize_batchnorm(model, seed)
    return model


def _conv_bn_relu(*, bias: bool, affine: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.BatchNorm2d(8, affine=affine), nn.ReLU()
    )
    _randomize_batchnorm(model)
    return model


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    "make",
    [
        _resnet8,
        lambda: _conv_bn_relu(bias=False),
        lambda: _conv_bn_relu(bias=True),
        lambda: _conv_bn_relu(bias=False, affine=False),
    ],
    ids=["resnet8", "conv-bn-relu", "conv+bias-bn-relu", "conv-bn(no affine)-relu"],
)
def test_folding_preserves_eval_outputs(make):
    model = make().eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
        assert fold_batchnorm(model) is model
        after = model(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert not has_batchnorm(model)


def test_a_failing_check_would_notice_unfolded_statistics():
    # The equivalence test is only meaningful if BN statistics change the output.
    model = _conv_bn_relu(bias=False).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        folded_output = fold_batchnorm(_conv_bn_relu(bias=False).eval())(x)
        batchnorm = model[1]
        assert isinstance(batchnorm, nn.BatchNorm2d)
        batchnorm.reset_running_stats()
        with pytest.raises(AssertionError):
            torch.testing.assert_close(model(x), folded_output, atol=1e-5, rtol=1e-5)


def test_batchnorms_become_identities_and_convs_get_biases():
    model = _resnet8()
    bn_names = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    conv = model.get_submodule("stem.conv")
    weight = conv.weight
    fold_batchnorm(model)
    modules = dict(model.named_modules())
    assert len(bn_names) == 9
    assert all(type(modules[n]) is nn.Identity for n in bn_names)
    assert all(m.bias is not None for m in modules.values() if isinstance(m, nn.Conv2d))
    assert conv.weight is weight  # updated in place, so references stay valid
    assert conv.bias.requires_grad


def test_folding_twice_is_a_no_op():
    model = fold_batchnorm(_resnet8())
    once = _state(model)
    assert fold_batchnorm(model) is model
    _assert_same_state(_state(model), once)


@pytest.mark.parametrize("name", ["digits-cnn", "lenet5"])
def test_model_without_batchnorm_is_unchanged(name):
    torch.manual_seed(0)
    model = build_model(name, in_channels=1, num_classes=10, input_size=28)
    before = _state(model)
    assert not has_batchnorm(model)
    assert fold_batchnorm(model) is model
    _assert_same_state(_state(model), before)


@pytest.mark.parametrize("name", ["resnet", "resnet8"])
def test_every_zoo_model_with_batchnorm_folds(name):
    assert name in model_names()
    model = build_model(name, **RESNET8)
    assert has_batchnorm(model)
    assert not has_batchnorm(fold_batchnorm(model))


@pytest.mark.parametrize("training", [True, False])
def test_train_or_eval_mode_is_kept(training):
    model = _resnet8().train(training)
    fold_batchnorm(model)
    assert all(m.training is training for m in model.modules())
    model.eval()
    model.get_submodule("stem").train()
    fold_batchnorm(model)  # no-op, but a mixed mode must survive it too
    assert model.get_submodule("stem.relu").training
    assert not model.get_submodule("stage1").training


def test_has_batchnorm():
    assert has_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    assert has_batchnorm(nn.BatchNorm2d(3))
    assert not has_batchnorm(nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU()))


class _SharedConvOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class _ConvCalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) * self.conv(x).relu()


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow
            return self.bn(self.conv(x))
        return x


class _UnusedBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU(), nn.BatchNorm2d(2)),
            "directly after.*'2'",
        ),
        (lambda: nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), "directly after.*'1'"),
        (lambda: nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1)), "directly after.*'0'"),
        (lambda: nn.Sequential(nn.Conv1d(2, 2, 1), nn.BatchNorm1d(2)), "directly after.*'1'"),
        (
            lambda: nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2, track_running_stats=False)),
            "running statistics.*'1'",
        ),
        (_SharedConvOutput, "other users.*'conv'"),
        (_ConvCalledTwice, "more than once.*'conv'"),
        (_Untraceable, "cannot trace.*_Untraceable"),
        (_UnusedBatchNorm, "never called.*'bn'"),
    ],
    ids=[
        "after-relu",
        "after-linear",
        "first",
        "after-conv1d",
        "no-stats",
        "shared-output",
        "conv-twice",
        "untraceable",
        "unused",
    ],
)
def test_unfoldable_batchnorm_raises_and_leaves_the_model_alone(make, match):
    model = make()
    before = _state(model)
    with pytest.raises(ModelError, match=match):
        fold_batchnorm(model)
    _assert_same_state(_state(model), before)
    assert has_batchnorm(model)


def test_partial_failure_changes_nothing():
    # The first pair is foldable, the second is not: the first must not be folded either.
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.BatchNorm2d(2))
    _randomize_batchnorm(model)
    before = _state(model)
    with pytest.raises(ModelError, match="'3'"):
        fold_batchnorm(model)
    _assert_same_state(_state(model), before)
    assert isinstance(model[1], nn.BatchNorm2d)


def test_checkpoint_round_trip_into_a_freshly_built_folded_model():
    trained = fold_batchnorm(_resnet8(seed=0)).eval()
    buffer = io.BytesIO()
    torch.save({"name": "resnet8", "kwargs": {}, "state": trained.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    torch.manual_seed(123)  # a different initialisation: every value must come from the file
    fresh = build_model(saved["name"], **RESNET8, **saved["kwargs"])
    fold_batchnorm(fresh)
    fresh.load_state_dict(saved["state"])  # strict: exactly the same keys
    fresh.eval()

    keys = set(saved["state"])
    assert not any(".bn" in k or "running_" in k or "num_batches" in k for k in keys)
    assert "stem.conv.bias" in keys and "stage2.block1.shortcut.conv.bias" in keys
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained(x), atol=0, rtol=0)


def test_loading_a_folded_checkpoint_into_an_unfolded_model_fails():
    # The failure the round trip above guards against.
    saved = fold_batchnorm(_resnet8()).state_dict()
    with pytest.raises(RuntimeError, match="Missing key"):
        build_model("resnet8", **RESNET8).load_state_dict(saved)


# --- average pools: 1/N split between a shift and the next weight layer ------------------


class _MeanHead(nn.Module):
    """A conv, a global pool written three ways, a classifier behind flatten / dropout."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        if self.how == "module":
            y = torch.flatten(self.pool(y), 1)
        elif self.how == "function":
            y = torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1)
        else:
            y = y.mean((2, 3))
        return self.fc(self.drop(y))


@pytest.mark.parametrize("how", ["module", "function", "mean"])
def test_mean_pool_folds_into_the_next_layer_keeping_outputs_and_keys(how: str) -> None:
    from inq_hw.models import FoldedMean

    torch.manual_seed(0)
    model = _MeanHead(how).eval()
    x = torch.randn(4, 2, 6, 6)  # a 6x6 map: N = 36, shift 6, scale 64/36
    with torch.no_grad():
        before, weight = model(x), model.fc.weight.clone()
    keys = set(model.state_dict())
    folded = fold_mean_pools(model, (2, 6, 6))
    assert set(folded.state_dict()) == keys  # checkpoints keep their keys
    pools = [m for m in folded.modules() if isinstance(m, FoldedMean)]
    assert [(p.kernel, p.shift, p.flatten) for p in pools] == [((6, 6), 6, how == "mean")]
    torch.testing.assert_close(folded.get_parameter("fc.weight"), weight * 64 / 36)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), before)
    # The rebuild of a checkpoint: fold a fresh model the same way, load the weights.
    torch.manual_seed(1)
    fresh = fold_mean_pools(_MeanHead(how), (2, 6, 6)).eval()
    fresh.load_state_dict(folded.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), folded(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("size", "why"),
    [(4, "a power-of-two window is already a shift"), (1, "a 1x1 map is its own mean")],
)
def test_exact_means_are_left_alone(size: int, why: str) -> None:
    model = _MeanHead("module")
    weight = model.fc.weight.clone()
    assert fold_mean_pools(model, (2, size, size)) is model, why
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d)
    torch.testing.assert_close(model.fc.weight, weight, rtol=0, atol=0)


def test_mean_without_a_weight_layer_after_it_stays_a_constant_multiplication() -> None:
    """SqueezeNet's head: conv, ReLU, pool, flatten, the output."""
    torch.manual_seed(0)
    model = build_model("squeezenet1_0", in_channels=3, num_classes=10, input_size=96)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert fold_mean_pools(model, (3, 96, 96)) is model
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_folded_mean_lowers_to_a_sum_and_shift_and_the_package_checks_it(tmp_path) -> None:
    import dataclasses

    from inq_hw.errors import PackageError
    from inq_hw.intmodel import IntModel, MeanPoolLayer, save_package
    from tests.test_lower_ops import lowered

    torch.manual_seed(0)
    model = fold_mean_pools(_MeanHead("mean").eval(), (2, 6, 6))
    x = torch.randn(32, 2, 6, 6)
    int_model = lowered(model, x)
    (pool,) = [layer for layer in int_model.layers if isinstance(layer, MeanPoolLayer)]
    assert (pool.multiplier, pool.shift, pool.mode) == (1, 6, "folded")
    bad = dataclasses.replace(pool, shift=5)
    broken = IntModel(
        tuple(bad if lay is pool else lay for lay in int_model.layers), int_model.output
    )
    with pytest.raises(PackageError, match="the mean of 36 elements"):
        save_package(broken, tmp_path)
