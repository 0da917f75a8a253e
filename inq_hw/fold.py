"""Fold BatchNorm into the convolution before it, so INQ and lowering never meet BatchNorm.

With the running statistics (eval semantics), ``BN(conv(x))`` is one convolution with,
per output channel ``c`` and ``k_c = γ_c / sqrt(var_c + eps)``::

    w'_c = w_c · k_c
    b'_c = (b_c − mean_c) · k_c + β_c

(Jacob et al., CVPR 2018, Sec. 3.2). The arithmetic runs in float64 and is stored back in
the convolution's dtype.

Folding is structural and deterministic: every folded convolution owns a ``bias``
parameter and every folded BatchNorm becomes an ``nn.Identity`` with no state. So a
checkpoint of a folded model loads into ``fold_batchnorm(build_model(...))``.
"""

from collections import Counter

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from inq_hw.errors import ModelError
from inq_hw.models import trace_graph

__all__ = ["fold_batchnorm", "has_batchnorm"]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any submodule of ``model`` (or ``model`` itself) is a BatchNorm."""
    return any(isinstance(module, _BatchNorm) for module in model.modules())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d into the Conv2d that directly precedes it, in place.

    Pairs are found by tracing the model with ``torch.fx``: the BatchNorm's only input must
    be the convolution's output, and nothing else may use that output. Every pair is
    checked before anything changes, so a failure leaves the model as it was. The train or
    eval mode of every module is kept; a model without BatchNorm is returned untouched, so
    folding twice is a no-op.

    Args:
        model: the model to fold.

    Returns:
        ``model`` itself, its convolutions carrying the folded weights and biases and its
        BatchNorms replaced by ``nn.Identity``.

    Raises:
        ModelError: if torch.fx cannot trace the model, or a BatchNorm is not directly after
            a Conv2d whose output it alone uses, is called more than once or never, or has
            no running statistics.

    Example usage::

        model = build_model("resnet8", in_channels=3, num_classes=10, input_size=32)
        fold_batchnorm(model)
        assert not has_batchnorm(model)
    """
    if not has_batchnorm(model):
        return model
    for conv_name, bn_name in _conv_bn_pairs(model):
        bn = model.get_submodule(bn_name)
        assert isinstance(bn, nn.BatchNorm2d)  # checked by _conv_bn_pairs
        _fold_into(model.get_submodule(conv_name), bn)
        _replace(model, bn_name, nn.Identity().train(bn.training))
    return model


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, BatchNorm name) of every BatchNorm in the model, all checked."""
    calls = [
        node
        for node in trace_graph(model, "its BatchNorms cannot be folded").nodes
        if node.op == "call_module"
    ]
    call_counts = Counter(str(node.target) for node in calls)
    pairs = [
        (_preceding_conv(model, node, call_counts), str(node.target))
        for node in calls
        if isinstance(model.get_submodule(str(node.target)), _BatchNorm)
    ]
    folded = {bn_name for _, bn_name in pairs}
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and name not in folded:
            shown = name or type(model).__name__
            raise ModelError(f"BatchNorm is never called as a module in forward: {shown!r}")
    return pairs


def _preceding_conv(model: nn.Module, bn_node: fx.Node, call_counts: Counter[str]) -> str:
    bn_name = str(bn_node.target)
    bn = model.get_submodule(bn_name)
    source = bn_node.args[0] if len(bn_node.args) == 1 and not bn_node.kwargs else None
    conv = None
    if isinstance(source, fx.Node) and source.op == "call_module":
        conv = model.get_submodule(str(source.target))
    if not isinstance(bn, nn.BatchNorm2d) or not isinstance(conv, nn.Conv2d):
        raise ModelError(
            f"Only a BatchNorm2d directly after a Conv2d can be folded, not {bn_name!r}"
        )
    assert isinstance(source, fx.Node)
    conv_name = str(source.target)
    if len(source.users) != 1:
        raise ModelError(
            f"BatchNorm {bn_name!r} cannot be folded: its convolution's output has other users: "
            f"{conv_name!r}"
        )
    for name in (conv_name, bn_name):
        if call_counts[name] != 1:
            raise ModelError(f"A module called more than once cannot be folded: {name!r}")
    if bn.running_mean is None or bn.running_var is None:
        raise ModelError(f"BatchNorm without running statistics cannot be folded: {bn_name!r}")
    if bn.num_features != conv.out_channels:
        raise ModelError(f"BatchNorm width differs from its convolution's: {bn_name!r}")
    return conv_name


@torch.no_grad()
def _fold_into(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    assert isinstance(conv, nn.Conv2d)
    assert bn.running_mean is not None and bn.running_var is not None
    mean = bn.running_mean.double()
    var = bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    conv.weight.copy_(conv.weight.double() * scale.reshape(-1, 1, 1, 1))
    folded_bias = (bias - mean) * scale + beta
    if conv.bias is None:
        conv.bias = nn.Parameter(
            folded_bias.to(conv.weight), requires_grad=conv.weight.requires_grad
        )
    else:
        conv.bias.copy_(folded_bias)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child_name = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child_name, new)
