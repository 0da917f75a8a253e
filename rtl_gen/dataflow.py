"""The streaming dataflow top: a whole integer model as one engine per layer.

:func:`build_dataflow` walks a package's layers and builds an engine for each
(:mod:`rtl_gen.engines`): convolutions with line buffers and a sliding window, max and
average pooling, stand-alone ReLU, Linear layers, residual adds; Flatten is wiring (the
next Linear reads the pixel beats in flatten order).

Every layer reads one earlier layer, except a residual add, which reads two *branches*
from one *fork* (a layer whose output both read): the identity, or layers of their own
(ResNet's 1x1 downsampling shortcut). The fork's output goes to both branches in the same
cycle; the branch with fewer engines is ahead (it needs less of the fork's stream per
result), so a :class:`~rtl_gen.engines.SkipFifo` at its start holds the stream until the
other branch's result for the same pixel comes out. Each FIFO is as deep as the control
model finds a stall-free stream needs (:func:`_size_fifos`): never a stall, and, under
any stall pattern, no deadlock.

Each weight layer's dot products run on an unrolled constant-weight unit or, folded, on a
unit that takes several cycles per result (:mod:`rtl_gen.folded`); the *folding* per
layer trades logic for cycles. The top reads the image one pixel (all
channels) per beat in raster order and gives one beat per image: the integer logits and
the argmax class (the lowest index among equal maxima, as ``numpy.argmax``).

The multiplier twin (``baseline="mult8"``) is the same top with every weight layer on its
8-bit uniform weights and ``*``.

*Pipelining* puts ``N`` register stages inside a layer's dot stage (its adder trees, or
the lanes of a folded one): shorter paths between registers for a faster clock, ``N``
more cycles of latency per stage (folded: also ``N`` more cycles per result). The control
models (:mod:`rtl_gen.timing`) include them, so the manifest's latency and interval stay
exact; :mod:`rtl_gen.pipelining` chooses ``N`` for a target clock.

The *adder graph* (``"tree"`` or ``"shared"``, :mod:`rtl_gen.adder_graph`) and its depth
limit apply to every unrolled weight layer's unit: a shared graph computes sums that
several outputs need once, with the same ``N`` registers on every path, so the control
models and the manifest's timing are unchanged. Folded layers keep their lanes (one
product per lane and cycle), whatever the graph.
"""

import copy
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from inq_hw.errors import ConfigError
from inq_hw.intmodel.arith import ActFormat
from inq_hw.intmodel.layers import (
    AddLayer,
    AvgPoolLayer,
    Conv2dLayer,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    MeanPoolLayer,
    ReLULayer,
    WeightLayer,
)
from inq_hw.intmodel.package import load_package, package_hash
from rtl_gen.arith import act_shape
from rtl_gen.engines import (
    DEFAULT_LINE_BUFFER,
    AddEngine,
    ConvEngine,
    LinearEngine,
    MaxPoolEngine,
    MeanPoolEngine,
    ReLUEngine,
    SkipFifo,
    UnrolledDot,
    beat_signature,
    line_buffer_in_memory,
)
from rtl_gen.export import Design, write_designs
from rtl_gen.folded import FoldedDot
from rtl_gen.names import verilog_identifier
from rtl_gen.timing import (
    UNBOUNDED,
    AddTiming,
    ConvTiming,
    EngineTiming,
    FifoTiming,
    FoldedDotTiming,
    LinearTiming,
    PassTiming,
    PipelineTiming,
    PipeTiming,
    PoolTiming,
    Timing,
    UnrolledDotTiming,
    measure,
)
from rtl_gen.units import ADDER_GRAPHS, BASELINES, DEFAULT_ADDER_GRAPH, ConstDotUnit, Requant

__all__ = [
    "DataflowTop",
    "argmax_rounds",
    "build_dataflow",
    "cap_folding",
    "dataflow_design",
    "dataflow_params",
    "expand_folding",
    "generate_dataflow",
    "parse_folds",
]

MAX_STAGES = 16
#: Beats of the FIFO behind each port of a pipelined top (two: one beat per cycle).
PORT_SLICE_DEPTH = 2


@dataclass(frozen=True)
class _Stage:
    """One engine and its control model, with what the manifest says of it; ``source``:
    the index of the stage whose output its input reads (``-1``: the top's input);
    ``skip``: for a residual add, that of its second input."""

    engine: wiring.Component
    timing: EngineTiming
    info: dict[str, Any]
    skip: int | None = None
    source: int = 0  # set by _stages: the stage whose output ``i`` reads (-1: the input)


@dataclass(frozen=True)
class _Geometry:
    """The stream between two engines: beats per image, integers per beat, format, and
    the ``(C, H, W)`` shape when it is a feature map."""

    beats: int
    elems: int
    fmt: ActFormat
    chw: tuple[int, int, int] | None


def _weights(layer: WeightLayer, baseline: str | None) -> tuple[Any, Any, int, str, int | None]:
    """Weight matrix, bias, requantisation shift and mode of the layer or its twin, and
    the twin's weight width (:attr:`WeightLayer.twin_bits`; ``None`` for shift-add)."""
    if baseline is None:
        weights = layer.weights_int().reshape(layer.codes.shape[0], -1)
        return weights, layer.bias, layer.shift, "shift-add", None
    if not layer.has_baseline:
        raise ConfigError(f"The package has no uniform baseline for layer {layer.name!r}")
    twin = layer.arithmetic("baseline")
    weights = twin.weights.reshape(layer.codes.shape[0], -1)
    return weights, twin.bias, twin.shift, "multiply", layer.twin_bits


@dataclass(frozen=True)
class _DotChoice:
    """How a weight layer's dot stage is built: its fold and pipeline stages, (when
    unrolled) its adder graph and depth limit (``None``: the unit's default), and (a
    convolution) where its line buffers go (:data:`rtl_gen.engines.LINE_BUFFERS`)."""

    fold: int
    stages: int
    adder_graph: str | None = None
    max_depth: int | None = None
    line_buffer: str = "regs"


def _dot(
    layer: WeightLayer, in_format: ActFormat, baseline: str | None, choice: _DotChoice
) -> tuple[wiring.Component, UnrolledDotTiming | FoldedDotTiming]:
    weights, bias, shift, mode, twin_bits = _weights(layer, baseline)
    requant = Requant(shift=shift, relu=layer.relu, out=layer.out)
    if choice.fold == 1:
        unit = ConstDotUnit(
            weights=weights,
            bias=bias,
            in_format=in_format,
            mode=mode,
            requant=requant,
            stages=choice.stages,
            adder_graph=choice.adder_graph,
            max_depth=choice.max_depth,
        )
        return UnrolledDot(unit), UnrolledDotTiming(choice.stages)
    folded = FoldedDot(
        weights=weights,
        bias=bias,
        in_format=in_format,
        mode=mode,
        requant=requant,
        fold=choice.fold,
        weight_bits=twin_bits,
        stages=choice.stages,
    )
    return folded, FoldedDotTiming(folded.cycles)


def _check_fold(layer: WeightLayer, fold: int) -> int:
    outputs = layer.codes.shape[0]
    if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= outputs:
        raise ConfigError(
            f"Folding of layer {layer.name!r} must be an integer from 1 to {outputs}, not {fold!r}"
        )
    return fold


def _check_stages(layer: WeightLayer, stages: int) -> int:
    if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= MAX_STAGES:
        raise ConfigError(
            f"Pipeline stages of layer {layer.name!r} must be an integer from 0 to "
            f"{MAX_STAGES}, not {stages!r}"
        )
    return stages


def _dot_info(choice: _DotChoice, dot: wiring.Component) -> dict[str, Any]:
    """Fold, pipeline and adder graph of a dot stage (``None`` for a folded one)."""
    graph = dot.unit.adder_graph if isinstance(dot, UnrolledDot) else None
    return {"fold": choice.fold, "pipeline": choice.stages, "adder_graph": graph}


def _check_graph(
    model: IntModel, baseline: str | None, folding: Mapping[str, int], graph: _DotChoice
) -> None:
    """Refuse an adder graph the top cannot build: unknown, on the twin, or on a top
    whose weight layers are all folded (folded lanes have no adder graph)."""
    if graph.adder_graph is not None and graph.adder_graph not in ADDER_GRAPHS:
        raise ConfigError(f"Adder graph must be one of {ADDER_GRAPHS}, not {graph.adder_graph!r}")
    depth = graph.max_depth
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ConfigError(f"Depth limit must be a positive integer, not {depth!r}")
    if graph.adder_graph != "shared" and depth is None:
        return
    if baseline is not None:
        raise ConfigError("Shared adder graphs and depth limits need the shift-add top, not mult8")
    if all(folding.get(layer.name, 1) > 1 for layer in model.weight_layers()):
        raise ConfigError(
            "The adder graph applies to unrolled weight layers (fold 1); every weight layer "
            "of this top is folded, and folded layers have no adder graph"
        )


def _conv_stage(
    layer: Conv2dLayer, geo: _Geometry, baseline: str | None, choice: _DotChoice
) -> tuple[_Stage, _Geometry]:
    if geo.chw is None:
        raise ConfigError(f"Convolution {layer.name!r} needs a feature map as its input")
    c, h, w = geo.chw
    k = layer.codes.shape[-1]
    dot, dot_timing = _dot(layer, geo.fmt, baseline, choice)
    engine = ConvEngine(
        dot=dot,
        in_format=geo.fmt,
        channels=c,
        size=(h, w),
        kernel=k,
        stride=layer.stride,
        padding=layer.padding,
        line_buffer=choice.line_buffer,
    )
    timing = ConvTiming(dot_timing, (h, w), k, layer.stride, layer.padding)
    info = {
        "layer": layer.name,
        "kind": "conv2d",
        **_dot_info(choice, dot),
        "window_inputs": c * k * k,
        "line_buffer": "bram" if engine.line_memory else "regs",
    }
    out = _Geometry(layer.shape[1] * layer.shape[2], layer.shape[0], layer.out, layer.shape)  # type: ignore[arg-type]
    return _Stage(engine, timing, info), out


def _linear_stage(
    layer: LinearLayer, geo: _Geometry, baseline: str | None, choice: _DotChoice
) -> tuple[_Stage, _Geometry]:
    dot, dot_timing = _dot(layer, geo.fmt, baseline, choice)
    engine = LinearEngine(dot=dot, in_format=geo.fmt, beats=geo.beats, elems=geo.elems)
    inputs = geo.beats * geo.elems
    info = {"layer": layer.name, "kind": "linear", **_dot_info(choice, dot), "inputs": inputs}
    out = _Geometry(1, layer.shape[0], layer.out, None)
    return _Stage(engine, LinearTiming(dot_timing, geo.beats), info), out


def _plain_info(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    """What the manifest says of an engine without a dot stage (fold 1, no pipeline,
    no adder graph), and ``extra``."""
    return {"layer": name, "kind": kind, "fold": 1, "pipeline": 0, "adder_graph": None, **extra}


def _pool_stage(layer: MaxPoolLayer, geo: _Geometry) -> tuple[_Stage, _Geometry]:
    if geo.chw is None:
        raise ConfigError(f"Pooling {layer.name!r} needs a feature map as its input")
    if layer.kernel != layer.stride:
        raise ConfigError(
            f"The dataflow top pools with kernel == stride only; {layer.name!r} has "
            f"kernel {layer.kernel} and stride {layer.stride}"
        )
    c, h, w = geo.chw
    engine = MaxPoolEngine(fmt=geo.fmt, channels=c, size=(h, w), kernel=layer.kernel)
    info = _plain_info(layer.name, "maxpool")
    out = _Geometry(layer.shape[1] * layer.shape[2], c, layer.out, layer.shape)  # type: ignore[arg-type]
    return _Stage(engine, PoolTiming((h, w), layer.kernel), info), out


def _mean_stage(layer: MeanPoolLayer | AvgPoolLayer, geo: _Geometry) -> tuple[_Stage, _Geometry]:
    if geo.chw is None:
        raise ConfigError(f"Pooling {layer.name!r} needs a feature map as its input")
    if isinstance(layer, AvgPoolLayer):
        kernel, stride, multiplier, mode = (layer.kernel,) * 2, (layer.stride,) * 2, 1, "shift"
    else:
        kernel, stride = (layer.kernel_h, layer.kernel_w), (layer.stride_h, layer.stride_w)
        multiplier, mode = layer.multiplier, layer.mode
    if kernel != stride:
        raise ConfigError(
            f"The dataflow top averages windows side by side (kernel == stride) only; "
            f"{layer.name!r} has kernel {kernel} and stride {stride}"
        )
    c, h, w = geo.chw
    engine = MeanPoolEngine(
        fmt=geo.fmt,
        out=layer.out,
        channels=c,
        size=(h, w),
        kernel=kernel,
        multiplier=multiplier,
        shift=layer.shift,
    )
    info = _plain_info(layer.name, "meanpool", mode=mode, window=kernel[0] * kernel[1])
    out = _Geometry(layer.shape[1] * layer.shape[2], c, layer.out, layer.shape)  # type: ignore[arg-type]
    return _Stage(engine, PoolTiming((h, w), kernel), info), out


def _add_stage(
    layer: AddLayer, ports: tuple[int, int], geos: tuple[_Geometry, _Geometry]
) -> _Stage:
    """A residual add whose input ``i`` is operand ``ports[0]`` of the layer, ``skip``
    operand ``ports[1]`` (the one through a FIFO), of streams ``geos``."""
    a, b = geos
    if (a.beats, a.elems, a.chw) != (b.beats, b.elems, b.chw):
        raise ConfigError(
            f"The dataflow top adds streams of one shape; residual add {layer.name!r} reads "
            f"{layer.inputs[ports[0]]!r} of shape {a.chw or (a.elems,)} and "
            f"{layer.inputs[ports[1]]!r} of shape {b.chw or (b.elems,)}"
        )
    engine = AddEngine(
        formats=(a.fmt, b.fmt),
        align=(layer.align[ports[0]], layer.align[ports[1]]),
        shift=layer.shift,
        relu=layer.relu,
        out=layer.out,
        elems=a.elems,
    )
    info = _plain_info(layer.name, "add", skip=layer.inputs[ports[1]])
    return _Stage(engine, AddTiming(), info)


def _fifo_stage(add: AddLayer, fork: str, geo: _Geometry, depth: int | None) -> _Stage:
    """The FIFO of residual add ``add``: the stream of layer ``fork`` on its way into the
    branch that is ahead. ``depth=None``: unbounded, no engine yet (:func:`_size_fifos`)."""
    info = _plain_info(f"{add.name}.fifo", "fifo", reads=fork, depth=depth)
    if depth is None:
        return _Stage(_UNSIZED, FifoTiming(UNBOUNDED), info)
    layout = data.ArrayLayout(act_shape(geo.fmt), geo.elems)
    return _Stage(SkipFifo(layout, depth), FifoTiming(depth), info)


#: The engine of a FIFO not sized yet: :func:`_size_fifos` replaces it before the stage
#: leaves :func:`_stages`.
_UNSIZED = cast(wiring.Component, None)


def _relu_stage(layer: ReLULayer, geo: _Geometry) -> tuple[_Stage, _Geometry]:
    engine = ReLUEngine(in_format=geo.fmt, out=layer.out, elems=geo.elems)
    info = _plain_info(layer.name, "relu")
    return _Stage(engine, PassTiming(), info), _Geometry(geo.beats, geo.elems, layer.out, geo.chw)


@dataclass(frozen=True)
class _Branches:
    """Where the FIFOs go. ``before``: a layer name to the add whose FIFO comes right
    before it (the first layer of the branch that is ahead; the add itself when that
    branch is the identity); ``ports``: an add's operand indices, ``(i, skip)``, the
    second through the FIFO; ``forks``: an add's fork layer."""

    before: dict[str, str]
    ports: dict[str, tuple[int, int]]
    forks: dict[str, str]


def _branch(model: IntModel, readers: Mapping[str, int], name: str) -> tuple[list[str], str]:
    """The layers back from ``name`` to the first whose output another layer also reads
    (the fork): the branch's layers (last first) and the fork."""
    path = []
    while readers[name] == 1 and len(model.layer(name).inputs) == 1:
        path.append(name)
        name = model.layer(name).inputs[0]
    return path, name


def _branches(model: IntModel) -> _Branches:
    """Check that the top can stream ``model`` and place its FIFOs.

    Every layer reads one earlier layer, except a residual add, which reads two branches
    from one fork (an earlier layer whose output both read): the identity, or layers of
    their own (ResNet's downsampling convolution). The branch with fewer engines is
    ahead (it needs less of the fork's stream for a result), so the FIFO goes at its
    start; :func:`_size_fifos` checks that this keeps the timing of unbounded FIFOs."""
    layers = list(model.layers)
    readers: dict[str, int] = dict.fromkeys((layer.name for layer in layers), 0)
    for layer in layers[1:]:
        for name in layer.inputs:
            readers[name] += 1
    branches = _Branches({}, {}, {})
    for layer in layers[1:]:
        inputs = layer.inputs
        if len(inputs) == 1:
            continue
        if not isinstance(layer, AddLayer):
            raise ConfigError(
                f"The dataflow top has no engine for {layer.kind} layers ({layer.name!r})"
            )
        if len(inputs) != 2 or len(set(inputs)) != 2:
            raise ConfigError(
                f"The dataflow top adds two different streams; {layer.name!r} reads {list(inputs)}"
            )
        (path_a, fork_a), (path_b, fork_b) = (_branch(model, readers, n) for n in inputs)
        if fork_a != fork_b:
            raise ConfigError(
                f"The dataflow top adds two branches from one layer; {layer.name!r} reads "
                f"{list(inputs)}, which branch from {fork_a!r} and {fork_b!r}"
            )
        engines = [sum(not isinstance(model.layer(n), FlattenLayer) for n in p)
                   for p in (path_a, path_b)]  # fmt: skip
        ahead = 0 if engines[0] < engines[1] else 1
        path = (path_a, path_b)[ahead]
        branches.before[path[-1] if path else layer.name] = layer.name
        branches.ports[layer.name] = (1 - ahead, ahead)
        branches.forks[layer.name] = fork_a
    if layers[-1].name != model.output:
        raise ConfigError(f"The model's output {model.output!r} is not its last layer")
    return branches


def _input_geometry(layer: InputLayer) -> _Geometry:
    if len(layer.shape) == 3:
        c, h, w = layer.shape
        return _Geometry(h * w, c, layer.out, (c, h, w))
    return _Geometry(1, layer.shape[0], layer.out, None)


def _check_names(model: IntModel, what: str, names: Mapping[str, int]) -> None:
    unknown = set(names) - {layer.name for layer in model.weight_layers()}
    if unknown:
        raise ConfigError(f"{what} names layers that are not weight layers: {sorted(unknown)}")


def _check_plain(layer: Layer) -> None:
    """Refuse the convolution and pooling options the engines do not implement."""
    if isinstance(layer, Conv2dLayer) and not layer.geometry().plain:
        raise ConfigError(
            f"The dataflow top's convolution engine runs square kernels, one stride and "
            f"padding, dilation 1 and groups 1, not layer {layer.name!r}: {layer.geometry()}"
        )
    if isinstance(layer, MaxPoolLayer) and not layer.plain:
        raise ConfigError(
            f"The dataflow top's pooling engine has no padding or ceil_mode, which layer "
            f"{layer.name!r} needs"
        )


def _stages(
    model: IntModel,
    baseline: str | None,
    folding: Mapping[str, int],
    pipeline: Mapping[str, int],
    graph: _DotChoice,
) -> tuple[list[_Stage], _Geometry, _Geometry]:
    branches = _branches(model)
    _check_names(model, "Folding", folding)
    _check_names(model, "Pipelining", pipeline)
    _check_graph(model, baseline, folding, graph)
    first = _input_geometry(model.input)
    stages: list[_Stage] = []
    # Per layer: the stage whose output carries it (-1: the top's input), and its stream.
    made: dict[str, tuple[int, _Geometry]] = {model.input.name: (-1, first)}
    fifos: dict[str, int] = {}  # an add's name: its FIFO stage
    for layer in model.layers[1:]:
        if layer.name in branches.before:  # the FIFO on the way into the branch ahead
            add = model.layer(branches.before[layer.name])
            assert isinstance(add, AddLayer)
            source, geo = made[branches.forks[add.name]]
            stages.append(dataclasses.replace(_fifo_stage(add, branches.forks[add.name], geo, None),
                                              source=source))  # fmt: skip
            fifos[add.name] = len(stages) - 1
        source, geo = made[layer.inputs[0]]
        if layer.name in branches.before and not isinstance(layer, AddLayer):
            source = fifos[branches.before[layer.name]]
        choice = _DotChoice(1, 0)
        if isinstance(layer, WeightLayer):
            choice = _DotChoice(
                _check_fold(layer, folding.get(layer.name, 1)),
                _check_stages(layer, pipeline.get(layer.name, 0)),
                graph.adder_graph,
                graph.max_depth,
                graph.line_buffer,
            )
        _check_plain(layer)
        skip = None
        if isinstance(layer, Conv2dLayer):
            stage, geo = _conv_stage(layer, geo, baseline, choice)
        elif isinstance(layer, LinearLayer):
            stage, geo = _linear_stage(layer, geo, baseline, choice)
        elif isinstance(layer, MaxPoolLayer):
            stage, geo = _pool_stage(layer, geo)
        elif isinstance(layer, MeanPoolLayer | AvgPoolLayer):
            stage, geo = _mean_stage(layer, geo)
        elif isinstance(layer, ReLULayer):
            stage, geo = _relu_stage(layer, geo)
        elif isinstance(layer, AddLayer):
            ports = branches.ports[layer.name]
            (source, geo), (skip, skip_geo) = (made[layer.inputs[p]] for p in ports)
            if layer.name in branches.before:  # the identity: straight from the FIFO
                skip = fifos[layer.name]
            stage = _add_stage(layer, ports, (geo, skip_geo))
            geo = _Geometry(geo.beats, geo.elems, layer.out, geo.chw)
        elif isinstance(layer, FlattenLayer):
            made[layer.name] = (source, _Geometry(geo.beats, geo.elems, layer.out, None))
            continue
        else:
            raise ConfigError(
                f"The dataflow top has no engine for {layer.kind} layers ({layer.name!r})"
            )
        stages.append(dataclasses.replace(stage, source=source, skip=skip))
        made[layer.name] = (len(stages) - 1, geo)
    if made[model.output][0] != len(stages) - 1:
        raise ConfigError(f"The model's output {model.output!r} is not its last engine")
    last = made[model.output][1]
    if last.beats != 1:
        raise ConfigError("The dataflow top needs a model whose output is a vector")
    return _size_fifos(model, stages, first, made), first, last


def _timing_model(stages: list[_Stage]) -> PipelineTiming:
    """The stages' control models, copied (they are stateful), joined as the top is."""
    skips = {n: stage.skip for n, stage in enumerate(stages) if stage.skip is not None}
    sources = [stage.source for stage in stages]
    return PipelineTiming(copy.deepcopy([stage.timing for stage in stages]), skips, sources)


def _size_fifos(
    model: IntModel, stages: list[_Stage], first: _Geometry, made: dict[str, tuple[int, _Geometry]]
) -> list[_Stage]:
    """Each FIFO as deep as its deepest write needs when images stream back to back
    without stalls (:class:`~rtl_gen.timing.FifoTiming` ``need``), so the FIFOs never
    hold the top back: its latency and interval are those of unbounded FIFOs (checked).
    One word less would deadlock: the branch behind needs that many beats of the fork's
    stream before its result for the FIFO's oldest beat comes out.

    Under stalls a full FIFO holds the fork (and so the branch behind) in place with
    ``depth + 1`` beats buffered from the one the add waits for, as many as the branch
    behind had taken when it gave that beat's result without stalls; the engines compute
    from data, not time, so it gives that result again and the top cannot deadlock."""
    fifos = [n for n, stage in enumerate(stages) if stage.info["kind"] == "fifo"]
    if not fifos:
        return stages
    unbounded = _timing_model(stages)
    try:
        free = measure(unbounded, first.beats)
    except RuntimeError as error:
        raise ConfigError(f"The dataflow top cannot stream this graph: {error}") from None
    sized = list(stages)
    for n in fifos:
        fifo = unbounded.engines[n]
        assert isinstance(fifo, FifoTiming)
        info = stages[n].info
        add = model.layer(info["layer"].removesuffix(".fifo"))
        assert isinstance(add, AddLayer)
        geo = made[info["reads"]][1]
        sized[n] = dataclasses.replace(
            _fifo_stage(add, info["reads"], geo, fifo.need), source=stages[n].source
        )
    if measure(_timing_model(sized), first.beats) != free:
        raise RuntimeError("The sized FIFOs changed the top's timing")
    return sized


class DataflowTop(wiring.Component):
    """The whole network as a streaming pipeline (see module docstring).

    Members
    -------
    i : In(stream of input pixels: ``C`` integers per beat, raster order)
    o : Out(stream of one beat per image: ``{logits: ArrayLayout, label: unsigned}``)
    """

    def __init__(
        self,
        stages: list[_Stage],
        first: _Geometry,
        last: _Geometry,
        *,
        adder_graph: str = DEFAULT_ADDER_GRAPH,
        max_depth: int | None = None,
        line_buffer: str = DEFAULT_LINE_BUFFER,
        argmax_stages: int = 0,
        registered_ports: bool = False,
    ) -> None:
        self.stages, self.first, self.last = stages, first, last
        #: Register stages of the argmax after the last engine (0: combinational).
        self.argmax_stages = argmax_stages
        #: Whether a :data:`PORT_SLICE_DEPTH`-beat FIFO sits behind ``i`` and before ``o``,
        #: so that no combinational path runs from a port through the engines' ready chain,
        #: and after each engine but the last with one reader (``slices``), so no ready
        #: chain runs through more than one engine: a pooling engine's ``o.ready`` from a
        #: folded stage's handshake, ANDed into the clock enable of all its partials, was
        #: the critical path of the 4-bit digits-cnn on ECP5-85k (13.1 ns) while only the
        #: weight engines had slices. A reader that is a skip FIFO needs none (its
        #: ``i.ready`` is a register), and neither does the FIFO itself.
        self.registered_ports = registered_ports
        self.slices: tuple[int, ...] = ()
        if registered_ports:
            readers = [stage.source for stage in stages] + [
                stage.skip for stage in stages if stage.skip is not None
            ]
            self.slices = tuple(
                n
                for n, stage in enumerate(stages[:-1])
                if stage.info["kind"] != "fifo"
                and readers.count(n) == 1
                and all(s.info["kind"] != "fifo" for s in stages if s.source == n)
            )
        #: The unrolled layers' adder graph and depth limit (folded layers have none).
        self.adder_graph, self.max_depth = adder_graph, max_depth
        #: The line buffers asked for (each convolution's choice is in its ``info``).
        self.line_buffer = line_buffer
        self.out_layout = data.StructLayout(
            {
                "logits": data.ArrayLayout(act_shape(last.fmt), last.elems),
                "label": unsigned(max(1, ceil_log2(last.elems))),
            }
        )
        super().__init__(
            {
                "i": In(beat_signature(first.fmt, first.elems)),
                "o": Out(stream.Signature(self.out_layout)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        engines = [stage.engine for stage in self.stages]
        for n, engine in enumerate(engines):
            m.submodules[f"engine{n}"] = engine
        source_in: Any = wiring.flipped(self.i)
        if self.registered_ports:  # the top's i.ready from a register, not the engines'
            m.submodules.in_slice = in_slice = SkipFifo(self.i.payload.shape(), PORT_SLICE_DEPTH)
            wiring.connect(m, wiring.flipped(self.i), in_slice.i)
            source_in = in_slice.o
        sink: Any = self.o
        if self.registered_ports:  # and o.ready into a register, not into the engines
            m.submodules.out_slice = out_slice = SkipFifo(self.out_layout, PORT_SLICE_DEPTH)
            wiring.connect(m, out_slice.o, wiring.flipped(self.o))
            sink = out_slice.i
        readers: dict[int, list[Any]] = {n: [] for n in range(-1, len(engines))}
        for n, stage in enumerate(self.stages):
            readers[stage.source].append(engines[n].i)
            if stage.skip is not None:
                readers[stage.skip].append(engines[n].skip)
        for source, ports in readers.items():
            out = source_in if source < 0 else engines[source].o
            if not ports:  # the last engine: the top's output, below
                continue
            if source in self.slices:
                fifo = SkipFifo(out.payload.shape(), PORT_SLICE_DEPTH)
                m.submodules[f"slice{source}"] = fifo
                wiring.connect(m, out, fifo.i)
                out = fifo.o
            if len(ports) == 1:
                wiring.connect(m, out, ports[0])
            else:
                _fork(m, out, ports)
        last = engines[-1].o
        if not self.argmax_stages:
            label, logits = _argmax(m, last.payload)
            m.d.comb += [sink.valid.eq(last.valid), last.ready.eq(sink.ready)]
        else:  # the tournament's rounds registered, all advancing together (PipeTiming)
            advance = Signal()
            valid = [Signal(name=f"argmax_valid{r}") for r in range(self.argmax_stages)]
            label, logits = _argmax(m, last.payload, advance)
            m.d.comb += [
                advance.eq(~valid[-1] | sink.ready),
                last.ready.eq(advance),
                sink.valid.eq(valid[-1]),
            ]
            with m.If(advance):
                m.d.sync += [
                    valid[0].eq(last.valid),
                    *(valid[r].eq(valid[r - 1]) for r in range(1, len(valid))),
                ]
        m.d.comb += [sink.payload.logits.eq(logits), sink.payload.label.eq(label)]
        return m

    def timing(self) -> Timing:
        """Latency and interval without stalls, from the engines' control models."""
        return measure(self.timing_model(), self.first.beats)

    def timing_model(self) -> PipelineTiming:
        """A fresh cycle-exact control model of the whole top (reset state)."""
        model = _timing_model(self.stages)
        engines, inputs, skips = list(model.engines), list(model.inputs), dict(model.skips)
        if self.argmax_stages:
            engines, inputs = (
                [*engines, PipeTiming(self.argmax_stages)],
                [*inputs, len(engines) - 1],
            )
        sliced = set(self.slices)
        if self.registered_ports:  # the input's FIFO and the output's (after the argmax)
            sliced |= {-1, len(engines) - 1}
        if not sliced and len(engines) == len(model.engines):
            return model
        # Each sliced stream's FIFO goes right after its source; readers read the FIFO.
        timed: list[EngineTiming] = []
        sources: list[int] = []
        joins: dict[int, int] = {}
        read = {-1: -1}
        for n, engine in [(-1, None), *enumerate(engines)]:
            if engine is not None:
                position = len(timed)
                timed.append(engine)
                sources.append(read[inputs[n]])
                if n in skips:
                    joins[position] = read[skips[n]]
                read[n] = position
            if n in sliced:
                timed.append(FifoTiming(PORT_SLICE_DEPTH))
                sources.append(read[n])
                read[n] = len(timed) - 1
        return PipelineTiming(timed, joins, sources)


def _fork(m: Module, out: Any, ports: list[Any]) -> None:
    """One stream to several readers, a beat to all of them in the same cycle: ready
    when every reader is; each reader sees it valid when all the others are ready (so a
    reader's ready must not depend on its valid, which no engine's or FIFO's does)."""
    readies = [port.ready for port in ports]
    m.d.comb += out.ready.eq(_all(readies))
    for n, port in enumerate(ports):
        others = _all(readies[:n] + readies[n + 1 :])
        m.d.comb += [port.valid.eq(out.valid & others), port.payload.eq(out.payload)]


def _all(values: list[Any]) -> Any:
    result: Any = 1
    for value in values:
        result = value & result
    return result


def argmax_rounds(elems: int) -> int:
    """Rounds of the argmax tournament over ``elems`` logits: the register stages a
    pipelined top puts after its last engine (:class:`DataflowTop`)."""
    return ceil_log2(elems) if elems > 1 else 0


def _argmax(m: Module, values: Any, advance: Any = None) -> tuple[Signal, Any]:
    """Index of the first maximum, by a balanced tournament of :func:`argmax_rounds`
    rounds (a chain of ``n - 1`` comparisons was the top's critical path on ECP5): in each
    pair the right entry, whose indices all follow the left's, wins only when strictly
    greater, so ties keep the lowest index, as ``numpy.argmax``. With ``advance`` every
    round's results, and the logits beside them, are registered in cycles of ``advance``;
    returns the label and the logits that go with it."""
    width = max(1, ceil_log2(len(values)))
    entries: list[tuple[Any, Any]] = [(values[n], Const(n, width)) for n in range(len(values))]
    logits, level = values, 0
    while len(entries) > 1:
        paired: list[tuple[Any, Any]] = []
        for j in range(0, len(entries) - 1, 2):
            (left, left_index), (right, right_index) = entries[j], entries[j + 1]
            value = Signal.like(values[0], name=f"max{level}_{j // 2}")
            index = Signal(unsigned(width), name=f"argmax{level}_{j // 2}")
            greater = right > left
            m.d.comb += [
                value.eq(Mux(greater, right, left)),
                index.eq(Mux(greater, right_index, left_index)),
            ]
            paired.append((value, index))
        if len(entries) % 2:
            paired.append(entries[-1])
        if advance is not None:
            paired, logits = _register_round(m, paired, logits, advance, level)
        entries, level = paired, level + 1
    best = Signal(unsigned(width))
    m.d.comb += best.eq(entries[0][1])
    return best, logits


def _register_round(
    m: Module, entries: list[tuple[Any, Any]], logits: Any, advance: Any, level: int
) -> tuple[list[tuple[Any, Any]], Any]:
    """A pipelined argmax round's registers: its entries and the logits."""
    held = []
    for j, (value, index) in enumerate(entries):
        value_reg = Signal.like(value, name=f"max{level}_{j}_q")
        index_reg = Signal.like(index, name=f"argmax{level}_{j}_q")
        held.append((value_reg, index_reg))
    logits_reg = Signal(logits.shape(), name=f"logits{level}_q")
    with m.If(advance):
        for (value, index), (value_reg, index_reg) in zip(entries, held, strict=True):
            m.d.sync += [value_reg.eq(value), index_reg.eq(index)]
        m.d.sync += logits_reg.eq(logits)
    return held, logits_reg


def parse_folds(items: list[str]) -> dict[str, int]:
    """``["features.conv2=4", "all=2"]`` → ``{"features.conv2": 4, "all": 2}``.

    Raises:
        ConfigError: An item that is not ``LAYER=F`` with ``F`` a positive integer.
    """
    folds = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not text.strip().isdigit() or not name.strip():
            raise ConfigError(f"A fold must be LAYER=F with F a positive integer, not {item!r}")
        folds[name.strip()] = int(text)
    return folds


def expand_folding(folds: Mapping[str, int], layer_names: list[str]) -> dict[str, int]:
    """A fold per weight layer: ``all`` first, then the layers named."""
    folding = dict.fromkeys(layer_names, folds["all"]) if "all" in folds else {}
    folding.update({name: fold for name, fold in folds.items() if name != "all"})
    return folding


def cap_folding(model: IntModel, folding: Mapping[str, int]) -> dict[str, int]:
    """``folding`` with each fold capped at its layer's outputs (``all=8`` folds a
    10-output layer by 8); names that are not weight layers are left for the generator
    to refuse."""
    outputs = {layer.name: int(layer.codes.shape[0]) for layer in model.weight_layers()}
    return {name: min(fold, outputs.get(name, fold)) for name, fold in folding.items()}


def build_dataflow(
    model: IntModel,
    *,
    baseline: str | None = None,
    folding: Mapping[str, int] | None = None,
    pipeline: Mapping[str, int] | None = None,
    adder_graph: str | None = None,
    max_depth: int | None = None,
    line_buffer: str = DEFAULT_LINE_BUFFER,
) -> DataflowTop:
    """The dataflow top of ``model``; ``folding`` maps weight-layer names to a fold (1 =
    unrolled, ``f`` = each result over several cycles with ``ceil(Cout/f)`` outputs per
    cycle); ``pipeline`` maps them to register stages inside the dot stage (default 0);
    ``adder_graph`` and ``max_depth`` (as for :class:`~rtl_gen.units.ConstDotUnit`) apply
    to every unrolled weight layer, folded ones keep their lanes; ``line_buffer``
    (``"regs"``, ``"bram"`` or ``"auto"``, the default; the rule is
    :func:`rtl_gen.engines.line_buffer_in_memory`) to every convolution's row delays.

    Raises:
        ConfigError: A layer the top cannot stream, a bad fold or stage count, an unknown
            baseline, an adder graph the top cannot build (see :func:`_check_graph`), an
            unknown line buffer.
    """
    if baseline is not None and baseline not in BASELINES:
        raise ConfigError(f"Baseline must be one of {BASELINES}, not {baseline!r}")
    line_buffer_in_memory(0, line_buffer)  # refuse an unknown kind before building
    graph = _DotChoice(1, 0, adder_graph, max_depth, line_buffer)
    stages, first, last = _stages(model, baseline, dict(folding or {}), dict(pipeline or {}), graph)
    resolved = adder_graph or ("tree" if baseline else DEFAULT_ADDER_GRAPH)
    # A pipelined top registers each argmax round too: unregistered, the tournament is the
    # longest path left once the dot stages are cut (33 MHz on ECP5, 2-bit digits-cnn);
    # then the ready chain from o to i through every engine is (92.7 MHz): its ports get
    # FIFOs whose ready and valid are registers.
    pipelined = any(stage > 0 for stage in (pipeline or {}).values())
    return DataflowTop(
        stages,
        first,
        last,
        adder_graph=resolved,
        max_depth=max_depth,
        line_buffer=line_buffer,
        argmax_stages=argmax_rounds(last.elems) if pipelined else 0,
        registered_ports=pipelined,
    )


def dataflow_design(
    model: IntModel,
    *,
    baseline: str | None = None,
    folding: Mapping[str, int] | None = None,
    pipeline: Mapping[str, int] | None = None,
    source_hash: str | None = None,
    adder_graph: str | None = None,
    max_depth: int | None = None,
    line_buffer: str = DEFAULT_LINE_BUFFER,
) -> Design:
    """The top as a :class:`~rtl_gen.export.Design` whose parameters state the stream
    formats, the folding, pipelining and adder graph per engine, the latency and the
    interval (cycles per image)."""
    top = build_dataflow(
        model,
        baseline=baseline,
        folding=folding,
        pipeline=pipeline,
        adder_graph=adder_graph,
        max_depth=max_depth,
        line_buffer=line_buffer,
    )
    params = dataflow_params(top, baseline)
    name = verilog_identifier("dataflow_mult8" if baseline else "dataflow_shiftadd", taken=set())
    return Design(
        top=name,
        component=top,
        latency=params["latency_cycles"],
        params=params,
        source_hash=source_hash,
    )


def dataflow_params(top: DataflowTop, baseline: str | None) -> dict[str, Any]:
    """What a manifest says of ``top``: stream formats, folding, pipelining and adder graph
    per engine, the adder graph and depth limit asked for, latency and interval."""
    timing = top.timing()
    first, last = top.first, top.last
    return {
        "kind": "dataflow",
        "mode": "multiply" if baseline else "shift-add",
        "baseline": baseline,
        "adder_graph": top.adder_graph,
        "max_depth": top.max_depth,
        "line_buffer": top.line_buffer,
        "argmax_stages": top.argmax_stages,
        "registered_ports": top.registered_ports,
        "slices": [top.stages[n].info["layer"] for n in top.slices],
        "engines": [stage.info for stage in top.stages],
        "input": {**first.fmt.to_dict(), "beats": first.beats, "elems": first.elems},
        "output": {
            **last.fmt.to_dict(),
            "elems": last.elems,
            "label_bits": top.out_layout.size - last.elems * last.fmt.bits,
        },
        "latency_cycles": timing.latency,
        "interval_cycles": timing.interval,
    }


def generate_dataflow(
    package: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    baseline: str | None = None,
    folding: Mapping[str, int] | None = None,
    pipeline: Mapping[str, int] | None = None,
    adder_graph: str | None = None,
    max_depth: int | None = None,
    line_buffer: str = DEFAULT_LINE_BUFFER,
) -> dict[str, Any]:
    """Load a package, build its dataflow top and write it to ``out_dir``; the manifest."""
    model = load_package(package)
    design = dataflow_design(
        model,
        baseline=baseline,
        folding=folding,
        pipeline=pipeline,
        source_hash=package_hash(package),
        adder_graph=adder_graph,
        max_depth=max_depth,
        line_buffer=line_buffer,
    )
    return write_designs([design], Path(out_dir))
