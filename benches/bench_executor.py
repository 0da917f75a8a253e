"""Bench: the golden integer executor on the digits-cnn and LeNet-5 shapes, one core.

Goals: the digits test split (359 images, 1x8x8) through the digits-cnn shape in under
1 s; 10,000 random 28x28 images through LeNet-5 in under 10 s. The models have random
5-bit power-of-two weights (``po2_codes`` of normal weights) and 8-bit activations, so
the figures are those of a lowered model of the same shapes (the executor does the same
work whatever the weights are). For scale, the same models with every accumulator
declared 60 bits wide, which sends every matrix product down the exact int64 path
instead of float64 BLAS: the ratio says what the float64 path saves. BLAS and OpenMP
run on one thread (``threadpoolctl``) where it is installed.
"""

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from benches._harness import BenchError, best_of, print_table, single_thread, time_once, verdict
from inq_hw.data import load_dataset
from inq_hw.intmodel import execute
from inq_hw.intmodel.arith import ActFormat, accumulator_bits, quantize_input
from inq_hw.intmodel.layers import (
    Conv2dLayer,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    WeightLayer,
)
from inq_hw.quant import pack_codes, po2_codes

__all__ = ["GOALS_S", "build_int_model", "run"]

REPEAT = 3
BITS = 5
ACT_BITS = 8
WIDE_ACC_BITS = 60  # above execute's 52-bit float64 limit: the int64 path
LENET_IMAGES = 10_000
GOALS_S = {"digits-cnn": 1.0, "lenet5": 10.0}

# (kind, arguments): conv (out channels, kernel, padding, relu), maxpool (kernel),
# flatten, linear (out features, relu).
SHAPES: dict[str, tuple[tuple[int, ...], list[tuple[Any, ...]]]] = {
    "digits-cnn": (
        (1, 8, 8),
        [
            ("conv", 16, 3, 1, True),
            ("conv", 32, 3, 1, True),
            ("maxpool", 2),
            ("conv", 32, 3, 1, True),
            ("maxpool", 2),
            ("flatten",),
            ("linear", 10, False),
        ],
    ),
    "lenet5": (
        (1, 28, 28),
        [
            ("conv", 6, 5, 0, True),
            ("maxpool", 2),
            ("conv", 16, 5, 0, True),
            ("maxpool", 2),
            ("flatten",),
            ("linear", 120, True),
            ("linear", 84, True),
            ("linear", 10, False),
        ],
    ),
}


@contextlib.contextmanager
def one_core() -> Iterator[str]:
    """torch on one thread, and BLAS/OpenMP too if threadpoolctl is importable."""
    with single_thread():
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield "BLAS threads not limited (threadpoolctl not installed)"
            return
        with threadpool_limits(1):
            yield "BLAS/OpenMP limited to 1 thread by threadpoolctl"


def _weight_layer(
    rng: np.random.Generator, name: str, src: Layer, weight_shape: tuple[int, ...], relu: bool
) -> dict[str, Any]:
    """Fields of a weight layer with random 5-bit codes, consistent bias, shift and width."""
    codes = po2_codes(torch.from_numpy(rng.standard_normal(weight_shape) * 0.1), BITS)
    packed = pack_codes(codes).numpy()
    w_int = np.where(codes.zero.numpy(), 0, 1 << (codes.n1 - codes.n2 - codes.index.numpy()))
    sums = np.abs(w_int).reshape(weight_shape[0], -1).sum(axis=1)
    bias = rng.integers(-(int(sums.max()) << 4), int(sums.max()) << 4, size=weight_shape[0])
    acc_bits = accumulator_bits(sums, bias, src.out.max_abs)
    shift = acc_bits - ACT_BITS - 3  # the worst case is rarely approached
    out = ActFormat(ACT_BITS, signed=not relu, frac=src.out.frac - codes.n2 - shift)
    return dict(
        name=name,
        inputs=(src.name,),
        out=out,
        bits=BITS,
        n1=codes.n1,
        n2=codes.n2,
        codes=packed,
        bias=bias.astype(np.int64),
        shift=shift,
        relu=relu,
        acc_bits=acc_bits,
    )


def _next_layer(rng: np.random.Generator, i: int, src: Layer, op: tuple[Any, ...]) -> Layer:
    name, kind = f"{op[0]}{i}", op[0]
    if kind == "conv":
        out_ch, k, pad, relu = op[1:]
        c, h, w = src.shape
        side = h + 2 * pad - k + 1
        fields = _weight_layer(rng, name, src, (out_ch, c, k, k), relu=relu)
        return Conv2dLayer(shape=(out_ch, side, side), stride=1, padding=pad, **fields)
    if kind == "maxpool":
        c, h, w = src.shape
        shape = (c, h // op[1], w // op[1])
        return MaxPoolLayer(
            name=name, inputs=(src.name,), shape=shape, out=src.out, kernel=op[1], stride=op[1]
        )
    if kind == "flatten":
        size = int(np.prod(src.shape))
        return FlattenLayer(name=name, inputs=(src.name,), shape=(size,), out=src.out)
    fields = _weight_layer(rng, name, src, (op[1], src.shape[0]), relu=op[2])
    return LinearLayer(shape=(op[1],), **fields)


def build_int_model(shape_name: str, seed: int = 0) -> IntModel:
    """A random :class:`IntModel` of one of :data:`SHAPES`, 5-bit weights, 8-bit activations."""
    rng = np.random.default_rng(seed)
    input_shape, ops = SHAPES[shape_name]
    layers: list[Layer] = [
        InputLayer(name="x", inputs=(), shape=input_shape, out=ActFormat(ACT_BITS, False, 8))
    ]
    for i, op in enumerate(ops):
        layers.append(_next_layer(rng, i, layers[-1], op))
    return IntModel(layers=tuple(layers), output=layers[-1].name)


def with_acc_bits(model: IntModel, acc_bits: int) -> IntModel:
    """The same model with every accumulator declared ``acc_bits`` wide (selects the path)."""
    layers = [
        dataclasses.replace(layer, acc_bits=acc_bits) if isinstance(layer, WeightLayer) else layer
        for layer in model.layers
    ]
    return IntModel(layers=tuple(layers), output=model.output)


def _inputs(shape_name: str, model: IntModel) -> np.ndarray:
    if shape_name == "digits-cnn":
        images = load_dataset("digits").test.x.numpy()
        return quantize_input(images, model.input.out)
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(LENET_IMAGES, *model.input.shape), dtype=np.int64)


def matmul_seconds(model: IntModel, x: np.ndarray) -> tuple[float, float]:
    """Best-of seconds of the weight layers' products alone, float64 and int64 paths."""
    values = execute.run(model, x, trace=True)
    assert isinstance(values, dict)
    float_s = int_s = 0.0
    for layer in model.weight_layers():
        patches = values[layer.inputs[0]]
        if isinstance(layer, Conv2dLayer):
            patches, _, _ = execute._im2col(patches, layer.geometry())
        w = layer.weights_int().reshape(layer.codes.shape[0], -1).T
        float_s += best_of(functools.partial(execute._matmul, patches, w, layer.acc_bits), REPEAT)
        int_s += best_of(functools.partial(execute._matmul, patches, w, WIDE_ACC_BITS), REPEAT)
    return float_s, int_s


def measure(shape_name: str) -> dict[str, Any]:
    """Best-of seconds on the float64 path (as built) and on the forced int64 path."""
    model = build_int_model(shape_name)
    if max(layer.acc_bits for layer in model.weight_layers()) > execute._EXACT_FLOAT_BITS:
        raise BenchError(f"{shape_name}: the model as built should take the float64 path")
    wide = with_acc_bits(model, WIDE_ACC_BITS)
    x = _inputs(shape_name, model)
    first_s = time_once(lambda: execute.run(model, x))
    logits, wide_logits = execute.run(model, x), execute.run(wide, x)
    assert isinstance(logits, np.ndarray) and isinstance(wide_logits, np.ndarray)
    if not np.array_equal(logits, wide_logits):
        raise BenchError(f"{shape_name}: the float64 and int64 paths disagree")
    float_s = best_of(lambda: execute.run(model, x), REPEAT)
    int_s = best_of(lambda: execute.run(wide, x), REPEAT)
    matmul_float_s, matmul_int_s = matmul_seconds(model, x)
    return {
        "images": len(x),
        "acc_bits": [layer.acc_bits for layer in model.weight_layers()],
        "first_run_seconds": first_s,
        "seconds": float_s,
        "images_per_s": len(x) / float_s,
        "int64_path_seconds": int_s,
        "int64_over_float64": int_s / float_s,
        "matmul_float64_seconds": matmul_float_s,
        "matmul_int64_seconds": matmul_int_s,
        "matmul_int64_over_float64": matmul_int_s / matmul_float_s,
        "goal_s": GOALS_S[shape_name],
        "pass": float_s < GOALS_S[shape_name],
    }


def run() -> dict[str, Any]:
    """Measure, print a table and return the figures."""
    with one_core() as threads:
        figures: dict[str, Any] = {name: measure(name) for name in SHAPES}
    _print(figures, threads)
    return {**figures, "threads": threads, "repeat": REPEAT}


def _print(figures: dict[str, Any], threads: str) -> None:
    title = (
        f"executor: golden integer executor, {BITS}-bit weights, {ACT_BITS}-bit activations, "
        f"best of {REPEAT}; {threads}"
    )
    header = ["model", "images", "seconds", "images/s", "first run s", "goal", "verdict"]
    rows = [
        [
            name,
            f"{f['images']:,}",
            f"{f['seconds']:.3f}",
            f"{f['images_per_s']:,.0f}",
            f"{f['first_run_seconds']:.3f}",
            f"< {f['goal_s']:g} s",
            verdict(f["pass"]),
        ]
        for name, f in figures.items()
    ]
    print_table(title, header, rows)
    header = ["model", "float64 s", "int64 s", "int64/float64", "products alone"]
    rows = [
        [
            name,
            f"{f['seconds']:.3f}",
            f"{f['int64_path_seconds']:.3f}",
            f"{f['int64_over_float64']:.1f}x",
            f"{f['matmul_float64_seconds']:.3f} vs {f['matmul_int64_seconds']:.3f} s: "
            f"{f['matmul_int64_over_float64']:.1f}x",
        ]
        for name, f in figures.items()
    ]
    print_table(
        f"  float64-BLAS path against int64 path (same models, acc_bits forced to {WIDE_ACC_BITS})",
        header,
        rows,
    )


if __name__ == "__main__":
    run()
