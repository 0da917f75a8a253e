# amaranth: UnusedElaboratable=no
"""The dataflow top beyond a chain: residual adds (a skip stream through a FIFO sized by
the control model) and average pooling (global, windowed, exact and by shifted adds), in
Amaranth's simulator: bit-exact against the golden executor under random input gaps and
output stalls, transfers cycle for cycle equal to the control model, FIFO depths that
keep the unbounded timing.
"""

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

from inq_hw.errors import ConfigError
from inq_hw.intmodel import execute
from inq_hw.intmodel.arith import ActFormat, mean_constant, signed_bits
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
)
from inq_hw.intmodel.package import load_package, save_package
from rtl_gen.dataflow import build_dataflow, dataflow_design, generate_dataflow
from rtl_gen.export import verilator_lint
from rtl_gen.timing import FifoTiming, measure
from sim.fast.engine import fast_available
from sim.simulate import simulate_package
from tests.test_dataflow import U8, _images, _weight_layer, check_top, replay, stream

INTEGRATION = pytest.mark.integration


def _add(name: str, main: Layer, skip: Layer, out_frac: int, *, relu: bool = True) -> AddLayer:
    """``main + skip`` at the finer of their scales, requantised to ``out_frac``."""
    frac = max(main.out.frac, skip.out.frac)
    align = (frac - main.out.frac, frac - skip.out.frac)
    bound = sum(max(abs(x.out.lo), x.out.hi) << a for x, a in zip((main, skip), align, strict=True))
    return AddLayer(
        name=name,
        inputs=(main.name, skip.name),
        shape=main.shape,
        out=ActFormat(8, not relu, out_frac),
        align=align,
        shift=frac - out_frac,
        relu=relu,
        acc_bits=signed_bits(bound),
    )


def _mean(name: str, src: Layer, kernel: tuple[int, int], *, count: int | None = None) -> Layer:
    """A mean over ``kernel`` windows side by side, its constant from the window size."""
    c, h, w = src.shape
    multiplier, shift, mode = mean_constant(count or kernel[0] * kernel[1])
    return MeanPoolLayer(
        name=name,
        inputs=(src.name,),
        shape=(c, h // kernel[0], w // kernel[1]),
        out=src.out,
        kernel_h=kernel[0],
        kernel_w=kernel[1],
        stride_h=kernel[0],
        stride_w=kernel[1],
        multiplier=multiplier,
        shift=shift,
        mode=mode,
    )


def _conv(name: str, src: Layer, channels: int, seed: int, *, relu: bool) -> Conv2dLayer:
    c, h, w = src.shape
    layer = _weight_layer(
        Conv2dLayer,
        name,
        src,
        (channels, h, w),
        (channels, c, 3, 3),
        seed,
        relu=relu,
        shift=4,
        stride=1,
        padding=1,
    )
    assert isinstance(layer, Conv2dLayer)
    return layer


def small_resnet(*, size: int = 6, pool: str = "mean") -> IntModel:
    """A stem conv, a basic block (two convs, the second without ReLU, added to the
    stem's output, then ReLU'd), a max pool, a second block whose skip is the pool's
    output, a global average pool (``pool``: ``"mean"`` a MeanPool of the whole map,
    a non-power-of-two window by shifted adds; ``"window"`` a 2x2 AvgPool then a mean of
    what remains), flatten, a Linear layer."""
    x = InputLayer(name="x", inputs=(), shape=(2, size, size), out=U8)
    stem = _conv("stem", x, 3, 1, relu=True)
    a1 = _conv("b1.c1", stem, 3, 2, relu=True)
    a2 = _conv("b1.c2", a1, 3, 3, relu=False)
    add1 = _add("b1.add", a2, stem, stem.out.frac)
    half = size // 2
    mp = MaxPoolLayer(name="mp", inputs=(add1.name,), shape=(3, half, half), out=add1.out,
                      kernel=2, stride=2)  # fmt: skip
    b1 = _conv("b2.c1", mp, 3, 4, relu=True)
    b2 = _conv("b2.c2", b1, 3, 5, relu=False)
    add2 = _add("b2.add", mp, b2, mp.out.frac)  # the skip first: x + f(x)
    tail: list[Layer] = []
    if pool == "window":
        avg = AvgPoolLayer(name="avg", inputs=(add2.name,), shape=(3, half // 2, half // 2),
                           out=add2.out, kernel=2, stride=2, shift=2)  # fmt: skip
        tail.append(avg)
        gap = _mean("gap", avg, (half // 2, half // 2))
    else:
        gap = _mean("gap", add2, (half, half))
    tail.append(gap)
    flat = FlattenLayer(name="flat", inputs=(gap.name,), shape=(3,), out=gap.out)
    fc = _weight_layer(LinearLayer, "fc", flat, (4,), (4, 3), 6, relu=False, shift=2)
    layers = (x, stem, a1, a2, add1, mp, b1, b2, add2, *tail, flat, fc)
    return IntModel(layers=layers, output="fc")


def test_small_resnet_is_bit_exact_and_cycle_exact_under_stalls() -> None:
    model = small_resnet()
    top = build_dataflow(model)
    record = check_top(model, top, count=4, idle=0.3, stall=0.4, seed=11)
    assert replay(top, record) == record["transfers"]
    kinds = [stage.info["kind"] for stage in top.stages]
    assert kinds.count("add") == kinds.count("fifo") == 2 and kinds.count("meanpool") == 1
    adds = [layer for layer in model.layers if isinstance(layer, AddLayer)]
    assert any(any(layer.align) for layer in adds)  # operands at different scales


@pytest.mark.parametrize(
    ("pool", "folding", "pipeline", "baseline"),
    [
        pytest.param("window", {}, {}, None, marks=INTEGRATION),
        pytest.param("mean", {"b1.c2": 3, "fc": 2}, {"b1.c1": 2, "b2.c2": 1}, None),
        pytest.param("mean", {"b2.c1": 3}, {"stem": 1}, "mult8", marks=INTEGRATION),
    ],
    ids=["windowed-pools", "folded-pipelined", "twin"],
)
def test_residual_tops_follow_folding_pipelining_and_the_twin(
    pool: str, folding: dict[str, int], pipeline: dict[str, int], baseline: str | None
) -> None:
    model = small_resnet(pool=pool)
    top = build_dataflow(model, baseline=baseline, folding=folding, pipeline=pipeline)
    weights = "baseline" if baseline else "po2"
    record = check_top(model, top, count=3, idle=0.2, stall=0.5, seed=3, weights=weights)
    assert replay(top, record) == record["transfers"]


def test_fifo_depth_keeps_the_unbounded_timing_and_no_less_would() -> None:
    """Each FIFO is exactly as deep as the stall-free stream needs: one word less
    deadlocks or slows the top (the fork waits), and the latency and interval measured
    in the RTL are the manifest's."""
    model = small_resnet()
    design = dataflow_design(model)
    top = design.component
    fifos = [stage for stage in top.stages if stage.info["kind"] == "fifo"]
    depths = [stage.info["depth"] for stage in fifos]
    assert [stage.info["reads"] for stage in fifos] == ["stem", "mp"]
    assert all(d >= 1 for d in depths)
    # The first block's skip waits about a row of the 6-wide map for the two 3x3 convs.
    assert depths[0] > model.input.shape[2]
    record = check_top(model, top, count=5, idle=0.0, stall=0.0)
    gave = [n for n, (_, out) in enumerate(record["transfers"]) if out]
    took = [n for n, (inp, _) in enumerate(record["transfers"]) if inp]
    timing = top.timing()
    assert gave[0] - took[0] == timing.latency == design.params["latency_cycles"]
    assert gave[-1] - gave[-2] == timing.interval == design.params["interval_cycles"]
    engines = {e["layer"]: e for e in design.params["engines"]}
    assert engines["b1.add"]["skip"] == "stem" and engines["b2.add"]["skip"] == "mp"
    assert engines["gap"]["mode"] == "shift_add" and engines["gap"]["window"] == 9
    for n, stage in enumerate(top.stages):
        if stage.info["kind"] != "fifo":
            continue
        shallow = top.timing_model()
        fifo = shallow.engines[n]
        assert isinstance(fifo, FifoTiming)
        fifo.depth -= 1
        try:
            assert measure(shallow, top.first.beats) != timing
        except RuntimeError as error:
            assert "gave" in str(error)  # deadlocked


def test_random_stalls_never_deadlock_the_control_model() -> None:
    """A long random run of offers through the control model: every image comes out
    (no deadlock at full FIFOs), with bursts of stalls both ends."""
    model = small_resnet()
    top = build_dataflow(model)
    timing = top.timing_model()
    rng = random.Random(5)
    beats, images, sent, done = top.first.beats, 60, 0, 0
    for _ in range(200_000):
        if done == images:
            break
        idle = rng.random() < (0.9 if rng.random() < 0.1 else 0.2)
        stall = rng.random() < (0.95 if (_ // 300) % 3 == 0 else 0.3)
        took, gave = timing.cycle(sent < beats * images and not idle, not stall)
        sent += took
        done += gave
    assert done == images


def test_graphs_the_top_cannot_stream_are_refused() -> None:
    model = small_resnet()
    add = model.layer("b1.add")
    assert isinstance(add, AddLayer)
    # A skip of another shape: the 6x6 map before the pool added to the 3x3 after it.
    bad = dataclasses.replace(model.layer("b2.add"), inputs=("b2.c2", "b1.add"))
    layers = tuple(bad if layer.name == "b2.add" else layer for layer in model.layers)
    with pytest.raises(ConfigError, match="adds streams of one shape"):
        build_dataflow(dataclasses.replace(model, layers=layers))
    # Two branches that do not meet at one layer: the stem's output and the second block's.
    bad = dataclasses.replace(model.layer("b2.add"), inputs=("stem", "b2.c2"))
    layers = tuple(bad if layer.name == "b2.add" else layer for layer in model.layers)
    with pytest.raises(ConfigError, match="two branches from one layer"):
        build_dataflow(dataclasses.replace(model, layers=layers))
    gap = model.layer("gap")
    assert isinstance(gap, MeanPoolLayer)
    overlapping = dataclasses.replace(gap, stride_h=1, stride_w=1, shape=(3, 1, 1))
    layers = tuple(overlapping if layer is gap else layer for layer in model.layers)
    with pytest.raises(ConfigError, match="kernel == stride"):
        build_dataflow(dataclasses.replace(model, layers=layers))


MODELS = {
    "two blocks": small_resnet,
    "downsampling": lambda: _downsampling_block(shortcut_first=True),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def resnet_package(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    directory = tmp_path_factory.mktemp("resnet")
    save_package(MODELS[request.param](), directory)
    return directory


@pytest.mark.hw
@pytest.mark.parametrize(
    ("engine", "simulator"),
    [
        ("cocotb", "icarus"),
        pytest.param(
            "fast", None, marks=pytest.mark.skipif(not fast_available(), reason="no Verilator")
        ),
    ],
)
def test_small_resnet_through_verilog_is_bit_exact_with_stalls(
    engine: str, simulator: str | None, resnet_package: Path, tmp_path: Path
) -> None:
    """The residual top as Verilog (memories for the FIFOs), in cocotb on Icarus and
    in the compiled engine on Verilator: every logit, the timing the manifest states."""
    model = load_package(resnet_package)
    folding = {model.weight_layers()[1].name: 2}
    manifest = generate_dataflow(resnet_package, tmp_path / "rtl", folding=folding)
    (top,) = manifest["tops"]
    assert verilator_lint([tmp_path / "rtl" / top["file"]], top["name"]) == []
    summary = simulate_package(
        resnet_package,
        rtl_dir=tmp_path / "rtl",
        images=_images(model, 8, 4),
        engine=engine,
        simulator=simulator,
        seed=6,
        stall=0.4,
    )
    assert summary["mismatched_samples"] == 0 and summary["samples"] == 8
    assert summary["timing_matches_manifest"], summary
    assert summary["interval_cycles"] == top["params"]["interval_cycles"]


def test_the_zoo_tiny_resnet_streams_bit_exact_from_pytorch() -> None:
    """torchvision-style PyTorch (``out += identity``, adaptive pooling, flatten):
    BatchNorm folded, one INQ step, lowered, and through the dataflow top in Amaranth's
    simulator, bit-exact with the golden executor under stalls."""
    import torch

    from inq_hw.intmodel.arith import quantize_input
    from inq_hw.models import build_model
    from tests.test_lower_ops import lowered

    torch.manual_seed(0)
    net = build_model("tiny_resnet", in_channels=1, num_classes=5, input_size=6, width=3)
    x = torch.rand(16, 1, 6, 6)
    model = lowered(net, x)
    kinds = [layer.kind for layer in model.layers]
    assert kinds.count("add") == 2 and "meanpool" in kinds
    top = build_dataflow(model)
    images = quantize_input(x[:3].numpy(), model.input.out)
    record = stream(top, images, idle=0.2, stall=0.3, seed=1)
    golden = execute.run(model, images)
    assert record["logits"] == np.asarray(golden).tolist()
    assert replay(top, record) == record["transfers"]


def _downsampling_block(*, shortcut_first: bool) -> IntModel:
    """A stem, then a block that halves the map: conv 3x3 stride 2, conv 3x3, added to a
    1x1 stride-2 convolution of the stem's output (ResNet's downsampling shortcut),
    traced before the block's convs (torchvision's order) or after them (models.py's);
    a global mean of the 3x3 map, a Linear layer."""
    x = InputLayer(name="x", inputs=(), shape=(2, 6, 6), out=U8)
    stem = _conv("stem", x, 3, 1, relu=True)
    c1 = _weight_layer(Conv2dLayer, "c1", stem, (4, 3, 3), (4, 3, 3, 3), 2, relu=True,
                       shift=4, stride=2, padding=1)  # fmt: skip
    c2 = _conv("c2", c1, 4, 3, relu=False)
    ds = _weight_layer(Conv2dLayer, "ds", stem, (4, 3, 3), (4, 3, 1, 1), 4, relu=False,
                       shift=3, stride=2, padding=0)  # fmt: skip
    add = _add("add", c2, ds, min(c2.out.frac, ds.out.frac))
    gap = _mean("gap", add, (3, 3))
    flat = FlattenLayer(name="flat", inputs=(gap.name,), shape=(4,), out=gap.out)
    fc = _weight_layer(LinearLayer, "fc", flat, (3,), (3, 4), 6, relu=False, shift=2)
    body = (ds, c1, c2) if shortcut_first else (c1, c2, ds)
    return IntModel(layers=(x, stem, *body, add, gap, flat, fc), output="fc")


@pytest.mark.parametrize("shortcut_first", [True, False], ids=["torchvision", "models.py"])
def test_a_downsampling_shortcut_streams_with_its_fifo_on_the_short_branch(
    shortcut_first: bool,
) -> None:
    """The FIFO goes before the shortcut's 1x1 convolution (the branch that is ahead),
    whichever order the branches were traced in; bit-exact and cycle-exact under stalls."""
    model = _downsampling_block(shortcut_first=shortcut_first)
    top = build_dataflow(model)
    names = [stage.info["layer"] for stage in top.stages]
    fifo = names.index("add.fifo")
    assert top.stages[fifo].info["reads"] == "stem"
    assert top.stages[names.index("ds")].source == fifo
    assert top.stages[names.index("c1")].source == names.index("stem")
    record = check_top(model, top, count=4, idle=0.3, stall=0.4, seed=int(shortcut_first))
    assert replay(top, record) == record["transfers"]


def test_the_zoo_resnet_with_downsampling_streams_bit_exact_from_pytorch() -> None:
    """models.py's CIFAR-style ``resnet`` (ResidualAdd modules, a 1x1 shortcut where a
    stage halves the map, an AvgPool2d head) from PyTorch through the top."""
    import torch

    from inq_hw.intmodel.arith import quantize_input
    from inq_hw.models import build_model
    from tests.test_lower_ops import lowered

    torch.manual_seed(1)
    net = build_model(
        "resnet", in_channels=1, num_classes=4, input_size=8, widths=[3, 4], blocks=[1, 1]
    )
    x = torch.rand(16, 1, 8, 8)
    model = lowered(net, x)
    top = build_dataflow(model, folding={"stage2.block1.conv2": 2})
    assert [stage.info["kind"] for stage in top.stages].count("fifo") == 2
    images = quantize_input(x[:3].numpy(), model.input.out)
    record = stream(top, images, idle=0.2, stall=0.3, seed=2)
    assert record["logits"] == np.asarray(execute.run(model, images)).tolist()
    assert replay(top, record) == record["transfers"]


def test_the_resource_model_counts_the_fifos_memories() -> None:
    """iCE40: SB_RAM40_4K blocks for each FIFO (as synth_ice40 maps them); ECP5: small
    FIFOs are distributed RAM, no DP16KD."""
    from inq_hw.cost.fpga import bram_blocks, estimate_top

    model = small_resnet()
    top = build_dataflow(model, line_buffer="regs")  # the FIFOs' memories alone
    memories = [
        (stage.info["depth"], stage.engine.layout.size)
        for stage in top.stages
        if stage.info["kind"] == "fifo"
    ]
    assert estimate_top(top, model, "ice40").bram == sum(
        bram_blocks(d, w, "ice40") for d, w in memories
    )
    assert bram_blocks(22, 64, "ice40") == 4 and bram_blocks(300, 64, "ice40") == 8
    assert estimate_top(top, model, "ecp5").bram == 0
    assert bram_blocks(22, 64, "ecp5") == 0 and bram_blocks(1024, 36, "ecp5") == 2


def test_fit_counts_the_fifos_block_ram() -> None:
    """``--fit``'s search prices a residual top's FIFOs in block RAM on iCE40."""
    from inq_hw.cost.fpga import estimate_top
    from inq_hw.implement.fit import _Search

    model = small_resnet()
    search = _Search(model, "ice40", baseline=None, pipeline=0, dsp=None, line_buffer="regs")
    bram = estimate_top(build_dataflow(model, line_buffer="regs"), model, "ice40").bram
    assert search.fixed["bram"] == bram > 0


def test_concat_and_clamp_are_refused_by_the_top() -> None:
    """The operator table's "refused" rows of the dataflow top: one line each."""
    from inq_hw.intmodel.layers import ClampLayer, ConcatLayer

    model = small_resnet()
    stem, add = model.layer("stem"), model.layer("b1.add")
    clamp = ClampLayer(name="clamp", inputs=("stem",), shape=stem.shape, out=stem.out,
                       lo=0, hi=stem.out.hi // 2)  # fmt: skip
    rewired = dataclasses.replace(model.layer("b1.c1"), inputs=("clamp",))
    layers = [clamp if layer is stem else layer for layer in model.layers]
    layers.insert(layers.index(clamp), stem)
    layers = [rewired if layer.name == "b1.c1" else layer for layer in layers]
    with pytest.raises(ConfigError, match="no engine for clamp layers"):
        build_dataflow(dataclasses.replace(model, layers=tuple(layers)))
    c, h, w = add.shape
    cat = ConcatLayer(name="b1.add", inputs=("b1.c2", "stem"), shape=(2 * c, h, w), out=add.out,
                      shifts=(0, 0))  # fmt: skip
    layers = [cat if layer is add else layer for layer in model.layers]
    with pytest.raises(ConfigError, match="no engine for concat layers"):
        build_dataflow(dataclasses.replace(model, layers=tuple(layers)))
