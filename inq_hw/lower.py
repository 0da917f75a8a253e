"""Lowering: a power-of-two PyTorch model → the integer-only :class:`IntModel`.

The model is traced with ``torch.fx`` (:class:`~inq_hw.models.ResidualAdd` kept as a leaf;
``nn.Identity`` left by BatchNorm folding, ``Dropout`` and ``F.dropout`` dropped; dead
nodes removed), run once in float on the calibration inputs to measure every tensor, then
walked node by node. Each module type has a handler registered with :func:`lowers`, each
function or tensor method one registered with :func:`lowers_call` (those of CNNs written
the ordinary way live in :mod:`inq_hw.lower_ops`); size computations (``x.size(0)``,
``x.shape[0]``) make no layer. Every node no handler knows is listed in one
:class:`ModelError` before anything is computed.

Activation formats (calibration), ARCHITECTURE.md "Number formats":

* Every tensor has ``a_bits`` bits. It is **unsigned** when it is non-negative by
  construction (a ReLU output; max/avg pooling or flattening of an unsigned tensor; the
  input when the calibration data has no negative value), **signed** otherwise. Signedness
  never comes from the calibration values of an inner tensor, which may happen to be
  non-negative on the calibration set and negative on another input.
* Its scale is ``2**-frac``, ``frac`` the largest integer with ``m·2**frac <= hi``, where
  ``hi`` is the format's largest integer and ``m`` the calibrated range: ``max|x|`` over the
  calibration set (``"maxabs"``, no calibration value saturates) or a percentile of ``|x|``
  (``"percentile"``: rare outliers saturate, for up to one more bit of resolution). It is
  computed exactly with fractions (a float ``log2`` is off by one at powers of two). A
  tensor that is zero on the whole calibration set gets ``frac = 0``.

Weights must already lie exactly on their layer's power-of-two grid (a finished INQ run);
the bias becomes an integer in accumulator units ``2**(n2 - frac_in)``, rounded half up
like every other rounding in the datapath. A ReLU that is the only user of a convolution,
linear layer or residual add is fused into it.

8-bit uniform baselines (ARCHITECTURE.md, "Baselines"): given the FP32 model the INQ run
started from (``baseline_model``; :func:`lower_checkpoint` finds it through the INQ
checkpoint's ``source`` and checks its SHA-256), every weight layer also carries the same
layer with 8-bit uniform weights, so rtl_gen can build the multiplier twin from the package
alone. With W the FP32 weights and b the FP32 bias, ``k`` is the smallest integer with
``max|W|/2**k <= 127``, ``baseline_weights = clip(round_half_up(W/2**k), -127, 127)``
(int8), ``baseline_bias = round_half_up(b·2**(frac_in - k))``, ``baseline_shift =
frac_in - k - frac_out`` with the po2 layer's formats, and ``baseline_acc_bits`` from the
worst case (:mod:`inq_hw.intmodel.baseline`). Without the FP32 source the package has no
baselines and ``meta["baseline"]`` is ``None``, with the reason in
``meta["baseline_reason"]``.
"""

import math
import operator
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import fx, nn

from inq_hw.checkpoint import file_sha256, load_checkpoint
from inq_hw.data import Dataset
from inq_hw.errors import ConfigError, ModelError
from inq_hw.intmodel.arith import (
    MAX_ACCUMULATOR_BITS,
    ActFormat,
    accumulator_bits,
    bias_int,
    signed_bits,
)
from inq_hw.intmodel.baseline import BASELINE_BITS, baseline_fields
from inq_hw.intmodel.codes import weight_abs_sums
from inq_hw.intmodel.layers import (
    AddLayer,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    ReLULayer,
    WeightLayer,
)
from inq_hw.model_io import load_model
from inq_hw.models import ResidualAdd, trace_graph
from inq_hw.quant import Po2Codes, check_bits, decode_codes, pack_codes, po2_codes

__all__ = [
    "CalibrationConfig",
    "LoweringContext",
    "lower_checkpoint",
    "lower_model",
    "lowers",
    "lowers_call",
]

CONFIG_VERSION = 1
CALIBRATION_METHODS = ("maxabs", "percentile")
INPUT_NAME = "input"


@dataclass(frozen=True)
class CalibrationConfig:
    """How activation formats are chosen.

    Members
    -------
    samples : int
        How many samples calibrate: the first ``samples`` of the training split
        (deterministic; fewer if the split is smaller).
    method : str
        ``"maxabs"`` (range = max|x|) or ``"percentile"`` (range = a percentile of |x|).
    percentile : float
        The percentile of |x| per tensor for ``method="percentile"``, in (0, 100].
    a_bits : int
        Activation width, 4 to 16.
    logit_bits : int
        Width of the network's output integers (the logits), 4 to 32. No layer reads them,
        so they cost no datapath width; wider than ``a_bits`` by default because coarse
        8-bit logits tie often, and a tie decides the class by index, not by the model.
    """

    samples: int = 512
    method: str = "maxabs"
    percentile: float = 99.99
    a_bits: int = 8
    logit_bits: int = 16
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if _not_int(self.samples) or self.samples < 1:
            raise ConfigError(
                f"Calibration samples must be a positive integer, not {self.samples!r}"
            )
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(
                f"Calibration method must be one of {CALIBRATION_METHODS}, not {self.method!r}"
            )
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 100:
            raise ConfigError(f"Calibration percentile must lie in (0, 100], not {p!r}")
        if _not_int(self.a_bits) or not 4 <= self.a_bits <= 16:
            raise ConfigError(
                f"Activation width must be an integer from 4 to 16, not {self.a_bits!r}"
            )
        if _not_int(self.logit_bits) or not 4 <= self.logit_bits <= 32:
            raise ConfigError(
                f"Logit width must be an integer from 4 to 32, not {self.logit_bits!r}"
            )
        if self.version != CONFIG_VERSION:
            raise ConfigError(
                f"Calibration config version must be {CONFIG_VERSION}, not {self.version!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CalibrationConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"Unknown calibration config keys: {sorted(unknown)}")
        return cls(**data)


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


# --- calibration --------------------------------------------------------------------------


@dataclass(frozen=True)
class _TensorStats:
    """What lowering needs of one float tensor: shape (no batch), range and minimum."""

    shape: tuple[int, ...]
    extent: float
    minimum: float


def _measure(x: torch.Tensor, config: CalibrationConfig) -> _TensorStats:
    values = x.detach().double()
    if config.method == "percentile":
        extent = float(np.percentile(values.abs().numpy().ravel(), config.percentile))
    else:
        extent = float(values.abs().max())
    return _TensorStats(tuple(x.shape[1:]), extent, float(values.min()))


def _frac_for(extent: float, hi: int) -> int:
    """Largest integer ``f`` with ``extent·2**f <= hi``, exactly (0 for a zero range)."""
    if extent == 0.0:
        return 0
    m = Fraction(extent)
    # With 2**(E-1) <= m < 2**E and 2**(B-1) <= hi < 2**B, f = B - E has
    # m·2**(f+1) >= 2**B > hi: an upper bound, at most one too large.
    f = hi.bit_length() - math.frexp(extent)[1]
    while m * Fraction(2) ** f > hi:
        f -= 1
    return f


class _Recorder(fx.Interpreter):
    """Runs the traced graph and keeps only each node's statistics (values are freed)."""

    def __init__(self, module: fx.GraphModule, config: CalibrationConfig) -> None:
        super().__init__(module)
        self.config = config
        self.stats: dict[str, _TensorStats] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        # Measured at once: an in-place ReLU later would overwrite this tensor.
        if n.op != "output" and isinstance(out, torch.Tensor) and out.dim() >= 1:
            self.stats[n.name] = _measure(out, self.config)
        return out


# --- tracing ------------------------------------------------------------------------------


#: Modules that are the identity at inference (a folded BatchNorm is an ``nn.Identity``).
_IDENTITY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
#: Functions and tensor methods that are the identity at inference.
_IDENTITY_CALLS: tuple[object, ...] = (
    nn.functional.dropout,
    nn.functional.dropout2d,
    "contiguous",
)


def _is_identity(model: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return type(model.get_submodule(str(node.target))) in _IDENTITY_MODULES
    return node.op in ("call_function", "call_method") and node.target in _IDENTITY_CALLS


def _trace(model: nn.Module) -> fx.GraphModule:
    graph = trace_graph(model, "it cannot be lowered")
    for node in list(graph.nodes):
        # Identity, Dropout (inference) and folded BatchNorms are dropped, which also
        # lets a ReLU after one fuse into the layer before it.
        if _is_identity(model, node):
            if not node.args or not isinstance(node.args[0], fx.Node):
                raise ModelError(f"Cannot lower {node.name!r} (identity): odd arguments")
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    graph_module = fx.GraphModule(model, graph)
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return graph_module


def _record(
    graph_module: fx.GraphModule, x: torch.Tensor, config: CalibrationConfig
) -> dict[str, _TensorStats]:
    """Statistics of every node on ``x``, run in eval mode (each module's mode restored)."""
    modes = {module: module.training for module in graph_module.modules()}
    graph_module.eval()
    try:
        recorder = _Recorder(graph_module, config)
        with torch.no_grad():
            recorder.run(x)
    finally:
        for module, training in modes.items():
            module.train(training)
    return recorder.stats


# --- the handler registry -----------------------------------------------------------------


@dataclass
class LoweringContext:
    """State of one lowering, handed to every handler.

    Members
    -------
    model : torch.nn.Module
        The model being lowered.
    stats : dict
        Shape, range and minimum of every node's float output, by node name.
    bits : int
        Weight code width.
    n1 : mapping of str to int
        Largest weight exponent per module name.
    config : CalibrationConfig
        Activation width and range rule.
    baseline_model : torch.nn.Module or None
        The model whose weights give every weight layer its uniform baseline: the FP32 one
        (the 8-bit twin) or a uniform INQ model (``twin_bits``).
    twin_bits : int or None
        Width of a trained uniform twin in ``baseline_model`` (its weights on that grid),
        or ``None`` for the 8-bit twin rounded from FP32 weights.
    layers : list of Layer
        The integer layers so far, in execution order.
    produced : dict
        fx node → the layer whose output holds its value.
    """

    model: nn.Module
    stats: dict[str, _TensorStats]
    bits: int
    n1: Mapping[str, int]
    config: CalibrationConfig
    baseline_model: nn.Module | None = None
    twin_bits: int | None = None
    layers: list[Layer] = field(default_factory=list)
    produced: dict[fx.Node, Layer] = field(default_factory=dict)

    def add(self, layer: Layer, *nodes: fx.Node | None) -> None:
        """Append ``layer``; it produces the values of ``nodes`` (``None`` skipped)."""
        if any(existing.name == layer.name for existing in self.layers):
            raise ModelError(
                f"Module {layer.name!r} is called more than once; lowering needs one call "
                "per module"
            )
        self.layers.append(layer)
        self.produced.update({node: layer for node in nodes if node is not None})

    def module(self, node: fx.Node) -> nn.Module:
        return self.model.get_submodule(str(node.target))

    def operands(self, node: fx.Node, count: int = 1) -> list[Layer]:
        """The layers producing the ``count`` tensor arguments of ``node``."""
        if (
            node.kwargs
            or len(node.args) != count
            or not all(isinstance(a, fx.Node) and a in self.produced for a in node.args)
        ):
            raise ModelError(
                f"Cannot lower {node.target!r}: it must be called with {count} tensor "
                f"argument(s), not args={node.args} kwargs={dict(node.kwargs)}"
            )
        return [self.produced[a] for a in node.args if isinstance(a, fx.Node)]

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        return self.stats[node.name].shape

    def calibrate(self, node: fx.Node, *, signed: bool) -> ActFormat:
        """Format of ``node``'s output: ``a_bits`` bits (``logit_bits`` for the network's
        output), exact power-of-two scale."""
        extent = self.stats[node.name].extent
        if not math.isfinite(extent):
            raise ModelError(f"Node {node.name!r} produced NaN or Inf on the calibration set")
        is_output = any(user.op == "output" for user in node.users)
        bits = self.config.logit_bits if is_output else self.config.a_bits
        hi = ActFormat(bits, signed, 0).hi
        return ActFormat(bits, signed, _frac_for(extent, hi))

    def fusable_relu(self, node: fx.Node) -> fx.Node | None:
        """The ReLU node (module, function or method) that is the only user of ``node``."""
        if len(node.users) != 1:
            return None
        (user,) = node.users
        return user if self.is_relu(user) and user.args == (node,) else None

    def is_relu(self, node: fx.Node) -> bool:
        """Whether ``node`` is ``nn.ReLU``, ``F.relu``/``torch.relu`` or ``x.relu()``."""
        if node.op == "call_module":
            return type(self.module(node)) is nn.ReLU
        return node.op in ("call_function", "call_method") and node.target in RELU_CALLS

    def name(self, node: fx.Node) -> str:
        """The integer layer's name: the module's, else the fx node's."""
        return str(node.target) if node.op == "call_module" else node.name


#: ReLU written as a function or a tensor method.
RELU_CALLS: tuple[object, ...] = (
    nn.functional.relu,
    torch.relu,
    torch.relu_,
    "relu",
    "relu_",
)


Handler = Callable[[LoweringContext, fx.Node, Any], None]
_H = TypeVar("_H", bound=Handler)
_LOWERINGS: dict[type[nn.Module], Handler] = {}


def lowers(*kinds: type[nn.Module]) -> Callable[[_H], _H]:
    """Register a handler ``fn(context, node, module)`` for modules of exactly ``kinds``.

    Exact types only: a subclass may override ``forward`` with other arithmetic.
    """

    def decorate(fn: _H) -> _H:
        for kind in kinds:
            _LOWERINGS[kind] = fn
        return fn

    return decorate


_CALLS: dict[object, Handler] = {}


def lowers_call(*targets: object) -> Callable[[_H], _H]:
    """Register a handler ``fn(context, node, None)`` for ``call_function`` nodes of the
    functions ``targets`` and ``call_method`` nodes of the method names (strings)."""

    def decorate(fn: _H) -> _H:
        for target in targets:
            _CALLS[target] = fn
        return fn

    return decorate


def _handler(ctx: LoweringContext, node: fx.Node) -> Handler | None:
    if node.op == "call_module":
        return _LOWERINGS.get(type(ctx.module(node)))
    if node.op in ("call_function", "call_method"):
        try:
            return _CALLS.get(node.target)
        except TypeError:  # an unhashable target
            return None
    return None


def _unsupported(name: str, module: nn.Module, reason: str) -> ModelError:
    return ModelError(f"Cannot lower {name!r} ({type(module).__name__}): {reason}")


def _require(condition: bool, name: str, module: nn.Module, reason: str) -> None:
    if not condition:
        raise _unsupported(name, module, reason)


def _require_rank(source: Layer, rank: int, name: str, module: nn.Module) -> None:
    if len(source.shape) != rank:
        raise _unsupported(
            name, module, f"needs a {rank}-D input per sample, not shape {source.shape}"
        )


# --- weight layers ------------------------------------------------------------------------


def _grid_codes(name: str, weight: torch.Tensor, bits: int, n1: Mapping[str, int]) -> Po2Codes:
    """Codes of ``weight``, which must lie exactly on the power-of-two grid of its layer."""
    if name not in n1:
        raise ModelError(
            f"Layer {name!r} has no n1: INQ left it in full precision (skipped), and only "
            f"power-of-two layers can be lowered"
        )
    w = weight.detach()
    try:
        codes = po2_codes(w, bits, n1=int(n1[name]))
    except ConfigError as exc:
        raise ModelError(f"Layer {name!r}: {exc}") from None
    off = int((decode_codes(codes, torch.float64) != w.double()).sum())
    if off:
        raise ModelError(
            f"Layer {name!r} is not fully quantized: {off} of {w.numel()} weights are off "
            f"the {bits}-bit power-of-two grid of n1={n1[name]}"
        )
    return codes


def _bias_int(name: str, bias: torch.Tensor | None, count: int, exponent: int) -> list[int]:
    """``round_half_up(b·2**exponent)`` per output, exact (0 without a bias)."""
    if bias is None:
        return [0] * count
    values = bias.detach().double().tolist()
    if not all(math.isfinite(v) for v in values):
        raise ModelError(f"Layer {name!r} has a NaN or Inf bias")
    return bias_int(values, exponent)


def _baseline(
    ctx: LoweringContext,
    name: str,
    module: nn.Conv2d | nn.Linear,
    f_in: ActFormat,
    out: ActFormat,
    n2: int,
) -> dict[str, Any]:
    """The ``baseline_*`` fields of layer ``name`` from the baseline model's twin module."""
    if ctx.baseline_model is None:
        return {}
    try:
        twin = ctx.baseline_model.get_submodule(name)
    except AttributeError:
        raise ModelError(f"The baseline model has no module {name!r}") from None
    if type(twin) is not type(module) or twin.weight.shape != module.weight.shape:
        raise ModelError(
            f"Module {name!r} of the baseline model ({type(twin).__name__}) does not match "
            f"the lowered one ({type(module).__name__}, weight {tuple(module.weight.shape)})"
        )
    bias = None if twin.bias is None else twin.bias.detach().double().numpy()
    bits = BASELINE_BITS if ctx.twin_bits is None else ctx.twin_bits
    try:
        return baseline_fields(
            twin.weight.detach().double().numpy(),
            bias,
            frac_in=f_in.frac,
            frac_out=out.frac,
            input_max_abs=f_in.max_abs,
            zero_exp=n2,
            bits=bits,
            on_grid=ctx.twin_bits is not None,
        )
    except ConfigError as exc:
        raise ModelError(f"Layer {name!r}, {bits}-bit baseline: {exc}") from None


def _lower_weights(
    ctx: LoweringContext,
    node: fx.Node,
    module: nn.Conv2d | nn.Linear,
    kind: type[WeightLayer],
    **geometry: int,
) -> None:
    """Conv2d or Linear → ``kind``: codes, integer bias, fused ReLU, shift, accumulator."""
    name = str(node.target)
    (source,) = ctx.operands(node)
    codes = _grid_codes(name, module.weight, ctx.bits, ctx.n1)
    relu = ctx.fusable_relu(node)
    out_node = relu or node
    f_in, out = source.out, ctx.calibrate(out_node, signed=relu is None)
    bias = _bias_int(name, module.bias, codes.index.shape[0], f_in.frac - codes.n2)
    packed = pack_codes(codes).numpy().copy()
    try:
        acc_bits = accumulator_bits(
            weight_abs_sums(packed, codes.bits),
            np.array(bias, dtype=object),
            f_in.max_abs,
        )
    except ConfigError as exc:
        raise ModelError(f"Layer {name!r}: {exc}") from None
    extra: dict[str, Any] = {**geometry, **_baseline(ctx, name, module, f_in, out, codes.n2)}
    layer = kind(
        name=name,
        inputs=(source.name,),
        shape=ctx.shape(out_node),
        out=out,
        bits=ctx.bits,
        n1=codes.n1,
        n2=codes.n2,
        codes=packed,
        bias=np.array(bias, dtype=np.int64),
        shift=f_in.frac - codes.n2 - out.frac,
        relu=relu is not None,
        acc_bits=acc_bits,
        **extra,
    )
    ctx.add(layer, node, relu)


@lowers(nn.Linear)
def _lower_linear(ctx: LoweringContext, node: fx.Node, linear: nn.Linear) -> None:
    name = str(node.target)
    _require_rank(ctx.operands(node)[0], 1, name, linear)
    _lower_weights(ctx, node, linear, LinearLayer)


# --- layers without weights ---------------------------------------------------------------


def _zero(value: object) -> bool:
    return value == 0 or value == (0, 0)


def _one(value: object) -> bool:
    return value == 1 or value == (1, 1)


@lowers(nn.Flatten)
def _lower_flatten(ctx: LoweringContext, node: fx.Node, flatten: nn.Flatten) -> None:
    name = str(node.target)
    (source,) = ctx.operands(node)
    _require(
        flatten.start_dim == 1 and flatten.end_dim in (-1, len(source.shape)),
        name,
        flatten,
        f"only Flatten(start_dim=1, end_dim=-1), not ({flatten.start_dim}, {flatten.end_dim})",
    )
    ctx.add(FlattenLayer(name, (source.name,), ctx.shape(node), source.out), node)


@lowers(nn.ReLU)
def _lower_relu(ctx: LoweringContext, node: fx.Node, relu: nn.ReLU) -> None:
    """A ReLU that could not be fused: unsigned, same width and scale as its input."""
    (source,) = ctx.operands(node)
    out = ActFormat(source.out.bits, False, source.out.frac)
    ctx.add(ReLULayer(str(node.target), (source.name,), ctx.shape(node), out), node)


@lowers(ResidualAdd)
def _lower_add(ctx: LoweringContext, node: fx.Node, add: ResidualAdd) -> None:
    add_layer(ctx, node, str(node.target), ctx.operands(node, 2))


def add_layer(ctx: LoweringContext, node: fx.Node, name: str, operands: list[Layer]) -> None:
    """Align the operands to the finest scale ``F``, add, requantise to the output's."""
    shapes = {operand.shape for operand in operands}
    if len(shapes) != 1:
        raise ModelError(
            f"Cannot lower {name!r} (add): operand shapes differ: {sorted(shapes)} "
            "(broadcasting needs a multiplier-free layout the hardware lacks)"
        )
    common = max(operand.out.frac for operand in operands)
    align = tuple(common - operand.out.frac for operand in operands)
    relu = ctx.fusable_relu(node)
    out_node = relu or node
    out = ctx.calibrate(out_node, signed=relu is None)
    worst = sum(op.out.max_abs << a for op, a in zip(operands, align, strict=True))
    acc_bits = signed_bits(worst)
    if acc_bits > MAX_ACCUMULATOR_BITS:
        raise ModelError(f"Layer {name!r}: the add would need {acc_bits} accumulator bits")
    layer = AddLayer(
        name,
        tuple(operand.name for operand in operands),
        ctx.shape(out_node),
        out,
        align=align,
        shift=common - out.frac,
        relu=relu is not None,
        acc_bits=acc_bits,
    )
    ctx.add(layer, node, relu)


# --- the walk -----------------------------------------------------------------------------


def _describe(node: fx.Node) -> str:
    target = getattr(node.target, "__name__", None) or str(node.target)
    return f"{node.op} {target}"


#: Nodes that compute sizes, not tensors (``x.size(0)``, ``x.shape[0]``): no layer.
_SHAPE_CALLS: tuple[object, ...] = ("size", "dim")


def _is_shape(node: fx.Node) -> bool:
    """Whether ``node`` computes a size (used by ``view``/``reshape``), not a tensor."""
    if node.op == "call_method" and node.target in _SHAPE_CALLS:
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",):
        return True
    if node.op == "call_function" and node.target is operator.getitem:
        source = node.args[0]
        return isinstance(source, fx.Node) and _is_shape(source)
    return False


def _check_supported(ctx: LoweringContext, graph: fx.Graph) -> None:
    """Fail before calibration, listing every node no handler knows, in one line."""
    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    if len(placeholders) != 1:
        raise ModelError(f"The model must take one input tensor, not {len(placeholders)}")
    unknown = [
        _describe_unsupported(ctx, node)
        for node in graph.nodes
        if node.op not in ("placeholder", "output")
        and not _is_shape(node)
        and _handler(ctx, node) is None
    ]
    if unknown:
        raise ModelError(
            f"Cannot lower {len(unknown)} node(s), which have no multiplier-free integer "
            f"layer: {', '.join(unknown)} (see README, 'Supported operators')"
        )


def _describe_unsupported(ctx: LoweringContext, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"{str(node.target)!r} ({type(ctx.module(node)).__name__})"
    return f"{node.name!r} ({_describe(node)})"


def _lower_input(ctx: LoweringContext, node: fx.Node) -> None:
    stats = ctx.stats[node.name]
    out = ctx.calibrate(node, signed=stats.minimum < 0)
    ctx.add(InputLayer(INPUT_NAME, (), stats.shape, out), node)


def _walk(ctx: LoweringContext, graph: fx.Graph) -> str:
    """Lower every node in order; returns the name of the output layer."""
    output = None
    for node in graph.nodes:
        if node in ctx.produced:  # a ReLU fused into the layer before it
            continue
        if node.op == "placeholder":
            _lower_input(ctx, node)
        elif node.op == "output":
            result = node.args[0]
            if not isinstance(result, fx.Node):
                raise ModelError(f"The model must return one tensor, not {result!r}")
            output = ctx.produced[result].name
        elif not _is_shape(node):
            handler = _handler(ctx, node)
            assert handler is not None  # _check_supported
            handler(ctx, node, ctx.module(node) if node.op == "call_module" else None)
    assert output is not None  # every fx graph has an output node
    return output


def lower_model(
    model: nn.Module,
    calibration_inputs: torch.Tensor,
    *,
    bits: int,
    n1: Mapping[str, int],
    config: CalibrationConfig = CalibrationConfig(),
    meta: dict[str, Any] | None = None,
    baseline_model: nn.Module | None = None,
    twin_bits: int | None = None,
) -> IntModel:
    """Lower a model whose weights lie on their power-of-two grids to an integer model.

    Args:
        model: the model; every Conv2d and Linear fully quantized, BatchNorm folded.
        calibration_inputs: float inputs ``(N, C, H, W)`` that choose activation scales.
        bits: weight code width (2 to 8).
        n1: largest weight exponent per module name (INQ's, fixed at its start).
        config: activation width and range rule.
        meta: provenance stored in :attr:`IntModel.meta` (``bits`` and ``calibration`` are
            added).
        baseline_model: the FP32 model ``model`` was quantized from (BatchNorm folded);
            when given, every weight layer also carries its 8-bit uniform baseline, made
            from the same-named module's weights and bias.
        twin_bits: ``baseline_model`` is a uniform INQ model of this width (its weights on
            the grid of :mod:`inq_hw.intmodel.baseline`): the baseline is that trained
            twin, at this width, and a weight off its grid is an error.

    Returns:
        The integer model; layer names are the module names, the input is ``"input"``.

    Raises:
        ModelError: a module or operation without an integer layer, an unsupported option
            (groups, dilation, padding, pooling window ...), a weight off its grid, a layer
            without n1, or an accumulator wider than the executor allows; a baseline model
            whose modules do not match, or whose weights are not finite.
        ConfigError: a bad bit-width.

    Example usage::

        int_model = lower_model(model, data.train.x[:512], bits=5, n1=n1)
        x_int = quantize_input(images.numpy(), int_model.input.out)
        classes = predict(int_model, x_int)
    """
    check_bits(bits)
    if not isinstance(config, CalibrationConfig):
        raise TypeError(f"config must be a CalibrationConfig, not {type(config).__name__}")
    x = _check_calibration_inputs(calibration_inputs)
    graph_module = _trace(model)
    if baseline_model is not None and not isinstance(baseline_model, nn.Module):
        raise TypeError(
            f"baseline_model must be an nn.Module or None, not {type(baseline_model).__name__}"
        )
    if twin_bits is not None and baseline_model is None:
        raise ConfigError("twin_bits needs the twin's model (baseline_model)")
    ctx = LoweringContext(model, {}, bits, dict(n1), config, baseline_model, twin_bits)
    _check_supported(ctx, graph_module.graph)
    ctx.stats = _record(graph_module, x, config)
    output = _walk(ctx, graph_module.graph)
    info = {"bits": bits, "calibration": config.to_dict(), **(meta or {})}
    return IntModel(tuple(ctx.layers), output, info)


def _check_calibration_inputs(x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"Calibration inputs must be a floating-point tensor, not {kind}")
    if x.dim() < 2 or x.shape[0] < 1:
        raise ConfigError(f"Calibration inputs must be a batch (N, ...), not {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ConfigError("Calibration inputs must be finite")
    return x.detach()


def lower_checkpoint(
    path: str | os.PathLike[str],
    config: CalibrationConfig = CalibrationConfig(),
    *,
    twin: str | os.PathLike[str] | None = None,
) -> IntModel:
    """Lower a finished INQ checkpoint, calibrated on the start of its training split.

    Bits and per-layer n1 come from the checkpoint; ``meta`` records the source file and
    its SHA-256, the model and data set, bits, calibration and the float model's accuracy.
    The FP32 checkpoint the INQ run started from (its ``source``) gives every weight layer
    its 8-bit baseline when it is still there, unchanged (its SHA-256 is checked; a
    relative path is also looked for beside ``path``); ``meta["baseline"]`` records it.
    Otherwise the package has no baselines, ``meta["baseline"]`` is ``None`` and
    ``meta["baseline_reason"]`` says why.

    ``twin``: a uniform INQ checkpoint (``weight_format="uniform"``) trained from the same
    FP32 checkpoint; its weights, exactly, become the baseline at its bit-width (the
    uniform twin at equal width), recorded in ``meta["baseline"]``.

    Raises:
        CheckpointError: missing, corrupted, or not of kind ``"inq"``.
        ModelError: as :func:`lower_model`; a power-of-two checkpoint given as ``twin``
            or a uniform one as ``path``, or a twin from another FP32 source or model.

    Example usage::

        int_model = lower_checkpoint("runs/inq5.pt", CalibrationConfig(samples=256))
    """
    payload = load_checkpoint(path, kinds=("inq",))
    if _weight_format(payload) != "po2":
        raise ModelError(
            f"{os.fspath(path)} holds uniform weights; lower its power-of-two run and pass "
            "this one as the twin (inq-hw export --twin)"
        )
    model, data = load_model(payload)
    bits = int(payload["inq"]["config"]["bits"])
    n1 = {name: int(layer["n1"]) for name, layer in payload["inq"]["layers"].items()}
    meta = {
        "source": {"path": os.fspath(path), "sha256": file_sha256(path)},
        "model": payload["model"],
        "dataset": payload["dataset"],
        "bits": bits,
        "calibration": config.to_dict(),
        "float_accuracy": payload["metrics"]["accuracy"],
    }
    twin_bits = None
    baseline_model: nn.Module | None
    if twin is not None:
        baseline_model, twin_bits, found = _uniform_twin(twin, payload, data)
        meta["baseline"] = {"weight_bits": twin_bits, "source": found}
    else:
        baseline_model, found = _fp32_source(path, payload, data)
        if baseline_model is None:
            meta.update(baseline=None, baseline_reason=found)
        else:
            meta["baseline"] = {"weight_bits": BASELINE_BITS, "source": found}
    calibration = data.train.x[: config.samples]
    return lower_model(
        model,
        calibration,
        bits=bits,
        n1=n1,
        config=config,
        meta=meta,
        baseline_model=baseline_model,
        twin_bits=twin_bits,
    )


def _weight_format(payload: dict[str, Any]) -> str:
    from inq_hw.inq import INQConfig

    return INQConfig.from_dict(payload["inq"]["config"]).weight_format


def _uniform_twin(
    path: str | os.PathLike[str], payload: dict[str, Any], data: Dataset
) -> tuple[nn.Module, int, dict[str, Any]]:
    """The model of the uniform INQ checkpoint ``path``, its bit-width and provenance,
    checked to be a uniform run from the FP32 checkpoint and model ``payload`` came from."""
    twin = load_checkpoint(path, kinds=("inq",))
    where = os.fspath(path)
    if _weight_format(twin) != "uniform":
        raise ModelError(
            f"The twin {where} is a power-of-two INQ run; train it with "
            "'inq-hw quantize --weight-format uniform'"
        )
    if twin.get("source", {}).get("sha256") != payload.get("source", {}).get("sha256"):
        raise ModelError(f"The twin {where} was trained from another FP32 checkpoint")
    if twin["model"] != payload["model"]:
        raise ModelError(f"The twin {where} is of another model")
    model, _ = load_model(twin, data)
    found = {
        "path": where,
        "sha256": file_sha256(path),
        "weight_format": "uniform",
        "accuracy": twin["metrics"]["accuracy"],
        "one_shot_accuracy": twin["metrics"]["one_shot_accuracy"],
    }
    return model, int(twin["inq"]["config"]["bits"]), found


def _fp32_source(
    path: str | os.PathLike[str], payload: dict[str, Any], data: Dataset
) -> tuple[nn.Module | None, Any]:
    """The FP32 model an INQ checkpoint came from and where it was found, or ``None`` and
    why not. A relative source path is tried as given, then beside the INQ checkpoint."""
    source = payload.get("source")
    if not isinstance(source, dict) or not {"path", "sha256"} <= source.keys():
        return None, "the INQ checkpoint records no FP32 source"
    given = Path(source["path"])
    candidates = [given]
    if not given.is_absolute():
        candidates.append(Path(path).parent / given.name)
    existing = [c for c in candidates if c.is_file()]
    if not existing:
        return None, f"the FP32 source checkpoint {source['path']} is not found"
    for candidate in existing:
        if file_sha256(candidate) == source["sha256"]:
            fp32, _ = load_model(load_checkpoint(candidate, kinds=("fp32",)), data)
            return fp32, {"path": os.fspath(candidate), "sha256": source["sha256"]}
    return None, f"the FP32 source checkpoint {source['path']} has changed since the INQ run"


# The handlers of general convolutions, pooling, clamps and functional calls register
# themselves on import (kept in their own module; they use the registry above).
from inq_hw import lower_ops  # noqa: E402, F401
