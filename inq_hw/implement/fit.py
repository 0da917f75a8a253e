"""Fit a dataflow top to a budget: each layer's folding chosen for a device or a frame rate.

:func:`choose_folding` searches the foldings of a package's dataflow top with the
resource model of :mod:`inq_hw.cost.fpga` (no synthesis) and the cycle-exact timing model
of :mod:`rtl_gen.timing`:

* Each weight layer of ``N`` outputs may run ``G = 1 .. N`` lanes; the fold ``F =
  ceil(N / G)`` is the smallest with ``G`` lanes (more cycles would buy nothing). Every
  option's resources are those of its engine in the model, and its *stage interval* the
  cycles per image of that engine alone, fed without gaps and never stalled.
* For a target interval ``T``, each layer takes its cheapest option (fewest predicted
  placed logic cells, then LUTs, then FFs) whose stage interval is at most ``T``: a
  balanced pipeline, as FINN's ``target_fps`` folding or hls4ml's reuse factor, but
  searched. The top's interval is
  then measured exactly (:meth:`rtl_gen.dataflow.DataflowTop.timing`).
* Without ``fps``: the smallest ``T`` whose design fits the device with the margin
  (predicted LUTs, FFs and placed logic cells, :func:`inq_hw.cost.fpga.logic_cells`, at
  most ``margin`` of the device's, DSPs and block RAMs at most
  the device's): the highest throughput that fits.
* With ``fps``: the largest ``T`` whose measured interval still gives ``fps`` images per
  second at the clock (``clock / interval``): the least area that reaches it, checked
  against the device.

When no folding fits (``arch="auto"``, the default), the fit falls back to the
programmable shift-PE array (:func:`inq_hw.implement.pe_array.choose_pe_array`: weights in
block RAM, one layer after another) and returns the fastest shape that fits, a
:class:`Fit` with ``arch="pe-array"``. When nothing fits, :class:`FitError` says which
device would hold the smallest dataflow design (or that none of
:data:`inq_hw.implement.devices.DEVICES` does), or the highest frame rate that fits.

Example usage::

    fit = choose_folding("pkg", "ice40-up5k")                   # most throughput that fits
    fit = choose_folding("pkg", "ecp5-25k", fps=50_000, clock_mhz=100)   # least area
    fit.folding, fit.interval_cycles, fit.images_per_second, fit.predicted["lut"]
"""

import gc
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inq_hw.cost.fpga import estimate_top, layer_costs, logic_cells
from inq_hw.errors import ConfigError
from inq_hw.implement.devices import DEVICES, Device, get_device

__all__ = [
    "ARCHS",
    "DEFAULT_CLOCK_MHZ",
    "DEFAULT_MARGIN",
    "Fit",
    "FitError",
    "choose_folding",
    "fits_budget",
    "predict_rtl",
]

#: The share of a device's LUTs and FFs a fitted design may fill: room for the pin
#: wrapper, placement and the model's error (within 15% on the tests' tops).
DEFAULT_MARGIN = 0.85
#: The clock a fit assumes when none is given (as ``inq-hw implement``).
DEFAULT_CLOCK_MHZ = {"ice40": 12.0, "ecp5": 100.0}
_RESOURCES = ("lut", "ff", "carry", "bram", "dsp")
#: What a fit may choose (:func:`choose_folding`'s ``arch``).
ARCHS = ("auto", "dataflow", "pe-array")


@contextmanager
def _unelaborated() -> Iterator[None]:
    """Tops built only to be measured are never elaborated; Amaranth warns of each when it
    is collected, so they are collected here, with that warning off."""
    from amaranth.hdl import UnusedElaboratable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            yield
        finally:
            gc.collect()


class FitError(ConfigError):
    """No folding of the top meets the budget (the message says what would)."""


@dataclass(frozen=True)
class Fit:
    """The folding chosen, its measured timing and its predicted resources.

    ``stage_intervals`` are the chosen options' own cycles per image; ``candidates`` the
    designs the search priced."""

    device: str
    family: str
    folding: dict[str, int]
    interval_cycles: int
    latency_cycles: int
    clock_mhz: float
    margin: float
    fps: float | None
    predicted: dict[str, int]
    share: dict[str, float | None]
    stage_intervals: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    line_buffer: str = "auto"
    #: ``"dataflow"`` (``folding`` applies) or ``"pe-array"`` (``pe`` is its rows, cols:
    #: :mod:`inq_hw.implement.pe_array`).
    arch: str = "dataflow"
    pe: tuple[int, int] | None = None

    @property
    def images_per_second(self) -> float:
        """Images per second at the clock: ``clock / interval``."""
        return self.clock_mhz * 1e6 / self.interval_cycles

    def to_dict(self) -> dict[str, Any]:
        pe = list(self.pe) if self.pe is not None else None
        return {**vars(self), "pe": pe, "images_per_second": self.images_per_second}


@dataclass(frozen=True)
class _Option:
    """One fold of one layer: its stage interval and predicted resources."""

    fold: int
    interval: int
    resources: dict[str, int]

    def area(self, family: str) -> tuple[int, int, int]:
        """Placed logic cells (:func:`inq_hw.cost.fpga.logic_cells`), then LUTs, FFs."""
        lut, ff = self.resources["lut"], self.resources["ff"]
        return logic_cells(lut, ff, family), lut, ff


def _folds(outputs: int) -> list[int]:
    """The smallest fold of each lane count ``1 .. outputs``, ascending."""
    return sorted({-(-outputs // lanes) for lanes in range(1, outputs + 1)})


def _stage_interval(stage: Any, images: int = 4) -> int:
    """Cycles per image of one weight engine alone: its control model fed ``images``
    images without gaps and never stalled, from the last output beat of one image to the
    last of the next."""
    from rtl_gen.engines import ConvEngine
    from rtl_gen.timing import PipelineTiming

    engine, timing = stage.engine, stage.timing
    if isinstance(engine, ConvEngine):
        beats, walk = engine.size[0] * engine.size[1], len(timing.pad_r) * len(timing.pad_c)
        per_image = sum(timing.emit_r) * sum(timing.emit_c)
    else:
        beats, walk, per_image = engine.beats, engine.beats, 1
    work = getattr(engine.dot, "cycles", 0) + engine.dot.stages + 2
    limit = 1000 + 2 * images * (walk + per_image * work)
    pipeline = PipelineTiming([timing])
    sent, cycle = 0, 0
    outputs: list[int] = []
    while len(outputs) < images * per_image:
        took, gave = pipeline.cycle(sent < images * beats, True)
        sent += took
        if gave:
            outputs.append(cycle)
        cycle += 1
        if cycle > limit:
            raise RuntimeError(f"Engine {stage.info['layer']!r} gave {len(outputs)} beats")
    return outputs[-1] - outputs[-1 - per_image]


class _Search:
    """The options of every weight layer of one model, priced on one family."""

    def __init__(
        self,
        model: Any,
        family: str,
        *,
        baseline: str | None,
        pipeline: int,
        dsp: bool | None,
        line_buffer: str = "auto",
    ) -> None:
        from rtl_gen.dataflow import build_dataflow

        self.model, self.family, self.baseline, self.dsp = model, family, baseline, dsp
        self.line_buffer = line_buffer
        self.layers = [layer.name for layer in model.weight_layers()]
        self.stages = dict.fromkeys(self.layers, pipeline) if pipeline else None
        self.build = lambda folding: build_dataflow(
            model,
            baseline=baseline,
            folding=folding,
            pipeline=self.stages,
            line_buffer=line_buffer,
        )
        base = self.build({})
        self.costs = layer_costs(base, model)
        folds = {layer.name: _folds(layer.codes.shape[0]) for layer in model.weight_layers()}
        self.options: dict[str, list[_Option]] = {name: [] for name in self.layers}
        self.fixed: dict[str, int] = {}
        self.priced = 0
        for round_ in range(max(len(f) for f in folds.values())):
            folding = {name: f[min(round_, len(f) - 1)] for name, f in folds.items()}
            self._price(folding, first=round_ == 0)

    def _price(self, folding: Mapping[str, int], *, first: bool) -> None:
        """Price every layer's option in one top with ``folding`` (options already seen
        are skipped); the engines without weights once."""
        top = self.build(folding)
        self.priced += 1
        estimate = estimate_top(top, self.model, self.family, dsp=self.dsp, costs=self.costs)
        for stage, cost in zip(top.stages, estimate.stages, strict=False):
            name = stage.info["layer"]
            resources = {"lut": cost.lut, "ff": cost.ff, "carry": cost.carry,
                         "bram": cost.bram, "dsp": cost.dsp}  # fmt: skip
            if name in self.options:
                fold = folding[name]
                if all(option.fold != fold for option in self.options[name]):
                    option = _Option(fold, _stage_interval(stage), resources)
                    self.options[name].append(option)
            elif first:
                for key, value in resources.items():
                    self.fixed[key] = self.fixed.get(key, 0) + value
        if first:
            argmax = estimate.stages[-1]
            self.fixed["lut"] = self.fixed.get("lut", 0) + argmax.lut

    def targets(self) -> list[int]:
        """Every stage interval an option has, ascending, from the slowest layer's
        fastest option up (nothing faster can be reached)."""
        floor = max(min(o.interval for o in options) for options in self.options.values())
        every = {o.interval for options in self.options.values() for o in options}
        return sorted(t for t in every if t >= floor)

    def design(self, target: int) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Per layer the cheapest option within ``target``: folding, total resources,
        stage intervals."""
        folding, intervals = {}, {}
        total = {key: self.fixed.get(key, 0) for key in _RESOURCES}
        for name, options in self.options.items():
            within = (o for o in options if o.interval <= target)
            best = min(within, key=lambda o: o.area(self.family))
            folding[name], intervals[name] = best.fold, best.interval
            for key in _RESOURCES:
                total[key] += best.resources[key]
        return folding, total, intervals


def fits_budget(used: Mapping[str, int], device: Device, margin: float) -> bool:
    """Whether ``used`` fills at most ``margin`` of ``device``'s LUTs, FFs and placed logic
    cells (:func:`inq_hw.cost.fpga.logic_cells`) and at most all its DSPs and block RAMs."""
    cells = logic_cells(used["lut"], used["ff"], device.family)
    return (
        used["lut"] <= margin * device.lut
        and used["ff"] <= margin * device.ff
        and cells <= margin * device.lut
        and used["dsp"] <= device.dsp
        and used["bram"] <= device.bram
    )


def _load(package: str | os.PathLike[str]) -> Any:
    from inq_hw.intmodel.package import load_package

    return load_package(Path(package))


def _check(fps: float | None, clock_mhz: float | None, margin: float) -> None:
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0):
        raise FitError(
            f"The frame rate must be a positive number of images per second, not {fps!r}"
        )
    if clock_mhz is not None and (
        isinstance(clock_mhz, bool) or not isinstance(clock_mhz, int | float) or clock_mhz <= 0
    ):
        raise FitError(f"The clock must be a positive frequency in MHz, not {clock_mhz!r}")
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 < margin <= 1:
        raise FitError(f"The margin must be a fraction in (0, 1], not {margin!r}")


def _need(used: Mapping[str, int], family: str) -> str:
    cells = logic_cells(used["lut"], used["ff"], family)
    return f"{used['lut']:,} LUT, {used['ff']:,} FF, {cells:,} logic cells" + (
        f", {used['dsp']} DSP" if used["dsp"] else ""
    )


def _no_device(
    model: Any, device: Device, options: dict[str, Any], margin: float, used: dict[str, int]
) -> FitError:
    """The refusal when even the smallest design overflows ``device``."""
    holds = []
    for other in sorted(DEVICES.values(), key=lambda d: d.lut):
        search = _Search(model, other.family, **options) if other.family != device.family else None
        smallest = used if search is None else search.design(search.targets()[-1])[1]
        if fits_budget(smallest, other, margin):
            holds.append(other.name)
            break
    where = (
        f"the smallest device that holds it is {holds[0]}"
        if holds
        else "none of the known devices holds it"
    )
    return FitError(
        f"No folding fits {device.name} at {margin:.0%} of its LUTs, FFs and logic cells: "
        f"the smallest design needs {_need(used, device.family)} (predicted); {where}"
    )


def choose_folding(
    package: str | os.PathLike[str],
    device: str,
    *,
    fps: float | None = None,
    clock_mhz: float | None = None,
    baseline: str | None = None,
    pipeline: int = 0,
    dsp: bool | None = None,
    margin: float = DEFAULT_MARGIN,
    line_buffer: str = "auto",
    arch: str = "auto",
) -> Fit:
    """The folding of ``package``'s dataflow top for ``device`` (module docstring).

    Args:
        package: A package directory.
        device: A name of :data:`inq_hw.implement.devices.DEVICES`.
        fps: Images per second to reach with the least area (``None``: the most
            throughput that fits).
        clock_mhz: The clock of the frame rate (default :data:`DEFAULT_CLOCK_MHZ`).
        baseline: ``"mult8"`` for the multiplier twin.
        pipeline: Register stages per dot stage, every weight layer.
        dsp: As for :func:`inq_hw.implement.flow.implement_rtl`.
        margin: The share of the device's LUTs, FFs and logic cells (the placed cells
            :func:`inq_hw.cost.fpga.logic_cells` predicts) a design may fill.
        line_buffer: Where the convolutions' row delays go, as for
            :func:`rtl_gen.dataflow.build_dataflow` (not searched).
        arch: ``"dataflow"``: foldings of the dataflow top only; ``"pe-array"``: shapes
            of the shift-PE array only (:func:`inq_hw.implement.pe_array.choose_pe_array`);
            ``"auto"``: the dataflow top, else, when no folding fits (or reaches
            ``fps``), the PE array.

    Raises:
        FitError: Bad arguments, or nothing meets the budget (the message says what would).
        DeviceError: An unknown device.
        ConfigError, PackageError: A package the dataflow top cannot stream.
    """
    part = get_device(device)
    _check(fps, clock_mhz, margin)
    clock = float(clock_mhz) if clock_mhz is not None else DEFAULT_CLOCK_MHZ[part.family]
    from rtl_gen.engines import line_buffer_in_memory

    line_buffer_in_memory(0, line_buffer)  # refuse an unknown kind at once
    if arch not in ARCHS:
        raise FitError(f"The architecture must be one of {', '.join(ARCHS)}, not {arch!r}")
    if arch != "dataflow" and baseline is not None:
        if arch == "pe-array":
            raise FitError("The PE-array fit covers the shift-PE array, not the multiplier twin")
        arch = "dataflow"
    options = {"baseline": baseline, "pipeline": pipeline, "dsp": dsp, "line_buffer": line_buffer}
    model = _load(package)
    if arch == "pe-array":
        return _pe_array(model, part, fps, clock, margin, None)
    with _unelaborated():
        try:
            return _choose(model, part, fps, clock, margin, options)
        except FitError as refusal:
            if arch == "dataflow":
                raise
            return _pe_array(model, part, fps, clock, margin, refusal)


def _pe_array(
    model: Any,
    part: Device,
    fps: float | None,
    clock: float,
    margin: float,
    refusal: FitError | None,
) -> Fit:
    """The PE array's fit, or its refusal: after the dataflow search's ``refusal`` (the
    fallback) or on its own."""
    from inq_hw.implement.pe_array import choose_pe_array, smallest_need

    fit = choose_pe_array(model, part, margin=margin, clock_mhz=clock, fps=fps)
    if fit is not None:
        return fit
    need = smallest_need(model, part)
    if refusal is not None:
        raise FitError(f"{refusal}; no shift-PE array does either ({need})") from None
    goal = f" reaching {fps:g} images/s at {clock:g} MHz" if fps is not None else ""
    raise FitError(
        f"No shift-PE array{goal} fits {part.name} at {margin:.0%} of its LUTs, FFs and "
        f"logic cells with its block RAMs: {need}"
    )


def _choose(
    model: Any,
    part: Device,
    fps: float | None,
    clock: float,
    margin: float,
    options: dict[str, Any],
) -> Fit:
    search = _Search(model, part.family, **options)
    targets = search.targets()
    smallest = search.design(targets[-1])[1]
    if not fits_budget(smallest, part, margin):
        raise _no_device(model, part, options, margin, smallest)
    if fps is None:
        chosen = next(t for t in targets if fits_budget(search.design(t)[1], part, margin))
        return _result(search, part, chosen, clock, margin, None)
    limit = math.floor(clock * 1e6 / fps)
    for target in reversed([t for t in targets if t <= limit]):
        fit = _result(search, part, target, clock, margin, fps)
        if fit.interval_cycles <= limit:
            if not fits_budget(fit.predicted, part, margin):
                break
            return fit
    fastest = next(t for t in targets if fits_budget(search.design(t)[1], part, margin))
    best = _result(search, part, fastest, clock, margin, fps)
    raise FitError(
        f"{fps:g} images/s at {clock:g} MHz needs an interval of at most {limit:,} cycles; "
        f"the fastest folding that fits {part.name} gives {best.images_per_second:,.0f} "
        f"images/s (interval {best.interval_cycles:,} cycles)"
    )


def _result(
    search: _Search, part: Device, target: int, clock: float, margin: float, fps: float | None
) -> Fit:
    folding, used, intervals = search.design(target)
    timing = search.build(folding).timing()
    return Fit(
        device=part.name,
        family=part.family,
        folding=folding,
        interval_cycles=timing.interval,
        latency_cycles=timing.latency,
        clock_mhz=clock,
        margin=margin,
        fps=fps,
        predicted=used,
        share=part.shares(used),  # type: ignore[arg-type]
        stage_intervals=intervals,
        candidates=search.priced,
        line_buffer=search.line_buffer,
    )


def predict_rtl(
    package: str | os.PathLike[str], top: Any, family: str, *, dsp: bool | None = None
) -> Any:
    """The resource model's :class:`inq_hw.cost.fpga.Estimate` of a generated dataflow top
    (an rtl_gen ``TopInfo`` of ``package``): its folding, pipelining and adder graph are
    read from the manifest's parameters."""
    from rtl_gen.dataflow import build_dataflow

    params = top.params
    weight = [e for e in params["engines"] if e["kind"] in ("conv2d", "linear")]
    model = _load(package)
    with _unelaborated():
        built = build_dataflow(
            model,
            baseline=params.get("baseline"),
            folding={e["layer"]: int(e["fold"]) for e in weight},
            pipeline={e["layer"]: int(e["pipeline"]) for e in weight},
            adder_graph=params.get("adder_graph"),
            max_depth=params.get("max_depth"),
            line_buffer=params.get("line_buffer", "regs"),  # older manifests: registers
        )
        estimate = estimate_top(built, model, family, dsp=dsp)
        del built
    return estimate
