"""From an integer model package to hardware designs.

``layer:<name>`` gives the constant-weight unit of one weight layer (a Linear layer, or
one window of a convolution: ``Cin·k·k`` inputs → ``Cout`` outputs, requantised);
``network`` gives one such unit per weight layer (the streaming whole-network top comes
with the dataflow accelerator). ``baseline="mult8"`` builds each unit's multiplier twin
from the package's uniform baseline weights (8-bit, or a uniform twin trained at the
design's width), with the same ports and latency.
"""

import os
from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.errors import ConfigError
from inq_hw.intmodel import IntModel, WeightLayer
from inq_hw.intmodel.arith import ActFormat
from inq_hw.intmodel.package import load_package, package_hash
from rtl_gen.export import Design, write_designs
from rtl_gen.names import verilog_identifier
from rtl_gen.units import ADDER_GRAPHS, BASELINES, ConstDotUnit, Requant

__all__ = [
    "BASELINES",
    "build_designs",
    "generate",
    "generate_matrix",
    "load_matrix",
    "matrix_design",
]


def _weight_layer(model: IntModel, name: str) -> WeightLayer:
    try:
        layer = model.layer(name)
    except KeyError:
        names = ", ".join(layer.name for layer in model.weight_layers())
        raise ConfigError(f"No layer {name!r} in the package; weight layers: {names}") from None
    if not isinstance(layer, WeightLayer):
        raise ConfigError(f"Layer {name!r} is a {layer.kind} layer; only weight layers have units")
    return layer


def _unit(
    model: IntModel,
    layer: WeightLayer,
    stages: int,
    baseline: str | None,
    graph: dict[str, Any],
) -> ConstDotUnit:
    in_format = model.layer(layer.inputs[0]).out
    if baseline is None:
        return ConstDotUnit.from_layer(layer, in_format, stages=stages, **graph)
    if not layer.has_baseline:
        raise ConfigError(
            f"The package has no uniform baseline for layer {layer.name!r} (re-export it)"
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


def _check_graph(adder_graph: str | None, max_depth: int | None) -> dict[str, Any]:
    if adder_graph is not None and adder_graph not in ADDER_GRAPHS:
        raise ConfigError(f"Adder graph must be one of {ADDER_GRAPHS}, not {adder_graph!r}")
    if max_depth is not None and (
        isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1
    ):
        raise ConfigError(f"Depth limit must be a positive integer, not {max_depth!r}")
    return {"adder_graph": adder_graph, "max_depth": max_depth}


def build_designs(
    model: IntModel,
    *,
    unit: str,
    stages: int = 0,
    baseline: str | None = None,
    source_hash: str | None = None,
    adder_graph: str | None = None,
    max_depth: int | None = None,
) -> list[Design]:
    """Designs for ``unit`` (``"layer:<name>"`` or ``"network"``) of ``model``;
    ``adder_graph`` and ``max_depth`` as for :class:`~rtl_gen.units.ConstDotUnit`.

    Raises
    ------
    ConfigError
        Unknown unit or layer, a layer without weights, an unknown baseline or adder graph.
    """
    graph = _check_graph(adder_graph, max_depth)
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
        component = _unit(model, layer, stages, baseline, graph if baseline is None else {})
        suffix = "mult8" if baseline else "shiftadd"
        top = verilog_identifier(f"{layer.name}_{suffix}", taken=taken)
        params: dict[str, Any] = {
            "layer": layer.name,
            "kind": layer.kind,
            "mode": component.mode,
            "stages": stages,
            "inputs": int(component.weights.shape[1]),
            "outputs": int(component.weights.shape[0]),
            "weight_bits": layer.twin_bits if baseline else layer.bits,
            "acc_bits": component.acc_bits,
            "in_format": component.in_format.to_dict(),
            "out_format": layer.out.to_dict(),
            "shift": component.requant.shift if component.requant else None,
            "relu": layer.relu,
            "adder_graph": component.adder_graph,
            "max_depth": component.max_depth,
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
    adder_graph: str | None = None,
    max_depth: int | None = None,
) -> dict[str, Any]:
    """Load a package, build the designs of ``unit`` and write them to ``out_dir``.

    Returns the manifest (tops, ports, latency, parameters, package hash).
    """
    model = load_package(package)
    designs = build_designs(
        model,
        unit=unit,
        stages=stages,
        baseline=baseline,
        source_hash=package_hash(package),
        adder_graph=adder_graph,
        max_depth=max_depth,
    )
    return write_designs(designs, Path(out_dir))


def load_matrix(path: str | os.PathLike[str]) -> np.ndarray:
    """An integer matrix from a ``.npy`` file (inputs x outputs), as Python ints; every
    entry must be 0 or ±2**k (the shift-add unit's weights).

    Raises
    ------
    ConfigError
        Unreadable file, not 2-D, a non-integer or non-power-of-two entry (the first one).
    """
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read matrix {os.fspath(path)!r}: {exc}") from None
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ConfigError(f"Matrix must be 2-D (inputs x outputs), not shape {matrix.shape}")
    if matrix.dtype.kind not in "iuf":
        raise ConfigError(f"Matrix entries must be integers, not dtype {matrix.dtype}")
    bad: Any = (
        np.argwhere(~np.isfinite(matrix) | (matrix != np.round(matrix)))
        if matrix.dtype.kind == "f"
        else []
    )
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise ConfigError(f"Matrix entry W[{i}, {j}] = {float(matrix[i, j])!r} is not an integer")
    values = np.vectorize(int, otypes=[object])(matrix)
    for (i, j), v in np.ndenumerate(values):
        if v != 0 and abs(v) & (abs(v) - 1):
            raise ConfigError(
                f"Matrix entry W[{i}, {j}] = {v} is not 0 or ±2**k (shift-add needs powers of two)"
            )
    return values


def matrix_design(
    weights: np.ndarray,
    *,
    in_format: ActFormat,
    stages: int = 0,
    adder_graph: str | None = None,
    max_depth: int | None = None,
    top: str = "matrix_shiftadd",
) -> Design:
    """The shift-add unit of ``y_j = Σ_i x_i·W[i, j]`` (``weights`` inputs x outputs),
    without bias or requantisation: the outputs are the exact sums."""
    graph = _check_graph(adder_graph, max_depth)
    w = np.asarray(weights, dtype=object).T
    unit = ConstDotUnit(
        weights=w,
        bias=np.zeros(w.shape[0], dtype=object),
        in_format=in_format,
        stages=stages,
        **graph,
    )
    params = {
        "inputs": int(w.shape[1]),
        "outputs": int(w.shape[0]),
        "in_format": in_format.to_dict(),
        "acc_bits": unit.acc_bits,
        "stages": stages,
        "adder_graph": unit.adder_graph,
        "max_depth": max_depth,
        "adders": _adders(unit),
    }
    return Design(top=top, component=unit, latency=unit.latency, params=params)


def _adders(unit: ConstDotUnit) -> int:
    """Two-input adders of a shift-add unit (terms and constant of each tree, or the graph)."""
    if unit.adder_graph == "shared":
        return unit.graph.adders(unit.constants())
    constants = unit.constants()
    return sum(
        max(0, int(np.count_nonzero(row)) + (1 if c else 0) - 1)
        for row, c in zip(unit.weights, constants, strict=True)
    )


def generate_matrix(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    in_bits: int,
    signed: bool = True,
    stages: int = 0,
    adder_graph: str | None = None,
    max_depth: int | None = None,
) -> dict[str, Any]:
    """:func:`matrix_design` of the matrix in ``path`` written to ``out_dir``; the manifest.

    Example usage::

        np.save("W.npy", np.array([[1, -2], [4, 0], [0, 8]]))   # 3 inputs, 2 outputs
        generate_matrix("W.npy", "build/matrix", in_bits=8)
    """
    if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= 64:
        raise ConfigError(f"Pipeline stages must be an integer from 0 to 64, not {stages!r}")
    weights = load_matrix(path)
    design = matrix_design(
        weights,
        in_format=ActFormat(in_bits, signed, 0),
        stages=stages,
        adder_graph=adder_graph,
        max_depth=max_depth,
    )
    return write_designs([design], Path(out_dir))
