# amaranth: UnusedElaboratable=no
"""The dataflow top in Amaranth's simulator: bit-exact against the golden executor under
random input gaps and output stalls, transfers cycle-for-cycle equal to the control model.

The networks are small and synthetic (random power-of-two weights through the lowering's
own fields), so every engine kind, padding 0/1/2, stride 2, a pool that drops a row and a
column, a stand-alone ReLU, folding, pipelining and the multiplier twin run in seconds.
"""

import dataclasses
import random
from typing import Any

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from inq_hw.errors import ConfigError
from inq_hw.intmodel import execute
from inq_hw.intmodel.arith import ActFormat
from inq_hw.intmodel.baseline import baseline_fields
from inq_hw.intmodel.layers import (
    AddLayer,
    Conv2dLayer,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    ReLULayer,
    WeightLayer,
)
from rtl_gen import timing as control
from rtl_gen.dataflow import (
    DataflowTop,
    argmax_rounds,
    build_dataflow,
    dataflow_design,
    expand_folding,
    parse_folds,
)
from rtl_gen.engines import UnrolledDot
from rtl_gen.timing import LinearTiming, UnrolledDotTiming
from tests.test_rtl_units import _layer_fields, _with_exact_width

U8, S8 = ActFormat(8, False, 6), ActFormat(8, True, 5)

#: Variants outside the fast tier (``pytest -q`` runs them): the fast tier keeps one
#: of each kind (padding 1; folded and pipelined; the twin pipelined; shared graphs mixed).
INTEGRATION = pytest.mark.integration


def _weight_layer(
    kind: type,
    name: str,
    src: Layer,
    shape: tuple[int, ...],
    wshape: tuple[int, ...],
    seed: int,
    *,
    relu: bool,
    shift: int = 5,
    **extra: Any,
) -> WeightLayer:
    weights = torch.randn(*wshape, generator=torch.Generator().manual_seed(seed)) * 0.4
    weights.view(-1)[::5] = 0.0
    fields = _layer_fields(weights, 4, src.out, shift=shift, relu=relu, seed=seed)
    fields["out"] = ActFormat(8, not relu, src.out.frac - fields["n2"] - shift)  # type: ignore[operator]
    fields["bias"] = fields["bias"] // 16  # type: ignore[operator]  # small beside the sums
    base = baseline_fields(
        weights.numpy(),
        None,
        frac_in=src.out.frac,
        frac_out=fields["out"].frac,  # type: ignore[attr-defined]
        input_max_abs=src.out.max_abs,
        zero_exp=fields["n2"],  # type: ignore[arg-type]
    )
    layer = kind(name=name, inputs=(src.name,), shape=shape, **fields, **extra, **base)
    return _with_exact_width(layer, src.out)


def small_cnn(*, padding: int = 1, in_format: ActFormat = U8) -> IntModel:
    """conv(3, pad) → ReLU'd; max pool 2 (odd sides: drops a row and a column); conv
    stride 2 → flatten → linear → linear (signed logits)."""
    x = InputLayer(name="x", inputs=(), shape=(2, 7, 9), out=in_format)
    h1, w1 = 7 + 2 * padding - 2, 9 + 2 * padding - 2
    c1 = _weight_layer(
        Conv2dLayer, "c1", x, (3, h1, w1), (3, 2, 3, 3), 1, relu=True, stride=1, padding=padding
    )
    p1 = MaxPoolLayer(
        name="p1", inputs=("c1",), shape=(3, h1 // 2, w1 // 2), out=c1.out, kernel=2, stride=2
    )
    h2, w2 = (h1 // 2 + 2 - 3) // 2 + 1, (w1 // 2 + 2 - 3) // 2 + 1
    c2 = _weight_layer(
        Conv2dLayer, "c2", p1, (4, h2, w2), (4, 3, 3, 3), 2, relu=True, shift=4, stride=2, padding=1
    )
    flat = FlattenLayer(name="flat", inputs=("c2",), shape=(4 * h2 * w2,), out=c2.out)
    f1 = _weight_layer(LinearLayer, "f1", flat, (6,), (6, 4 * h2 * w2), 3, relu=False, shift=4)
    relu = ReLULayer(name="r", inputs=("f1",), shape=(6,), out=ActFormat(8, False, f1.out.frac))
    f2 = _weight_layer(LinearLayer, "f2", relu, (5,), (5, 6), 4, relu=False, shift=2)
    return IntModel(layers=(x, c1, p1, c2, flat, f1, relu, f2), output="f2")


def stream(
    top: DataflowTop, images: np.ndarray, *, idle: float, stall: float, seed: int, hold: int = 0
) -> dict[str, Any]:
    """Drive ``images`` through ``top``; the outputs, the per-cycle offers and transfers
    (``o.ready`` low for the first ``hold`` cycles, then random)."""
    rng = random.Random(seed)
    pixels = (
        images.transpose(0, 2, 3, 1).reshape(-1, images.shape[1]) if images.ndim == 4 else images
    )
    record: dict[str, Any] = {"logits": [], "labels": [], "offers": [], "transfers": []}

    async def bench(ctx: Any) -> None:
        sent, offering = 0, False
        for cycle in range(20000):
            if len(record["labels"]) == len(images):
                return
            if not offering and sent < len(pixels):
                offering = rng.random() >= idle
                if offering:
                    ctx.set(top.i.payload, [int(v) for v in pixels[sent]])
            ready = rng.random() >= stall and cycle >= hold
            ctx.set(top.i.valid, offering)
            ctx.set(top.o.ready, ready)
            took = offering and bool(ctx.get(top.i.ready))
            gave = ready and bool(ctx.get(top.o.valid))
            if gave:
                payload = ctx.get(top.o.payload)
                record["logits"].append([int(v) for v in payload.logits])
                record["labels"].append(int(payload.label))
            record["offers"].append((offering, ready))
            record["transfers"].append((took, gave))
            if took:
                sent, offering = sent + 1, False
            await ctx.tick()
        raise AssertionError("no end")

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return record


def _images(model: IntModel, count: int, seed: int) -> np.ndarray:
    fmt = model.input.out
    rng = np.random.default_rng(seed)
    x = rng.integers(fmt.lo, fmt.hi + 1, (count, *model.input.shape))
    x[0] = fmt.hi
    x[1] = fmt.lo
    return x


def check_top(
    model: IntModel,
    top: DataflowTop,
    *,
    count: int = 5,
    idle: float = 0.3,
    stall: float = 0.3,
    seed: int = 0,
    weights: str = "po2",
    hold: int = 0,
) -> dict[str, Any]:
    x = _images(model, count, seed)
    record = stream(top, x, idle=idle, stall=stall, seed=seed, hold=hold)
    golden = execute.run(model, x, weights=weights)
    assert isinstance(golden, np.ndarray)
    assert record["logits"] == golden.tolist()
    assert record["labels"] == golden.argmax(axis=1).tolist()
    return record


@pytest.mark.parametrize(
    "padding", [pytest.param(0, marks=INTEGRATION), 1, pytest.param(2, marks=INTEGRATION)]
)
def test_small_cnn_is_bit_exact_under_stalls(padding: int) -> None:
    model = small_cnn(padding=padding)
    check_top(model, build_dataflow(model), seed=padding)


def test_signed_input_and_folding_everywhere() -> None:
    model = small_cnn(in_format=S8)
    top = build_dataflow(model, folding={"c1": 3, "c2": 2, "f1": 4, "f2": 5})
    check_top(model, top, seed=7)


@INTEGRATION  # the fast tier runs the twin pipelined and folded
def test_multiplier_twin_runs_the_baseline_arithmetic() -> None:
    model = small_cnn()
    check_top(model, build_dataflow(model, baseline="mult8", folding={"c2": 2}), weights="baseline")


def test_transfers_equal_the_control_model_cycle_for_cycle() -> None:
    model = small_cnn()
    top = build_dataflow(model, folding={"c2": 2, "f1": 3})
    record = check_top(model, top, count=4, seed=3)
    timing = top.timing_model()
    predicted = [timing.cycle(valid, ready) for valid, ready in record["offers"]]
    assert predicted == record["transfers"]


def replay(top: DataflowTop, record: dict[str, Any]) -> list[tuple[bool, bool]]:
    """The control model's transfers for the offers ``record`` made to the RTL."""
    timing = top.timing_model()
    return [timing.cycle(valid, ready) for valid, ready in record["offers"]]


ALL_FOLDED = {"c1": 3, "c2": 2, "f1": 4, "f2": 5}


@pytest.mark.parametrize(
    ("folding", "pipeline", "stall"),
    [
        pytest.param({}, {"c1": 3, "c2": 2, "f1": 4, "f2": 2}, 0.6, marks=INTEGRATION),
        pytest.param(ALL_FOLDED, {"c1": 1, "c2": 2, "f1": 3, "f2": 1}, 0.3, marks=INTEGRATION),
        ({"c2": 2, "f1": 3}, {"c1": 2, "c2": 3, "f2": 5}, 0.5),
    ],
    ids=["unrolled", "folded", "mixed"],
)
def test_pipelined_tops_are_bit_exact_and_cycle_exact_under_stalls(
    folding: dict[str, int], pipeline: dict[str, int], stall: float
) -> None:
    model = small_cnn()
    top = build_dataflow(model, folding=folding, pipeline=pipeline)
    record = check_top(model, top, count=4, stall=stall, seed=len(pipeline) + int(stall * 10))
    assert replay(top, record) == record["transfers"]


def test_pipelined_multiplier_twin_is_bit_exact() -> None:
    model = small_cnn()
    top = build_dataflow(
        model, baseline="mult8", folding={"c2": 2}, pipeline={"c1": 2, "c2": 2, "f1": 1}
    )
    check_top(model, top, count=3, seed=5, weights="baseline")


def test_back_pressure_to_the_input_is_cycle_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """The output held for 1,000 cycles fills every engine's slot and skid until the input
    stops (each image's 63 pixels become one vector downstream, so the slots hold whole
    images): the RTL's transfers equal the control model's, and a model whose
    slots have no skid (a beat taken only when the slot is empty or being emptied)
    disagrees."""
    model = small_cnn()
    top = build_dataflow(model)
    record = check_top(model, top, count=11, idle=0.0, stall=0.3, seed=2, hold=1000)
    took = [t for t, _ in record["transfers"][:1000]]
    assert any(took[:100]) and not any(took[950:])  # the input stopped: every buffer full
    assert replay(top, record) == record["transfers"]

    def one_beat_free(self: Any, out_ready: bool) -> bool:
        return not self.slot or out_ready

    def one_beat_update(self: Any, take: bool, out_ready: bool) -> None:
        self.slot = take or (self.slot and not out_ready)

    monkeypatch.setattr(control._Slotted, "_free", one_beat_free)
    monkeypatch.setattr(control._Slotted, "_update_slot", one_beat_update)
    assert replay(top, record) != record["transfers"]


def test_a_wrong_pipeline_depth_in_the_model_is_caught() -> None:
    """The replay can fail: a model one stage short of the RTL disagrees with it."""
    model = small_cnn()
    top = build_dataflow(model, pipeline={"f1": 2})
    record = check_top(model, top, count=2, seed=1)
    linear = top.stages[3].timing
    assert isinstance(linear, LinearTiming)
    assert top.stages[3].info["layer"] == "f1"
    linear.dot = UnrolledDotTiming(1)
    assert replay(top, record) != record["transfers"]


@pytest.mark.parametrize(
    ("folding", "pipeline"),
    [
        pytest.param({"f1": 2}, {}, marks=INTEGRATION),
        ({"f1": 2}, {"c1": 2, "c2": 1, "f1": 3, "f2": 1}),
    ],
    ids=["combinational", "pipelined"],
)
def test_timing_without_stalls_matches_the_design_parameters(
    folding: dict[str, int], pipeline: dict[str, int]
) -> None:
    model = small_cnn()
    top = build_dataflow(model, folding=folding, pipeline=pipeline)
    record = check_top(model, top, count=5, idle=0.0, stall=0.0)
    gave = [n for n, (_, out) in enumerate(record["transfers"]) if out]
    took = [n for n, (inp, _) in enumerate(record["transfers"]) if inp]
    timing = top.timing()
    assert gave[0] - took[0] == timing.latency
    assert gave[-1] - gave[-2] == timing.interval
    design = dataflow_design(model, folding=folding, pipeline=pipeline)
    assert design.params["interval_cycles"] == timing.interval
    assert design.params["latency_cycles"] == timing.latency == design.latency
    engines = {e["layer"]: e for e in design.params["engines"]}
    assert all(engines[name]["pipeline"] == n for name, n in pipeline.items())


def test_unrolled_pipeline_stages_add_their_depth_to_the_latency() -> None:
    model = small_cnn()
    """... and a pipelined top registers each of its argmax's rounds; the FIFOs at its
    ports and after its weight engines add latency (the input FIFO takes beats while conv1
    walks the padding), not interval."""
    flat_top = build_dataflow(model)
    deep_top = build_dataflow(model, pipeline={"c1": 1, "c2": 2, "f1": 3, "f2": 4})
    assert flat_top.argmax_stages == 0
    rounds = argmax_rounds(flat_top.last.elems)
    assert deep_top.argmax_stages == rounds == (flat_top.last.elems - 1).bit_length() > 0
    assert deep_top.registered_ports and not flat_top.registered_ports
    flat, deep = flat_top.timing(), deep_top.timing()
    assert deep_top.slices and not flat_top.slices
    # every engine but the last has its slice, pooling engines too: no ready chain runs
    # through two engines (a pool's o.ready into its partials' enable was a critical path)
    kinds = [deep_top.stages[n].info["kind"] for n in deep_top.slices]
    assert deep_top.slices == tuple(range(len(deep_top.stages) - 1)) and "maxpool" in kinds
    deep_top.registered_ports, deep_top.slices = False, ()
    bare = deep_top.timing()
    assert bare.latency == flat.latency + 10 + rounds and deep.latency > bare.latency
    assert deep.interval == bare.interval == flat.interval


def test_a_changed_weight_is_caught() -> None:
    """The check can fail: flip the sign of the largest weight; the top built from it
    follows the changed model, not the original one."""
    model = small_cnn()
    fc = model.layer("f2")
    assert isinstance(fc, WeightLayer)
    codes = fc.codes.copy()
    codes.flat[np.argmax(np.abs(fc.weights_int()))] ^= 1 << (fc.bits - 2)  # the largest
    changed = dataclasses.replace(fc, codes=codes)
    layers = tuple(changed if layer is fc else layer for layer in model.layers)
    corrupted = dataclasses.replace(model, layers=layers)
    x = _images(model, 4, 0)
    record = stream(build_dataflow(corrupted), x, idle=0.0, stall=0.0, seed=0)
    expected, true = execute.run(corrupted, x), execute.run(model, x)
    assert isinstance(expected, np.ndarray) and isinstance(true, np.ndarray)
    assert record["logits"] == expected.tolist()
    assert record["logits"] != true.tolist()


def test_unsupported_models_are_refused() -> None:
    model = small_cnn()
    with pytest.raises(ConfigError, match="Folding of layer 'c1'"):
        build_dataflow(model, folding={"c1": 4})
    with pytest.raises(ConfigError, match="not weight layers"):
        build_dataflow(model, folding={"p1": 2})
    with pytest.raises(ConfigError, match="Pipelining names"):
        build_dataflow(model, pipeline={"p1": 2})
    for bad in (-1, 17, 1.5, True):
        with pytest.raises(ConfigError, match="Pipeline stages of layer 'c1'"):
            build_dataflow(model, pipeline={"c1": bad})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="Baseline"):
        build_dataflow(model, baseline="mult4")
    p1 = model.layer("p1")
    assert isinstance(p1, MaxPoolLayer)
    overlapping = dataclasses.replace(p1, stride=1)
    odd = dataclasses.replace(
        model, layers=tuple(overlapping if layer is p1 else layer for layer in model.layers)
    )
    with pytest.raises(ConfigError, match="kernel == stride"):
        build_dataflow(odd)
    x = model.input
    add = AddLayer(
        name="add",
        inputs=("x", "x"),
        shape=x.shape,
        out=x.out,
        align=(0, 0),
        shift=0,
        relu=False,
        acc_bits=10,
    )
    branched = IntModel(layers=(x, add), output="add")
    with pytest.raises(ConfigError, match="adds two different streams"):
        build_dataflow(branched)


def test_fold_options_parse_and_expand() -> None:
    folds = parse_folds(["c1=3", "all=2"])
    assert expand_folding(folds, ["c1", "c2", "f1"]) == {"c1": 3, "c2": 2, "f1": 2}
    assert expand_folding(parse_folds(["f1=4"]), ["c1", "f1"]) == {"f1": 4}
    for bad in ("c1", "c1=", "c1=x", "=3", "c1=-2"):
        with pytest.raises(ConfigError, match="LAYER=F"):
            parse_folds([bad])


@pytest.mark.parametrize(
    ("folding", "pipeline"),
    [pytest.param({}, {}, marks=INTEGRATION), ({"c2": 2}, {"c1": 2, "f1": 3, "f2": 1})],
    ids=["combinational", "pipelined-mixed"],
)
def test_shared_adder_graphs_are_bit_exact_and_timed_exactly(
    folding: dict[str, int], pipeline: dict[str, int]
) -> None:
    model = small_cnn()
    top = build_dataflow(model, folding=folding, pipeline=pipeline, adder_graph="shared")
    dots = [getattr(stage.engine, "dot", None) for stage in top.stages]
    units = [dot.unit for dot in dots if isinstance(dot, UnrolledDot)]
    assert units and all(u.adder_graph == "shared" for u in units)
    assert any(u.graph.nodes for u in units)  # something is shared: not a tree in disguise
    record = check_top(model, top, count=4, stall=0.4, seed=11)
    assert replay(top, record) == record["transfers"]
    free = check_top(model, top, count=4, idle=0.0, stall=0.0, seed=12)
    gave = [n for n, (_, out) in enumerate(free["transfers"]) if out]
    took = [n for n, (inp, _) in enumerate(free["transfers"]) if inp]
    design = dataflow_design(model, folding=folding, pipeline=pipeline, adder_graph="shared")
    assert gave[0] - took[0] == design.params["latency_cycles"] == design.latency
    assert gave[-1] - gave[-2] == design.params["interval_cycles"]
    assert design.params["adder_graph"] == "shared"
    engines = {e["layer"]: e for e in design.params["engines"]}
    for name in ("c1", "c2", "f1", "f2"):
        assert engines[name]["adder_graph"] == (None if folding.get(name, 1) > 1 else "shared")
    assert engines["p1"]["adder_graph"] is None


def test_shared_graph_timing_equals_the_tree_timing() -> None:
    model = small_cnn()
    pipeline = {"c1": 1, "c2": 2, "f1": 3, "f2": 4}
    tree = build_dataflow(model, pipeline=pipeline, adder_graph="tree").timing()
    shared = build_dataflow(model, pipeline=pipeline, adder_graph="shared", max_depth=6)
    assert shared.timing() == tree
    assert dataflow_design(model, adder_graph="shared", max_depth=6).params["max_depth"] == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"adder_graph": "shared", "baseline": "mult8"}, "need the shift-add top"),
        ({"adder_graph": "shared", "folding": ALL_FOLDED}, "folded layers have no adder graph"),
        ({"max_depth": 3, "folding": ALL_FOLDED}, "folded layers have no adder graph"),
        ({"adder_graph": "dag"}, "Adder graph must be one of"),
        ({"adder_graph": "shared", "max_depth": 0}, "Depth limit must be a positive integer"),
    ],
)
def test_bad_adder_graph_requests_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_dataflow(small_cnn(), **kwargs)
