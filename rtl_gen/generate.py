"""From an integer model package to hardware designs.

``layer:<name>`` gives the constant-weight unit of one weight layer (a Linear layer, or
one window of a convolution: ``Cin·k·k`` inputs → ``Cout`` outputs, requantised);
``network`` gives one such unit per weight layer (the streaming whole-network top comes
with the dataflow accelerator). ``baseline="mult8"`` builds each unit's multiplier twin
from the package's 8-bit uniform baseline weights, with the same ports and latency.
"""

import os
from pathlib import Path
from typing import Any

from inq_hw.errors import ConfigError
from inq_hw.intmodel import IntModel, WeightLayer
from inq_hw.intmodel.package import load_package, package_hash
from rtl_gen.export import Design, write_designs
from rtl_gen.names import verilog_identifier
from rtl_gen.units import BASELINES, ConstDotUnit, Requant

__all__ = ["BASELINES", "build_designs", "generate"]


def _weight_layer(model: IntModel, name: str) -> WeightLayer:
    try:
        layer = model.layer(name)
    except KeyError:
        names = ", ".join(layer.name for layer in model.weight_layers())
        raise ConfigError(f"No layer {name!r} in the package; weight layers: {names}") from None
    if not isinstance(layer, WeightLayer):
        raise ConfigError(f"Layer {name!r} is a {layer.kind} layer; only weight layers have units")
    return layer


def _unit(model: IntModel, layer: WeightLayer, stages: int, baseline: str | None) -> ConstDotUnit:
    in_format = model.layer(layer.inputs[0]).out
    if baseline is None:
        return ConstDotUnit.from_layer(layer, in_format, stages=stages)
    if not layer.has_baseline:
        raise ConfigError(
            f"The package has no 8-bit baseline for layer {layer.name!r} (re-export it)"
        )
    twin = layer.arithmetic("baseline")
    requant = Requant(shift=twin.shift, relu=layer.relu, out=layer.out)
    return ConstDotUnit(
        weights=twin.weights.reshape(layer.codes.shape[0], -1),
        bias=twin.bias,
        in_format=in_format,
        mode="multiply",
        requant=requant,
        stages=stages,
        acc_bits=twin.acc_bits,
    )


def build_designs(
    model: IntModel,
    *,
    unit: str,
    stages: int = 0,
    baseline: str | None = None,
    source_hash: str | None = None,
) -> list[Design]:
    """Designs for ``unit`` (``"layer:<name>"`` or ``"network"``) of ``model``.

    Raises
    ------
    ConfigError
        Unknown unit or layer, a layer without weights, an unknown baseline.
    """
    if baseline is not None and baseline not in BASELINES:
        raise ConfigError(f"Baseline must be one of {BASELINES}, not {baseline!r}")
    if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= 64:
        raise ConfigError(f"Pipeline stages must be an integer from 0 to 64, not {stages!r}")
    if unit == "network":
        layers = model.weight_layers()
    elif unit.startswith("layer:"):
        layers = [_weight_layer(model, unit.removeprefix("layer:"))]
    else:
        raise ConfigError(f"Unit must be 'layer:<name>' or 'network', not {unit!r}")
    taken: set[str] = set()
    designs = []
    for layer in layers:
        component = _unit(model, layer, stages, baseline)
        suffix = "mult8" if baseline else "shiftadd"
        top = verilog_identifier(f"{layer.name}_{suffix}", taken=taken)
        params: dict[str, Any] = {
            "layer": layer.name,
            "kind": layer.kind,
            "mode": component.mode,
            "stages": stages,
            "inputs": int(component.weights.shape[1]),
            "outputs": int(component.weights.shape[0]),
            "weight_bits": 8 if baseline else layer.bits,
            "acc_bits": component.acc_bits,
            "in_format": component.in_format.to_dict(),
            "out_format": layer.out.to_dict(),
            "shift": component.requant.shift if component.requant else None,
            "relu": layer.relu,
        }
        designs.append(
            Design(
                top=top,
                component=component,
                latency=component.latency,
                params=params,
                source_hash=source_hash,
            )
        )
    return designs


def generate(
    package: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    unit: str,
    stages: int = 0,
    baseline: str | None = None,
) -> dict[str, Any]:
    """Load a package, build the designs of ``unit`` and write them to ``out_dir``.

    Returns the manifest (tops, ports, latency, parameters, package hash).
    """
    model = load_package(package)
    designs = build_designs(
        model, unit=unit, stages=stages, baseline=baseline, source_hash=package_hash(package)
    )
    return write_designs(designs, Path(out_dir))
