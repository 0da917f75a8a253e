"""``torch.export`` programs (``.pt2``) as models: rebuilt into modules INQ can quantize.

An exported program is a flat graph of ATen calls whose weights are lifted inputs, so it
has no ``nn.Conv2d`` or ``nn.Linear`` for BatchNorm folding, INQ and lowering to find.
:func:`load_exported` rebuilds one: every ``aten.conv2d`` / ``aten.linear`` /
``aten.batch_norm`` call becomes a module of that kind holding the program's tensors,
named after the parameter's original path (``layer1.0.conv1``), and every other call the
``torch`` / ``torch.nn.functional`` call lowering knows (``F.relu``, ``+``,
``torch.flatten``, ``F.max_pool2d``, ...). A call with no such counterpart is kept as the
ATen call, so lowering lists it with every other unsupported node. Dropout and aliasing
calls are dropped (inference). The result is a :class:`torch.fx.GraphModule` computing
what the program computes.

Example usage::

    torch.export.save(torch.export.export(net.eval(), (torch.zeros(1, 3, 32, 32),)), "n.pt2")
    model = load_exported("n.pt2", in_channels=3, num_classes=10, input_size=32)
"""

import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn
from torch.nn import functional as F

from inq_hw.errors import ConfigError

__all__ = ["load_exported"]

_aten = torch.ops.aten

#: ATen calls with a functional counterpart of the same arguments.
_FUNCTIONS: dict[Any, Callable[..., Any]] = {
    _aten.relu.default: F.relu,
    _aten.relu_.default: F.relu,
    _aten.relu6.default: F.relu6,
    _aten.hardtanh.default: F.hardtanh,
    _aten.hardtanh_.default: F.hardtanh,
    _aten.clamp.default: torch.clamp,
    _aten.max_pool2d.default: F.max_pool2d,
    _aten.avg_pool2d.default: F.avg_pool2d,
    _aten.adaptive_avg_pool2d.default: F.adaptive_avg_pool2d,
    _aten.mean.dim: torch.mean,
    _aten.flatten.using_ints: torch.flatten,
    _aten.cat.default: torch.cat,
}
#: ATen calls that change nothing at inference: their output is their first argument.
_IDENTITY = {
    _aten.dropout.default,
    _aten.dropout_.default,
    _aten.feature_dropout.default,
    _aten.alias.default,
    _aten.clone.default,
    _aten.contiguous.default,
    _aten.detach.default,
}
_ADDS = {_aten.add.Tensor, _aten.add_.Tensor}
_VIEWS = {_aten.view.default, _aten.reshape.default, _aten._unsafe_view.default}


def load_exported(
    path: str | Path, *, in_channels: int, num_classes: int, input_size: int
) -> nn.Module:
    """The program in ``path`` rebuilt as a module, checked on an input of the data set.

    Raises:
        ConfigError: The file cannot be loaded, the program does not take one image
            tensor, or it does not map ``(1, in_channels, input_size, input_size)`` to
            ``(1, num_classes)``.
    """
    try:
        program = torch.export.load(str(path))
    except FileNotFoundError:
        raise ConfigError(f"Exported program {path} does not exist") from None
    except Exception as exc:  # a corrupt file or another format: what torch says
        raise ConfigError(
            f"Cannot load {path} as a torch.export program (.pt2, torch.export.save): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    model = _rebuild(program, str(path))
    shape = (1, in_channels, input_size, input_size)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(shape))
    except Exception as exc:  # a shape the program's baked-in views cannot take
        raise ConfigError(
            f"Exported program {path} cannot run the data set's {in_channels}x{input_size}x"
            f"{input_size} images: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from None
    if tuple(out.shape) != (1, num_classes):
        raise ConfigError(
            f"Exported program {path} gives outputs of shape {tuple(out.shape)[1:]} for a "
            f"{in_channels}x{input_size}x{input_size} image, but the data set has "
            f"{num_classes} classes"
        )
    return model.train()


def _rebuild(program: Any, path: str) -> fx.GraphModule:
    tensors = _lifted_tensors(program)
    images = [
        s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"
    ]
    outputs = [s for s in program.graph_signature.output_specs if s.kind.name == "USER_OUTPUT"]
    if len(images) != 1 or len(outputs) != 1:
        raise ConfigError(
            f"Exported program {path} must take one image tensor and return one tensor, not "
            f"{len(images)} input(s) and {len(outputs)} output(s)"
        )
    builder = _Builder(tensors, path)
    for node in program.graph.nodes:
        if node.op == "placeholder":
            if node.name == images[0]:
                builder.env[node] = builder.graph.placeholder("x")
        elif node.op == "call_function":
            builder.call(node)
        elif node.op == "output":
            (result,) = [a for a in node.args[0] if a.name == outputs[0].arg.name]
            builder.graph.output(builder.env[result])
        else:
            raise ConfigError(f"Exported program {path}: cannot rebuild its {node.op} nodes")
    return fx.GraphModule(builder.modules, builder.graph, class_name="ExportedModel")


def _lifted_tensors(program: Any) -> dict[str, tuple[str, torch.Tensor]]:
    """Placeholder name -> (original path, tensor) of every parameter, buffer, constant."""
    state, constants = program.state_dict, program.constants
    found = {}
    for spec in program.graph_signature.input_specs:
        if spec.kind.name in ("PARAMETER", "BUFFER"):
            found[spec.arg.name] = (spec.target, state[spec.target])
        elif spec.kind.name == "CONSTANT_TENSOR":
            found[spec.arg.name] = (spec.target, constants[spec.target])
    return found


class _Builder:
    """The new graph and its modules, node by node of the program."""

    def __init__(self, tensors: dict[str, tuple[str, torch.Tensor]], path: str) -> None:
        self.tensors, self.path = tensors, path
        self.graph = fx.Graph()
        self.env: dict[fx.Node, Any] = {}
        self.modules: dict[str, nn.Module] = {}

    def call(self, node: fx.Node) -> None:
        target = node.target
        args: tuple[Any, ...] = tuple(node.args)
        kwargs: dict[str, Any] = dict(node.kwargs)
        if target in _IDENTITY:
            self.env[node] = self._value(args[0])
        elif target in (_aten.conv2d.default, _aten.conv2d.padding):
            self._module(node, _conv(*args, **kwargs))
        elif target is _aten.linear.default:
            self._module(node, _linear(*args, **kwargs))
        elif target is _aten.batch_norm.default:
            self._module(node, _batch_norm(*args, **kwargs))
        elif target in _ADDS and kwargs.get("alpha", 1) == 1:
            self._function(node, operator.add, args, {})
        elif target in _VIEWS and _flattens(node):
            self._function(node, torch.flatten, (args[0], 1), {})
        elif target in _FUNCTIONS:
            self._function(node, _FUNCTIONS[target], args, kwargs)
        else:  # kept: lowering names it among the unsupported nodes
            self._function(node, target, args, kwargs)  # type: ignore[arg-type]

    def _value(self, arg: Any) -> Any:
        def one(node: fx.Node) -> Any:
            if node.name in self.tensors:
                raise ConfigError(
                    f"Exported program {self.path}: tensor {self.tensors[node.name][0]!r} is "
                    "used outside a convolution, linear or batch-norm call"
                )
            return self.env[node]

        return fx.map_arg(arg, one)

    def _function(
        self, node: fx.Node, fn: Callable[..., Any], args: Any, kwargs: dict[str, Any]
    ) -> None:
        self.env[node] = self.graph.call_function(fn, self._value(args), self._value(kwargs))
        self.env[node].name = node.name

    def _module(self, node: fx.Node, made: tuple[fx.Node, nn.Module, fx.Node]) -> None:
        source, module, weight = made
        name = self.tensors[weight.name][0].rpartition(".")[0] or weight.name
        if name in self.modules:
            raise ConfigError(
                f"Exported program {self.path}: module {name!r} is called twice; every "
                "weight layer must be called once"
            )
        self.modules[name] = module
        self._load(module, node)
        self.env[node] = self.graph.call_module(name, (self._value(source),))

    def _load(self, module: nn.Module, node: fx.Node) -> None:
        """Copy the program's tensors into ``module``'s parameters and buffers."""
        for attr, arg in _tensor_args(module, node).items():
            if arg is None:
                continue
            tensor = self.tensors[arg.name][1].detach().clone()
            current = getattr(module, attr)
            if isinstance(current, nn.Parameter):
                setattr(module, attr, nn.Parameter(tensor))
            else:
                setattr(module, attr, tensor)


def _conv(
    x: fx.Node,
    weight: fx.Node,
    bias: fx.Node | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> tuple[fx.Node, nn.Module, fx.Node]:
    shape = weight.meta["val"].shape
    module = nn.Conv2d(
        shape[1] * groups,
        shape[0],
        tuple(shape[2:]),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias is not None,
    )
    return x, module, weight


def _linear(
    x: fx.Node, weight: fx.Node, bias: fx.Node | None = None
) -> tuple[fx.Node, nn.Module, fx.Node]:
    out, features = weight.meta["val"].shape
    return x, nn.Linear(features, out, bias=bias is not None), weight


def _batch_norm(
    x: fx.Node,
    weight: fx.Node | None,
    bias: fx.Node | None,
    mean: fx.Node,
    var: fx.Node,
    training: bool,
    momentum: float,
    eps: float,
    cudnn_enabled: bool = True,
) -> tuple[fx.Node, nn.Module, fx.Node]:
    del training, cudnn_enabled  # the module runs in the mode the caller sets
    features = mean.meta["val"].shape[0]
    rank = len(x.meta["val"].shape)
    kind = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
    module = kind(features, eps=eps, momentum=momentum, affine=weight is not None)
    return x, module, weight if weight is not None else mean


def _tensor_args(module: nn.Module, node: fx.Node) -> dict[str, Any]:
    args = node.args
    if isinstance(module, nn.Conv2d | nn.Linear):
        return {"weight": args[1], "bias": args[2] if len(args) > 2 else None}
    return {
        "weight": args[1],
        "bias": args[2],
        "running_mean": args[3],
        "running_var": args[4],
    }


def _flattens(node: fx.Node) -> bool:
    """A view of an ``(N, ...)`` tensor to ``(N, -1)``: the batch kept, the rest flat."""
    source, shape = node.args[0], list(node.args[1])  # type: ignore[arg-type]
    before = source.meta["val"].shape  # type: ignore[union-attr]
    if len(shape) != 2 or shape[0] != before[0]:
        return False
    rest = 1
    for size in before[1:]:
        rest *= size
    return shape[1] in (-1, rest)
