"""How many register stages a dot stage needs for a target clock: a small delay model.

The longest register-to-register path of the dataflow top is inside its dot stages
(:mod:`rtl_gen.engines`, :mod:`rtl_gen.folded`): from the window registers through the
adder tree and the requantisation into the engine's output slot. A dot stage with ``N``
pipeline stages has registers after the tree levels :func:`rtl_gen.arith.register_levels`
picks, so its paths are *segments* of the tree. The model prices a segment as

    ``delay = register_ns + (levels + luts) · level_ns + width · bit_ns``

with ``levels`` the adder levels in it, ``luts`` plain logic levels (the folded lanes'
weight decode before the tree; the saturation multiplexer after it) and ``width`` the
widest adder in it: a leaf's width (input bits, largest shift, sign) plus one bit per
level, at most the accumulator's. In a tree of ripple-carry adders the carries of
successive levels overlap, so the path grows with the levels plus the width, not their
product. Requantisation (a comparison at the accumulator's width) counts as one adder
level. The constants per device family (:data:`DELAY_MODELS`) are fitted by least
squares (:func:`fit`) to nextpnr's Fmax of a few constant-weight units
(:func:`inq_hw.cost.pipelining.calibrate`, cached by :mod:`inq_hw.cost.synth`); the model
is coarse (it ignores routing congestion in a full top and the combinational ``ready``
chain between engines) and is meant to pick a depth, not to promise an Fmax: ``inq-hw
implement`` measures that.

Example usage::

    stages = pipeline_for_clock(model, clock_mhz=100, family="ecp5", folding={"fc": 2})
    top = build_dataflow(model, folding={"fc": 2}, pipeline=stages)
"""

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inq_hw.errors import ConfigError
from inq_hw.intmodel.arith import ActFormat, accumulator_bits
from inq_hw.intmodel.layers import IntModel, WeightLayer
from rtl_gen.arith import DECODE_LEVELS, tail_stages, tree_register_levels

__all__ = [
    "DELAY_MODELS",
    "FAMILIES",
    "MAX_STAGES",
    "DelayModel",
    "DotPath",
    "PipelineError",
    "Sample",
    "dot_path",
    "dot_paths",
    "fit",
    "path_delay_ns",
    "pipeline_for_clock",
    "stages_for_clock",
]

FAMILIES = ("ice40", "ecp5")
MAX_STAGES = 16
_MULT_LEVELS = 3  # a runtime 8-bit multiplier priced as three adder levels (coarse)


class PipelineError(ConfigError):
    """No pipeline depth reaches the requested clock (or a bad request)."""


@dataclass(frozen=True)
class DelayModel:
    """Delay constants of one device family, in nanoseconds (module docstring)."""

    register_ns: float
    level_ns: float
    bit_ns: float

    def segment_ns(self, levels: int, luts: int, width: int) -> float:
        """One register-to-register segment of ``levels`` adders and ``luts`` logic levels."""
        return self.register_ns + (levels + luts) * self.level_ns + width * self.bit_ns


#: Fitted by :func:`inq_hw.cost.pipelining.calibrate` (``python -m benches pipelining``;
#: README, "Pipelined tops").
DELAY_MODELS: dict[str, DelayModel] = {
    "ice40": DelayModel(register_ns=0.0, level_ns=1.622, bit_ns=0.2595),
    "ecp5": DelayModel(register_ns=0.0, level_ns=2.189, bit_ns=0.04115),
}


@dataclass(frozen=True)
class DotPath:
    """The logic of one dot stage, as the delay model sees it.

    ``levels``: adder-tree depth; ``width``: accumulator bits; ``leaf_width``: bits of a
    term entering the tree (default ``width``); ``pre_levels`` and ``pre_luts``: adder
    levels and logic levels before the tree (a multiplier; a folded lane's weight decode);
    ``lead``: tree levels the registers count that logic as (``adder_tree``'s ``lead``);
    ``tail``: whether the last register goes after the requantisation from 2 stages on
    (:func:`rtl_gen.arith.tail_stages`; every requantising dot stage).
    """

    levels: int
    width: int
    pre_levels: int = 0
    pre_luts: int = 0
    leaf_width: int | None = None
    lead: int = 0
    tail: bool = False

    def width_at(self, level: int) -> int:
        """Width of the widest adder of tree level ``level`` (1 = the leaves' adders)."""
        leaf = self.width if self.leaf_width is None else self.leaf_width
        return min(self.width, leaf + level)


def dot_path(
    weights: np.ndarray, bias: np.ndarray, in_format: ActFormat, *, mode: str, fold: int
) -> DotPath:
    """The :class:`DotPath` of a layer's dot stage (``fold`` 1: constant-weight unit)."""
    weights = np.asarray(weights, dtype=np.int64)
    width = accumulator_bits(np.abs(weights).sum(axis=1), np.asarray(bias), in_format.max_abs)
    largest = int(np.abs(weights).max(initial=1))
    leaf = in_format.bits + largest.bit_length()  # the input, shifted or multiplied, signed
    if fold == 1:
        terms = int((weights != 0).sum(axis=1).max(initial=0)) + 1  # the constant
        pre = 2 if mode == "multiply" else 0  # a constant product: a few shifted adds
        levels = max(0, (terms - 1).bit_length())
        return DotPath(levels=levels, width=width, pre_levels=pre, leaf_width=leaf, tail=True)
    levels = max(0, weights.shape[1]).bit_length()  # K runtime terms and the bias
    lead = DECODE_LEVELS
    if mode == "multiply":
        return DotPath(
            levels, width, pre_levels=_MULT_LEVELS, leaf_width=leaf, lead=lead, tail=True
        )
    luts = max(1, (largest.bit_length() - 1).bit_length()) + 1  # barrel shift, sign
    return DotPath(levels, width, pre_luts=luts, leaf_width=leaf, lead=lead, tail=True)


def _segments(depth: int, stages: int, lead: int = 0) -> list[int]:
    """Adder levels between consecutive registers: the first starts at the input (0
    levels when a register sits on the leaves, behind the logic before the tree), the
    last ends at the root, before requantisation."""
    cuts = sorted(tree_register_levels(depth, stages, lead))
    bounds = [0, *cuts]
    segments = [b - a for a, b in itertools.pairwise(bounds)]
    return [*segments, depth - bounds[-1]]


def path_delay_ns(path: DotPath, stages: int, model: DelayModel) -> float:
    """The longest register-to-register delay of a dot stage with ``stages`` stages (a
    folded lane's tail register ends the requantisation's own segment)."""
    tail = tail_stages(stages) if path.tail else 0
    segments = _segments(path.levels, stages - tail, path.lead)
    delays, end = [], 0
    for n, levels in enumerate(segments):
        end += levels
        pre_levels, pre_luts = (path.pre_levels, path.pre_luts) if n == 0 else (0, 0)
        last = n == len(segments) - 1
        post_levels, post_luts = (1, 1) if last and not tail else (0, 0)
        width = path.width if last else path.width_at(end)
        delays.append(
            model.segment_ns(levels + pre_levels + post_levels, pre_luts + post_luts, width)
        )
    if tail:  # root register -> requantisation -> tail register
        delays.append(model.segment_ns(1, 1, path.width))
    return max(delays)


def _family_model(family: str) -> DelayModel:
    if family not in DELAY_MODELS:
        raise PipelineError(f"Device family must be one of {FAMILIES}, not {family!r}")
    return DELAY_MODELS[family]


def _check_clock(clock_mhz: float) -> float:
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, int | float) or clock_mhz <= 0:
        raise PipelineError(f"Clock must be a positive number of MHz, not {clock_mhz!r}")
    return 1e3 / clock_mhz


def stages_for_clock(path: DotPath, *, clock_mhz: float, family: str) -> int:
    """The fewest stages whose modelled delay fits one period of ``clock_mhz``.

    Raises:
        PipelineError: An unknown family, a bad clock, or no depth up to
            :data:`MAX_STAGES` fits (the message gives the best modelled clock).
    """
    model, period = _family_model(family), _check_clock(clock_mhz)
    for stages in range(MAX_STAGES + 1):
        if path_delay_ns(path, stages, model) <= period:
            return stages
    best = 1e3 / path_delay_ns(path, MAX_STAGES, model)
    raise PipelineError(
        f"No pipeline depth reaches {clock_mhz} MHz on {family}: the delay model's best is "
        f"{best:.0f} MHz"
    )


def _layer_path(model: IntModel, layer: WeightLayer, fold: int, baseline: str | None) -> DotPath:
    in_format = model.layer(layer.inputs[0]).out
    if baseline is None:
        weights, bias, mode = layer.weights_int(), layer.bias, "shift-add"
    else:
        twin = layer.arithmetic("baseline")
        weights, bias, mode = twin.weights, twin.bias, "multiply"
    weights = np.asarray(weights).reshape(layer.codes.shape[0], -1)
    return dot_path(weights, bias, in_format, mode=mode, fold=fold)


def dot_paths(
    model: IntModel, *, folding: Mapping[str, int] | None = None, baseline: str | None = None
) -> dict[str, DotPath]:
    """The :class:`DotPath` of every weight layer's dot stage in the dataflow top."""
    folding = dict(folding or {})
    return {
        layer.name: _layer_path(model, layer, folding.get(layer.name, 1), baseline)
        for layer in model.weight_layers()
    }


def pipeline_for_clock(
    model: IntModel,
    *,
    clock_mhz: float,
    family: str,
    folding: Mapping[str, int] | None = None,
    baseline: str | None = None,
) -> dict[str, int]:
    """Pipeline stages per weight layer for the dataflow top of ``model`` at ``clock_mhz``
    on ``family`` (``"ice40"`` or ``"ecp5"``): the ``pipeline`` argument of
    :func:`rtl_gen.dataflow.build_dataflow`.

    Raises:
        PipelineError: As :func:`stages_for_clock`, naming the layer.
    """
    stages = {}
    for name, path in dot_paths(model, folding=folding, baseline=baseline).items():
        try:
            stages[name] = stages_for_clock(path, clock_mhz=clock_mhz, family=family)
        except PipelineError as error:
            raise PipelineError(f"Layer {name!r}: {error}") from None
    return stages


@dataclass(frozen=True)
class Sample:
    """One calibration point: a unit's path and its measured Fmax."""

    path: DotPath
    fmax_mhz: float


def fit(samples: Sequence[Sample]) -> DelayModel:
    """Non-negative least-squares constants from samples measured with one stage after the
    root (so the critical segment is the whole tree); refuses fewer than three samples."""
    if len(samples) < 3:
        raise PipelineError(f"Calibration needs at least three samples, not {len(samples)}")
    rows = np.array([[1.0, s.path.levels, s.path.width] for s in samples])
    delays = np.array([1e3 / s.fmax_mhz for s in samples])
    active = [0, 1, 2]
    while True:  # drop the most negative constant and refit (an active set of three)
        solution, *_ = np.linalg.lstsq(rows[:, active], delays, rcond=None)
        if solution.min(initial=0.0) >= 0:
            break
        active.pop(int(np.argmin(solution)))
    constants = dict.fromkeys(range(3), 0.0) | dict(zip(active, map(float, solution), strict=True))
    return DelayModel(register_ns=constants[0], level_ns=constants[1], bit_ns=constants[2])
