"""Bench: the torchvision-style zoo at 224x224, one core.

ResNet-18 (11.7M parameters, 10 classes): BatchNorm folding plus one INQ step (partition
and quantize every layer onto its 5-bit grid), lowering (trace, calibration on 8 images,
codes, biases, baselines), the golden executor in images per second, and the PE-array
``explore`` of a 16x16 array (fit, compile, cycle model; ResNet-18's padded stem max
pool runs as a zero-padded copy and a plain pool). MobileNetV2 (depthwise convs, ReLU6
clamps, residual adds, global average pool) beside it. Build (quantize + lower) and run
(executor) are reported separately.
"""

import copy
from typing import Any

import torch

from benches._harness import print_table, single_thread, time_once
from inq_hw.commands.explore import explore_model
from inq_hw.fold import fold_batchnorm
from inq_hw.inq import IncrementalQuantizer, INQConfig
from inq_hw.intmodel import IntModel, quantize_input
from inq_hw.intmodel import run as execute
from inq_hw.lower import CalibrationConfig, lower_model
from inq_hw.models import build_model
from rtl_gen.pe_program import ProgramError

__all__ = ["run"]

SIZE = 224
BITS = 5
CALIBRATION = 8
IMAGES = 8
ARRAY = (16, 16)


def _quantized(name: str) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, int]]:
    torch.manual_seed(0)
    model = fold_batchnorm(build_model(name, in_channels=3, num_classes=10, input_size=SIZE))
    baseline = copy.deepcopy(model).eval()
    inq = IncrementalQuantizer(model, INQConfig(bits=BITS, schedule=(1.0,)))
    inq.advance()
    return model.eval(), baseline, {layer.name: layer.n1 for layer in inq.layers}


def _lower(model: torch.nn.Module, baseline: torch.nn.Module, n1: dict[str, int]) -> IntModel:
    x = torch.rand(CALIBRATION, 3, SIZE, SIZE)
    config = CalibrationConfig(samples=CALIBRATION)
    return lower_model(model, x, bits=BITS, n1=n1, config=config, baseline_model=baseline)


def _explore(model: IntModel) -> str:
    try:
        rows, _ = explore_model(model, [ARRAY], None, 100.0)
    except ProgramError as exc:
        return f"refused: {str(exc)[:60]}..."
    return f"{rows[0]['cycles']:,} cycles"


def _measure(name: str) -> dict[str, Any]:
    holder: dict[str, Any] = {}
    t_inq = time_once(lambda: holder.update(q=_quantized(name)))
    t_lower = time_once(lambda: holder.update(m=_lower(*holder["q"])))
    model = holder["m"]
    x = quantize_input(torch.rand(IMAGES, 3, SIZE, SIZE).numpy(), model.input.out)
    t_exec = time_once(lambda: execute(model, x))
    t_explore = time_once(lambda: holder.update(e=_explore(model)))
    return {
        "fold_inq_s": t_inq,
        "lower_s": t_lower,
        "executor_images_per_s": IMAGES / t_exec,
        "explore_s": t_explore,
        "explore": holder["e"],
    }


def run() -> dict[str, Any]:
    with single_thread():
        figures = {name: _measure(name) for name in ("resnet18", "mobilenet_v2")}
    print_table(
        f"zoo at {SIZE}x{SIZE}, {BITS}-bit weights, one thread",
        ["model", "fold+INQ step s", "lower s", "executor img/s", "explore 16x16 s", "explore"],
        [
            [
                name,
                f"{f['fold_inq_s']:.1f}",
                f"{f['lower_s']:.1f}",
                f"{f['executor_images_per_s']:.2f}",
                f"{f['explore_s']:.1f}",
                f["explore"],
            ]
            for name, f in figures.items()
        ],
    )
    return figures
