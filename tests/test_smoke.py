"""Smoke test, seconds: quantize -> lower -> execute -> one Amaranth unit simulation.

A 2-layer MLP on 4x4 single-channel inputs is quantized to 4-bit powers of two, lowered
to the integer model, run by the golden executor, and its first layer is simulated as a
constant-weight shift-add unit against the executor's integers, every output bit."""

import time

import numpy as np
import torch
from amaranth.sim import Simulator, SimulatorContext
from torch import nn

from inq_hw.intmodel import LinearLayer, run
from inq_hw.intmodel.arith import quantize_input
from inq_hw.lower import lower_model
from inq_hw.quant import compute_n1, quantize_po2
from rtl_gen.units import ConstDotUnit


def _quantized_mlp(bits: int) -> tuple[nn.Module, dict[str, int]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3))
    n1 = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                n1[name] = compute_n1(float(module.weight.abs().max()))
                module.weight.copy_(quantize_po2(module.weight, bits, n1=n1[name]))
    return model.eval(), n1


def test_smoke_quantize_lower_execute_simulate() -> None:
    start = time.perf_counter()
    model, n1 = _quantized_mlp(bits=4)
    x = torch.rand(8, 1, 4, 4)
    int_model = lower_model(model, x, bits=4, n1=n1)
    x_int = quantize_input(x.numpy(), int_model.input.out)
    outputs = run(int_model, x_int, trace=True)
    assert isinstance(outputs, dict)
    first = next(layer for layer in int_model.layers if isinstance(layer, LinearLayer))
    want = outputs[first.name]
    unit = ConstDotUnit.from_layer(first, int_model.input.out)
    got: list[list[int]] = []

    async def bench(ctx: SimulatorContext) -> None:
        for sample in x_int.reshape(len(x_int), -1):
            ctx.set(unit.i_data, [int(v) for v in sample])
            await ctx.delay(1e-9)
            got.append([int(v) for v in ctx.get(unit.o_data)])

    sim = Simulator(unit)
    sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(np.array(got), want.reshape(len(x_int), -1))
    assert time.perf_counter() - start < 5
