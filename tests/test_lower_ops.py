"""CNNs written the ordinary way: every supported operator lowers, runs bit-exactly against
a slow reference (Python integers, written from the spec), survives the package round
trip, and runs bit-exactly on the PE array where the controller can run it."""

import copy
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from inq_hw.errors import ModelError, PackageError
from inq_hw.fold import fold_batchnorm
from inq_hw.inq import IncrementalQuantizer, INQConfig
from inq_hw.inq.quantizer import UnquantizedWeightWarning
from inq_hw.intmodel import (
    ClampLayer,
    ConcatLayer,
    Conv2dLayer,
    IntModel,
    MaxPoolLayer,
    MeanPoolLayer,
    quantize_input,
    run,
)
from inq_hw.intmodel.arith import MEAN_PRECISION_BITS, mean_constant
from inq_hw.intmodel.package import load_package, save_package
from inq_hw.lower import lower_model
from tests.test_execute import ref_requantize

# --- lowering helpers --------------------------------------------------------------------


def lowered(model: nn.Module, x: torch.Tensor, bits: int = 4) -> IntModel:
    """Fold, one INQ step onto the grid, lower (with the 8-bit baseline)."""
    fold_batchnorm(model)
    baseline = copy.deepcopy(model).eval()
    inq = IncrementalQuantizer(model, INQConfig(bits=bits, schedule=(1.0,)))
    inq.advance()
    n1 = {layer.name: layer.n1 for layer in inq.layers}
    return lower_model(model.eval(), x, bits=bits, n1=n1, baseline_model=baseline)


class _Fn(nn.Module):
    """A conv, then ``body``, then a linear head, written functionally."""

    def __init__(self, body: Callable[..., torch.Tensor], cin: int = 2, cmid: int = 6) -> None:
        super().__init__()
        self.body = body
        self.conv = nn.Conv2d(cin, cmid, 3, padding=1)
        self.dw = nn.Conv2d(cmid, cmid, 3, padding=1, groups=cmid)
        self.head = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.body(self, x), 1))


#: Operator rows of the README table: name → (body, layer kinds it must produce).
OPERATORS: dict[str, tuple[Callable[..., torch.Tensor], set[str]]] = {
    "residual +": (lambda m, x: _twice(m, x, lambda y, z: y + z), {"add"}),
    "residual +=": (lambda m, x: _iadd(m, x), {"add"}),
    "torch.add": (lambda m, x: _twice(m, x, torch.add), {"add"}),
    "torch.cat": (lambda m, x: _twice(m, x, lambda y, z: torch.cat([y, z], 1)), {"concat"}),
    "F.relu": (
        lambda m, x: F.relu(m.get_submodule("dw")(F.relu(m.get_submodule("conv")(x)))),
        {"conv2d"},
    ),
    "x.view(N, -1)": (lambda m, x: m.get_submodule("conv")(x).view(x.size(0), -1), {"flatten"}),
    "x.reshape(N, -1)": (
        lambda m, x: m.get_submodule("conv")(x).reshape(x.shape[0], -1),
        {"flatten"},
    ),
    "Dropout": (
        lambda m, x: nn.functional.dropout(m.get_submodule("conv")(x), 0.5, False),
        {"conv2d"},
    ),
    "ReLU6": (lambda m, x: F.relu6(m.get_submodule("conv")(x)), {"clamp"}),
    "Hardtanh": (lambda m, x: F.hardtanh(m.get_submodule("conv")(x), -0.5, 0.75), {"clamp"}),
    "torch.clamp": (lambda m, x: torch.clamp(m.get_submodule("conv")(x), min=-0.25), {"clamp"}),
    "depthwise Conv2d": (
        lambda m, x: m.get_submodule("dw")(m.get_submodule("conv")(x)),
        {"conv2d"},
    ),
    "F.adaptive_avg_pool2d": (
        lambda m, x: F.adaptive_avg_pool2d(m.get_submodule("conv")(x), 1),
        {"meanpool"},
    ),
    "x.mean((2, 3))": (lambda m, x: F.relu(m.get_submodule("conv")(x)).mean((2, 3)), {"meanpool"}),
    "F.avg_pool2d 3x3": (lambda m, x: F.avg_pool2d(m.get_submodule("conv")(x), 3, 1), {"meanpool"}),
    "F.avg_pool2d 2x2": (lambda m, x: F.avg_pool2d(m.get_submodule("conv")(x), 2, 1), {"avgpool"}),
    "F.max_pool2d padded": (
        lambda m, x: F.max_pool2d(m.get_submodule("conv")(x), 3, 2, 1, ceil_mode=True),
        {"maxpool"},
    ),
}


def _twice(m: nn.Module, x: torch.Tensor, join: Callable[..., torch.Tensor]) -> torch.Tensor:
    y = F.relu(m.get_submodule("conv")(x))
    return join(y, m.get_submodule("dw")(y))


def _iadd(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = m.get_submodule("conv")(x)
    out += m.get_submodule("dw")(out)
    return out


MODULES: dict[str, tuple[Callable[[], nn.Module], set[str]]] = {
    "grouped dilated rectangular strided Conv2d": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 6, (3, 1), stride=(2, 1), padding=(2, 0), dilation=(2, 1)),
            nn.Conv2d(6, 4, (1, 3), padding=(0, 1), groups=2),
            nn.Flatten(),
        ),
        {"conv2d"},
    ),
    "MaxPool2d padding ceil_mode": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3), nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), nn.Flatten()
        ),
        {"maxpool"},
    ),
    "AdaptiveAvgPool2d((1, 1)) + Dropout + Identity": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Dropout(),
            nn.Identity(),
        ),
        {"meanpool"},
    ),
    "AvgPool2d 3x3 stride 1": (
        lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.AvgPool2d(3, 1), nn.Flatten()),
        {"meanpool"},
    ),
    "AdaptiveAvgPool2d(3) of a 1x1 map (one window repeated)": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 7), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(36, 3)
        ),
        {"meanpool"},
    ),
    "ReLU6 / Hardtanh modules": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 1), nn.Hardtanh(), nn.Flatten()
        ),
        {"clamp"},
    ),
}


def _case(make: Callable[[], nn.Module], seed: int = 0) -> tuple[IntModel, np.ndarray]:
    torch.manual_seed(seed)
    x = torch.randn(64, 2, 7, 7)
    model = make()
    with torch.no_grad():
        model(x[:1])  # materialises lazy layers
    int_model = lowered(model, x)
    fmt = int_model.input.out
    x_int = quantize_input(x[:3].numpy(), fmt)
    extremes = np.stack([np.full(x_int.shape[1:], fmt.hi), np.full(x_int.shape[1:], fmt.lo)])
    return int_model, np.concatenate([x_int, extremes])


def _all_cases() -> list[tuple[str, Callable[[], nn.Module], set[str]]]:
    cases = [(name, (lambda b=body: _Fn(b)), kinds) for name, (body, kinds) in OPERATORS.items()]
    return cases + [(name, make, kinds) for name, (make, kinds) in MODULES.items()]


CASES = _all_cases()


# --- the slow reference, from the spec -----------------------------------------------------


def _ref_conv(layer: Conv2dLayer, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    g = layer.geometry()
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = g.kernel, g.stride, g.padding, g.dilation
    n, _, h, wd = x.shape
    cout, cin_g = w.shape[:2]
    cout_g = cout // g.groups
    _, ho, wo = layer.shape
    out = np.zeros((n, cout, ho, wo), dtype=object)
    for o in range(cout):
        group = o // cout_g
        for y in range(ho):
            for xx in range(wo):
                acc: int | np.ndarray = int(layer.bias[o])  # an object array once summed
                for ci in range(cin_g):
                    for i in range(kh):
                        for j in range(kw):
                            r, q = y * sh - ph + i * dh, xx * sw - pw + j * dw
                            if 0 <= r < h and 0 <= q < wd:
                                acc = acc + x[:, group * cin_g + ci, r, q].astype(object) * int(
                                    w[o, ci, i, j]
                                )
                out[:, o, y, xx] = [
                    ref_requantize(int(a), layer.shift, layer.relu, layer.out.lo, layer.out.hi)
                    for a in np.broadcast_to(acc, (n,))
                ]
    return out.astype(np.int64)


def _ref_maxpool(layer: MaxPoolLayer, x: np.ndarray) -> np.ndarray:
    k, s, p = layer.kernel, layer.stride, layer.padding or 0
    _, ho, wo = layer.shape
    out = np.zeros((x.shape[0], x.shape[1], ho, wo), dtype=np.int64)
    for y in range(ho):
        for xx in range(wo):
            rows = [r for r in range(y * s - p, y * s - p + k) if 0 <= r < x.shape[2]]
            cols = [q for q in range(xx * s - p, xx * s - p + k) if 0 <= q < x.shape[3]]
            out[:, :, y, xx] = x[:, :, rows][:, :, :, cols].max(axis=(2, 3))
    return out


def _ref_meanpool(layer: MeanPoolLayer, x: np.ndarray) -> np.ndarray:
    _, ho, wo = layer.shape
    out = np.zeros((x.shape[0], x.shape[1], ho, wo), dtype=np.int64)
    for y in range(ho):
        for xx in range(wo):
            r, q = y * layer.stride_h, xx * layer.stride_w
            window = x[:, :, r : r + layer.kernel_h, q : q + layer.kernel_w]
            for i, j in np.ndindex(out.shape[:2]):
                total = int(window[i, j].sum()) * layer.multiplier
                out[i, j, y, xx] = ref_requantize(
                    total, layer.shift, False, layer.out.lo, layer.out.hi
                )
    return out


def _ref_layer(layer: object, operands: list[np.ndarray]) -> np.ndarray | None:
    if isinstance(layer, Conv2dLayer):
        return _ref_conv(layer, operands[0], layer.weights_int())
    if isinstance(layer, MaxPoolLayer):
        return _ref_maxpool(layer, operands[0])
    if isinstance(layer, MeanPoolLayer):
        return _ref_meanpool(layer, operands[0])
    if isinstance(layer, ClampLayer):
        return np.minimum(np.maximum(operands[0], layer.lo), layer.hi)
    if isinstance(layer, ConcatLayer):
        fmt = layer.out
        parts = [
            np.vectorize(lambda v, s=s: ref_requantize(int(v), s, False, fmt.lo, fmt.hi))(x)
            for x, s in zip(operands, layer.shifts, strict=True)
        ]
        return np.concatenate(parts, axis=1).astype(np.int64)
    return None


def check_against_reference(model: IntModel, x: np.ndarray) -> int:
    """Every new-kind layer's executor output equals the reference on the executor's own
    inputs; returns how many layers were compared."""
    values = run(model, x, trace=True)
    assert isinstance(values, dict)
    compared = 0
    for layer in model.layers[1:]:
        expected = _ref_layer(layer, [values[name] for name in layer.inputs])
        if expected is not None:
            np.testing.assert_array_equal(values[layer.name], expected, err_msg=layer.name)
            compared += 1
    return compared


# --- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "make", "kinds"), CASES, ids=[c[0] for c in CASES])
def test_operator_lowers_runs_exactly_and_round_trips(
    name: str, make: Callable[[], nn.Module], kinds: set[str], tmp_path: object
) -> None:
    model, x = _case(make)
    assert kinds <= {layer.kind for layer in model.layers}
    assert check_against_reference(model, x) >= 1
    save_package(model, tmp_path)  # type: ignore[arg-type]
    again = load_package(tmp_path)  # type: ignore[arg-type]
    np.testing.assert_array_equal(run(again, x), run(model, x))


def test_integer_model_tracks_the_float_model() -> None:
    """Functional ResNet-style block with cat and global mean: the integer logits follow
    the float ones (within a few output steps) on fresh inputs."""
    torch.manual_seed(3)
    body, _ = OPERATORS["torch.cat"]
    model = _Fn(body)
    x = torch.rand(256, 2, 7, 7)
    with torch.no_grad():
        model(x[:1])
    int_model = lowered(model, x)
    fresh = torch.rand(32, 2, 7, 7)
    with torch.no_grad():
        ref = model(fresh).double().numpy()
    out = run(int_model, quantize_input(fresh.numpy(), int_model.input.out))
    got = np.asarray(out) * 2.0 ** -int_model.layer(int_model.output).out.frac
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_reference_catches_a_wrong_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Padding a max pool with 0 instead of the format's minimum is caught (signed input)."""
    from inq_hw.intmodel import execute

    model, x = _case(MODULES["MaxPool2d padding ceil_mode"][0])
    assert check_against_reference(model, x)
    original = np.pad

    def zero_pad(array: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        kwargs.pop("constant_values", None)
        return original(array, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(execute.np, "pad", zero_pad)
    with pytest.raises(AssertionError):
        check_against_reference(model, x)


@pytest.mark.parametrize("count", [1, 2, 3, 9, 49, 196, 1 << 10])
def test_mean_constant(count: int) -> None:
    multiplier, shift, mode = mean_constant(count)
    assert mode == ("shift" if count & (count - 1) == 0 else "shift_add")
    error = abs(multiplier / 2**shift - 1 / count) * count
    assert error <= (0 if mode == "shift" else 2.0 ** -(MEAN_PRECISION_BITS + 1))


def test_every_unsupported_node_in_one_line() -> None:
    class Mobile(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3)
            self.act = nn.Hardswish()
            self.gate = nn.Sigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.act(self.conv(x))
            return torch.flatten(y * self.gate(y) + F.silu(y), 1)

    with pytest.raises(ModelError) as info:
        lower_model(Mobile(), torch.rand(4, 2, 5, 5), bits=4, n1={"conv": 0})
    message = str(info.value)
    assert "\n" not in message and "4 node(s)" in message
    for part in ("'act' (Hardswish)", "'gate' (Sigmoid)", "'mul'", "'silu'"):
        assert part in message


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.AdaptiveAvgPool2d(2)), "equal windows"),
        (lambda: _Fn(lambda m, x: m.get_submodule("conv")(x) + 1.0), "constant operand"),
        (
            lambda: _Fn(lambda m, x: m.get_submodule("conv")(x).mean(1)),
            "only the mean over H and W",
        ),
        (
            lambda: _Fn(lambda m, x: _twice(m, x, lambda y, z: torch.cat([y, z], 2))),
            "only channels",
        ),
    ],
)
def test_option_errors_name_the_node(make: Callable[[], nn.Module], match: str) -> None:
    torch.manual_seed(0)
    model = make()
    x = torch.rand(8, 2, 5, 5)
    with torch.no_grad():
        model(x[:1])
    with pytest.raises(ModelError, match=match):
        lowered(model, x)


def test_package_checks_new_layers(tmp_path: object) -> None:
    import dataclasses

    model, _ = _case(MODULES["AvgPool2d 3x3 stride 1"][0])
    pool = next(layer for layer in model.layers if isinstance(layer, MeanPoolLayer))
    bad = dataclasses.replace(pool, multiplier=pool.multiplier + 1)
    broken = IntModel(tuple(bad if lay is pool else lay for lay in model.layers), model.output)
    with pytest.raises(PackageError, match="multiplier"):
        save_package(broken, tmp_path)  # type: ignore[arg-type]


def test_package_checks_a_repeated_window(tmp_path: object) -> None:
    """Stride 0 repeats one window, which must span its whole axis."""
    import dataclasses

    model, _ = _case(MODULES["AdaptiveAvgPool2d(3) of a 1x1 map (one window repeated)"][0])
    pool = next(layer for layer in model.layers if isinstance(layer, MeanPoolLayer))
    assert (pool.stride_h, pool.stride_w, pool.shape[1:]) == (0, 0, (3, 3))
    bad = dataclasses.replace(pool, kernel_h=2)
    broken = IntModel(tuple(bad if lay is pool else lay for lay in model.layers), model.output)
    with pytest.raises(PackageError, match="stride 0 repeats one window, but its height 2"):
        save_package(broken, tmp_path)  # type: ignore[arg-type]


def test_repeated_window_bit_exact_on_the_pe_array() -> None:
    """VGG's adaptive pool of a 1x1 map at 32x32 inputs: a VECTOR of step 0."""
    from tests.test_pe_array import check_array

    model, images = _case(MODULES["AdaptiveAvgPool2d(3) of a 1x1 map (one window repeated)"][0])
    check_array(model, images, 2, 2)


def test_inq_warns_about_weights_it_leaves_in_fp32() -> None:
    model = nn.Sequential(nn.Conv1d(2, 2, 3), nn.LSTM(4, 4), nn.Linear(4, 2))
    with pytest.warns(UnquantizedWeightWarning, match=r"0 \(Conv1d\), 1 \(LSTM\)"):
        IncrementalQuantizer(model, INQConfig(bits=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IncrementalQuantizer(nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2)), INQConfig())


# --- the PE array ---------------------------------------------------------------------------


@pytest.mark.hw
def test_new_operators_bit_exact_on_the_pe_array() -> None:
    """Depthwise conv, clamp, residual +, cat and a 3x3 mean (shift-add) in Amaranth's
    simulator, every output bit and the cycle model's cycle count."""
    from tests.test_pe_array import check_array

    def body(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(m.get_submodule("conv")(x))
        z = F.relu6(m.get_submodule("dw")(y)) + y
        return F.adaptive_avg_pool2d(torch.cat([z, y], 1), 1)

    torch.manual_seed(0)
    x = torch.randn(64, 2, 3, 3)
    model = _Fn(body)
    with torch.no_grad():
        model(x[:1])
    int_model = lowered(model, x)
    kinds = {layer.kind for layer in int_model.layers}
    assert {"clamp", "add", "concat", "meanpool"} <= kinds
    check_array(int_model, quantize_input(x[:2].numpy(), int_model.input.out), 2, 2)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "ceil_mode", "size"),
    [(3, 2, 1, True, 7), (3, 2, 1, False, 8), (3, 2, 0, True, 8), (2, 2, 1, True, 6)],
)
def test_padded_and_ceil_mode_max_pool_bit_exact_on_the_pe_array(
    kernel: int, stride: int, padding: int, ceil_mode: bool, size: int
) -> None:
    """The ResNet stem's and SqueezeNet's pools: a zero-padded copy by MATMUL, then a
    plain VECTOR; every output bit (shift PEs and the multiplier twin) and the cycle
    model's cycle count, which includes the copy."""
    from rtl_gen.pe_program import OP_MATMUL, compile_program, fit_config, padded_name
    from tests.test_pe_array import check_array

    def body(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(m.get_submodule("conv")(x))
        return torch.flatten(F.max_pool2d(y, kernel, stride, padding, ceil_mode=ceil_mode), 1)

    torch.manual_seed(0)
    x = torch.randn(16, 2, size, size)
    model = _Fn(body)
    with torch.no_grad():
        model(x[:1])
    int_model = lowered(model, x)
    pool = next(layer for layer in int_model.layers if isinstance(layer, MaxPoolLayer))
    assert not pool.plain
    program = compile_program(int_model, fit_config(int_model, rows=2, cols=2))
    copies = [i for i in program.instructions if i.layer == pool.name and i.op == OP_MATMUL]
    assert len(copies) == int_model.layer(pool.inputs[0]).shape[0]  # one per channel
    assert padded_name(pool) in program.regions
    images = quantize_input(x[:3].numpy(), int_model.input.out)
    check_array(int_model, images, 2, 2)
    check_array(int_model, images[:2], 3, 2, pe="mult")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("MaxPool2d padding ceil_mode", "this input is signed"),
        ("grouped dilated rectangular strided Conv2d", "square kernels"),
    ],
)
def test_pe_array_refuses_what_its_controller_cannot_run(name: str, match: str) -> None:
    from rtl_gen.pe_program import ProgramError, fit_config

    model, _ = _case(MODULES[name][0])
    with pytest.raises(ProgramError, match=match):
        fit_config(model, rows=2, cols=2)


@pytest.mark.parametrize(
    ("name", "kind", "ops"),
    [
        # (C=6) x (3x3 = 9 window adds - 1 + set bits of the constant - 1) per output
        ("F.avg_pool2d 3x3", "meanpool", None),
        ("ReLU6", "clamp", 2 * 6 * 7 * 7),
        ("torch.cat", "concat", None),
    ],
)
def test_analytic_cost_counts_new_layers(name: str, kind: str, ops: int | None) -> None:
    from inq_hw.cost.analytic import analyze

    model, _ = _case(lambda: _Fn(OPERATORS[name][0]))
    layer = next(layer for layer in model.layers if layer.kind == kind)
    if isinstance(layer, MeanPoolLayer):
        per_out = layer.kernel_h * layer.kernel_w - 1 + bin(layer.multiplier).count("1") - 1
        ops = int(np.prod(layer.shape)) * per_out
    if isinstance(layer, ConcatLayer):
        ops = sum(
            int(np.prod(model.layer(n).shape))
            for n, s in zip(layer.inputs, layer.shifts, strict=True)
            if s > 0
        )
    (cost,) = [c for c in analyze(model).layers if c.name == layer.name]
    assert cost.counts["elementwise_ops"] == ops
    assert cost.designs["shift-add"].energy_pj >= 0


def test_dataflow_top_refuses_grouped_convolutions() -> None:
    from inq_hw.errors import ConfigError
    from rtl_gen.dataflow import build_dataflow

    model, _ = _case(MODULES["grouped dilated rectangular strided Conv2d"][0])
    with pytest.raises(ConfigError, match="convolution engine runs square kernels"):
        build_dataflow(model)
