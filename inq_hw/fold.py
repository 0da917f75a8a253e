"""Fold BatchNorm into the convolution before it, so INQ and lowering never meet BatchNorm;
fold the non-power-of-two part of an average pool's 1/N into the weight layer after it.

With the running statistics (eval semantics), ``BN(conv(x))`` is one convolution with,
per output channel ``c`` and ``k_c = γ_c / sqrt(var_c + eps)``::

    w'_c = w_c · k_c
    b'_c = (b_c − mean_c) · k_c + β_c

(Jacob et al., CVPR 2018, Sec. 3.2). The arithmetic runs in float64 and is stored back in
the convolution's dtype.

Folding is structural and deterministic: every folded convolution owns a ``bias``
parameter and every folded BatchNorm becomes an ``nn.Identity`` with no state. So a
checkpoint of a folded model loads into ``fold_batchnorm(build_model(...))``.

Average pools (:func:`fold_mean_pools`): a mean over ``N`` elements, ``N`` not a power of
two, whose only consumer is one Conv2d or Linear (through flatten, view, dropout or
identity), becomes a :class:`~inq_hw.models.FoldedMean`, the window sum times
``2**-shift``, and that layer's weights are multiplied by ``2**shift / N``
(:func:`~inq_hw.intmodel.arith.folded_mean`), before INQ, so INQ quantizes the scaled
weights and the hardware has no constant multiplication. The model computes what it did.
Other means stay constant multiplications (lowering's ``"shift_add"`` mode).
"""

from collections import Counter
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from inq_hw.errors import ModelError
from inq_hw.intmodel.arith import adaptive_window, folded_mean
from inq_hw.models import FoldedMean, node_argument, trace_graph

__all__ = ["fold_batchnorm", "fold_mean_pools", "has_batchnorm"]


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


# --- average pools ---------------------------------------------------------------------------

#: Calls a pooled value passes through unchanged in scale on its way to a weight layer.
_PASS_MODULES = (nn.Flatten, nn.Dropout, nn.Identity)
_PASS_CALLS = (torch.flatten, torch.reshape, F.dropout)
_PASS_METHODS = {"flatten", "view", "reshape"}
_ADAPTIVE_CALLS = (F.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool2d)
_AVG_CALLS = (F.avg_pool2d, torch._C._nn.avg_pool2d)


def fold_mean_pools(model: nn.Module, input_shape: tuple[int, int, int]) -> nn.Module:
    """Split the ``1/N`` of every foldable average pool (see the module docstring).

    ``input_shape`` is ``(C, H, W)`` of one image (the windows of adaptive and global
    pools depend on it). A pool that is a module is replaced in place; a functional one
    (``F.adaptive_avg_pool2d``, ``x.mean((2, 3))``) makes the result a
    :class:`torch.fx.GraphModule` of the same submodules and state-dict keys. Deterministic,
    so a checkpoint of a folded model loads into ``fold_mean_pools(build_model(...), shape)``.

    Returns:
        The folded model (``model`` itself when no pool is functional), or ``model``
        untouched when nothing folds.
    """
    graph = trace_graph(model, "its average pools cannot be folded")
    module = fx.GraphModule(model, graph)
    ShapeProp(module).propagate(torch.zeros(1, *input_shape))
    calls = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
    rewritten = False
    for node in list(graph.nodes):
        window = _mean_window(model, node)
        if window is None:
            continue
        kernel, stride, flatten = window
        count = kernel[0] * kernel[1]
        layer = _consumer(model, node, calls)
        if count & (count - 1) == 0 or 0 in stride or layer is None:
            continue  # exact already, a repeated window, or no weight layer to carry 1/N
        shift, scale = folded_mean(count)
        weight = layer.weight
        assert isinstance(weight, torch.Tensor)
        with torch.no_grad():
            weight.copy_(weight.double() * float(scale))
        folded = FoldedMean(kernel, stride, shift, flatten).train(model.training)
        if node.op == "call_module":
            _replace(model, str(node.target), folded)
            continue
        name = f"{node.name}_folded"
        model.add_module(name, folded)
        module.add_module(name, folded)  # the graph's owner while it is rewritten
        with graph.inserting_before(node):
            new = graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        rewritten = True
    if not rewritten:
        return model
    result = fx.GraphModule(model, graph, class_name=type(model).__name__)
    return result.train(model.training)


def _mean_window(
    model: nn.Module, node: fx.Node
) -> tuple[tuple[int, int], tuple[int, int], bool] | None:
    """``(kernel, stride, flatten)`` of an average pool node with equal windows, else None."""
    if not node.args or not isinstance(node.args[0], fx.Node):
        return None
    shape = node.args[0].meta.get("tensor_meta")
    if shape is None or len(shape.shape) != 4:
        return None
    h, w = shape.shape[2:]
    if node.op == "call_module":
        pool = model.get_submodule(str(node.target))
        if type(pool) is nn.AdaptiveAvgPool2d:
            return _adaptive(h, w, pool.output_size)
        if type(pool) is nn.AvgPool2d:
            return _plain(pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode, None)
        return None
    if node.op == "call_function" and node.target in _ADAPTIVE_CALLS:
        return _adaptive(h, w, node_argument(node, 1, "output_size", None))
    if node.op == "call_function" and node.target in _AVG_CALLS:
        kernel = node_argument(node, 1, "kernel_size", None)
        return _plain(
            kernel,
            node_argument(node, 2, "stride", None) or kernel,
            node_argument(node, 3, "padding", 0),
            node_argument(node, 4, "ceil_mode", False),
            node_argument(node, 6, "divisor_override", None),
        )
    if (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean
    ):
        dims = node_argument(node, 1, "dim", None)
        axes = {d % 4 for d in ([dims] if isinstance(dims, int) else (dims or ()))}
        if axes != {2, 3} or node.kwargs.get("dtype") is not None:
            return None
        return (h, w), (h, w), not node_argument(node, 2, "keepdim", False)
    return None


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _adaptive(h: int, w: int, size: Any) -> tuple[tuple[int, int], tuple[int, int], bool] | None:
    size = (size, size) if isinstance(size, int) else tuple(size)
    along_h = adaptive_window(h, h if size[0] is None else size[0])
    along_w = adaptive_window(w, w if size[1] is None else size[1])
    if along_h is None or along_w is None:
        return None
    return (along_h[0], along_w[0]), (along_h[1], along_w[1]), False


def _plain(
    kernel: Any, stride: Any, padding: Any, ceil_mode: bool, divisor: Any
) -> tuple[tuple[int, int], tuple[int, int], bool] | None:
    if _pair(padding) != (0, 0) or ceil_mode or divisor is not None:
        return None  # lowering refuses these
    return _pair(kernel), _pair(stride), False


def _consumer(model: nn.Module, node: fx.Node, calls: Counter[str]) -> nn.Module | None:
    """The one Conv2d or Linear that alone consumes ``node`` through pass-through calls."""
    while len(node.users) == 1:
        (node,) = node.users
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            if type(module) in (nn.Conv2d, nn.Linear):
                return module if calls[str(node.target)] == 1 else None
            if not isinstance(module, _PASS_MODULES):
                return None
        elif not (
            (node.op == "call_function" and node.target in _PASS_CALLS)
            or (node.op == "call_method" and node.target in _PASS_METHODS)
        ):
            return None
    return None
