"""``inq-hw flow``: FP32 training to verified hardware and the bit-width trade-off report.

The flow runs these stages, each cached under ``<out>/stages/<stage>-<key>/`` by the hash
of everything it depends on (its options and the keys of the stages it reads):

    fp32 → for each bit-width b: inq(b) → package(b) → {rtl(b) → sim(b), cost(b), synth(b),
                                                       rtl(b) → implement(b, design)}

A stage writes into a temporary directory and renames it into place when it has finished,
so an interrupted run (SIGINT, a crash) leaves only finished stages, and the next run
continues from them; changing one bit-width reruns only the stages of that width. The
results of every stage are gathered into ``results.json`` and rendered as the report
(:mod:`inq_hw.report`); the configuration is written beside it as ``flow.toml``, which
``--config`` reads back to repeat the run exactly.
"""

import hashlib
import json
import os
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inq_hw import defaults
from inq_hw.defaults import (
    DEFAULT_IMPLEMENT_BITS,
    DEFAULT_IMPLEMENT_CLOCK_MHZ,
    DEFAULT_IMPLEMENT_DESIGNS,
    DEFAULT_IMPLEMENT_DEVICE,
)
from inq_hw.errors import ConfigError, InqHwError
from inq_hw.intmodel.codes import check_model_bits

__all__ = [
    "STAGE_NAMES",
    "FlowConfig",
    "FlowError",
    "StageRunner",
    "check_config",
    "flow_results",
    "run_flow",
    "stage_key",
]

FLOW_VERSION = 1
TARGETS = ("analytic", "generic", "ice40", "ecp5", "nangate45")
_STAGE_VERSION = {
    "fp32": 1,
    "inq": 1,
    "package": 1,
    "rtl": 1,
    "sim": 1,
    "cost": 1,
    "synth": 1,
    "implement": 1,
}
#: The flow's stage kinds, in order (the ``<name>`` of ``stages/<name>-<key>/``).
STAGE_NAMES = tuple(_STAGE_VERSION)
#: The whole tops the implementation stage places and routes: the shift-add top, its 8-bit
#: multiplier twin with DSP blocks, and the twin on LUTs only (report.schema's names).
IMPLEMENT_DESIGNS = ("shift_add", "mult8", "mult8_lut")
_IMPLEMENT_LABELS = {
    "shift_add": "shift-add",
    "mult8": "mult8 twin DSP",
    "mult8_lut": "mult8 twin LUT-only",
}


#: The multiplier twin of every design: ``uniform8``, 8-bit uniform weights rounded from the
#: FP32 ones; ``uniform``, uniform weights at the design's own bit-width, trained by the
#: same incremental re-training (partition, schedule, epochs, seed) as the power-of-two ones.
TWIN_KINDS = ("uniform8", "uniform")


class FlowError(InqHwError):
    """A stage of the flow failed; the message names the stage."""


@dataclass(frozen=True)
class FlowConfig:
    """Every choice of a flow run (written to ``flow.toml``; ``version`` for the format).

    ``folding`` maps weight-layer names (or ``all``) to the dataflow top's fold;
    ``synth_outputs`` is how many outputs of each layer's unit the synthesis stage builds
    (the same slice for the shift-add unit and its multiplier twin). The implementation
    stage places and routes each bit-width's whole dataflow top (the one simulated, so at
    ``folding``) and its twins (``implement_designs``) on ``implement_device`` with a
    ``implement_clock_mhz`` constraint, for the bit-widths ``implement_bits`` names
    (``"smallest"``, ``"all"`` or a list of them); ``skip_implementation`` leaves it out.
    ``a_bits`` is the activation width the package is lowered at (8 by default; the package
    stage's cache key names it only when it is not 8, so caches of earlier runs stay valid).
    ``implement_pipeline`` register stages go in every dot stage of each implemented top
    (then generated afresh, not the simulated one; rtl_gen's pipelined tops, which also
    register the argmax and the streams between engines). ``implement_fit`` has each
    implemented top's folding chosen for ``implement_device``
    by :func:`inq_hw.implement.fit.choose_folding` (the most throughput that fits) instead
    of ``folding``; a top that fits at no folding is recorded as refused, with the reason.
    ``twin`` is the multiplier twin's kind (:data:`TWIN_KINDS`); with ``"uniform"`` each
    bit-width also trains its uniform twin (an ``inq`` stage of weight format uniform) and
    the package carries it as its baseline, so every target prices it beside the
    power-of-two design of the same width.
    """

    version: int = FLOW_VERSION
    name: str = "digits-cnn"
    dataset: str = "digits"
    data_dir: str | None = None
    split_seed: int = 0
    model: str = "digits-cnn"
    model_args: dict[str, Any] = field(default_factory=dict)
    bits: tuple[int, ...] = (2, 3, 4, 5)
    fp32_epochs: int = defaults.FP32_EPOCHS
    inq_epochs: int = defaults.INQ_EPOCHS
    schedule: str = defaults.SCHEDULE
    partition: str = defaults.PARTITION
    lr: float = defaults.LR
    batch_size: int = defaults.BATCH_SIZE
    seed: int = defaults.SEED
    simulator: str | None = None
    samples: int | str = 8
    a_bits: int = 8
    sim_seed: int = 0
    folding: dict[str, int] = field(default_factory=lambda: dict(defaults.FOLDING))
    targets: tuple[str, ...] = ("analytic", "ice40")
    skip_synthesis: bool = False
    synth_outputs: int = 2
    skip_implementation: bool = False
    implement_device: str = DEFAULT_IMPLEMENT_DEVICE
    implement_clock_mhz: float = DEFAULT_IMPLEMENT_CLOCK_MHZ
    implement_designs: tuple[str, ...] = DEFAULT_IMPLEMENT_DESIGNS
    implement_bits: str | tuple[int, ...] = DEFAULT_IMPLEMENT_BITS
    implement_fit: bool = False
    implement_pipeline: int = 0
    twin: str = "uniform8"

    def __post_init__(self) -> None:
        if self.version != FLOW_VERSION:
            raise ConfigError(f"Flow config version must be {FLOW_VERSION}, not {self.version!r}")
        object.__setattr__(self, "bits", tuple(self.bits))
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "implement_designs", tuple(self.implement_designs))
        self._check_implementation()
        for b in self.bits:
            check_model_bits(b)
        if not self.bits or len(set(self.bits)) != len(self.bits):
            raise ConfigError(f"Bit-widths must be distinct and at least one, not {self.bits!r}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ConfigError(f"Targets must be among {TARGETS}, not {unknown}")
        for name in ("fp32_epochs", "inq_epochs", "samples", "batch_size", "synth_outputs"):
            value = getattr(self, name)
            if name == "samples" and value == "all":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                also = ' or "all"' if name == "samples" else ""
                raise ConfigError(f"{name} must be a positive integer{also}, not {value!r}")
        if isinstance(self.a_bits, bool) or not isinstance(self.a_bits, int):
            raise ConfigError(f"a_bits must be an integer, not {self.a_bits!r}")
        if not 4 <= self.a_bits <= 16:
            raise ConfigError(f"Activation width must be from 4 to 16 bits, not {self.a_bits!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, not {self.seed!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not self.lr > 0:
            raise ConfigError(f"lr must be a positive number, not {self.lr!r}")
        if self.partition not in ("magnitude", "random"):
            raise ConfigError(f"Partition must be magnitude or random, not {self.partition!r}")
        stages = self.implement_pipeline
        if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= 16:
            raise ConfigError(f"implement_pipeline must be an integer from 0 to 16, not {stages!r}")
        if not isinstance(self.implement_fit, bool):
            raise ConfigError(f"implement_fit must be true or false, not {self.implement_fit!r}")
        if self.twin not in TWIN_KINDS:
            raise ConfigError(f"twin must be one of {TWIN_KINDS}, not {self.twin!r}")

    def _check_implementation(self) -> None:
        from inq_hw.implement.devices import get_device

        get_device(self.implement_device)  # DeviceError names the known ones
        clock = self.implement_clock_mhz
        if isinstance(clock, bool) or not isinstance(clock, int | float) or not clock > 0:
            raise ConfigError(f"implement_clock_mhz must be a positive number, not {clock!r}")
        designs = self.implement_designs
        if (
            not designs
            or set(designs) - set(IMPLEMENT_DESIGNS)
            or len(set(designs)) != len(designs)
        ):
            raise ConfigError(
                f"Implemented designs must be distinct, among {IMPLEMENT_DESIGNS}, not {designs!r}"
            )
        chosen = self.implement_bits
        if isinstance(chosen, list | tuple):
            object.__setattr__(self, "implement_bits", chosen := tuple(chosen))
        if not (chosen in ("smallest", "all") or (chosen and set(chosen) <= set(self.bits))):
            raise ConfigError(
                "implement_bits must be 'smallest', 'all' or some of the bit-widths "
                f"{list(self.bits)}, not {chosen!r}"
            )

    def implemented_bits(self) -> tuple[int, ...]:
        """The bit-widths whose whole tops the implementation stage places and routes."""
        if self.skip_implementation:
            return ()
        if self.implement_bits == "smallest":
            return (min(self.bits),)
        if isinstance(self.implement_bits, str):  # "all"
            return tuple(sorted(self.bits))
        return tuple(sorted(self.implement_bits))

    def to_toml(self) -> str:
        """The config as TOML (scalars, lists and one table, ``folding``)."""
        lines = ["# inq-hw flow configuration; rerun with: inq-hw flow --config THIS_FILE"]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("folding", "model_args") and value is not None:
                lines.append(f"{f.name} = {_toml_value(value)}")
        lines += ["", "[folding]", *(f"{_toml_key(k)} = {v}" for k, v in self.folding.items())]
        args = self.model_args.items()
        lines += ["", "[model_args]", *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in args)]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, path: Path) -> "FlowConfig":
        """Read a config written by :meth:`to_toml` (or by hand)."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"Cannot read flow config {path}: {error}") from None
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"Unknown keys in flow config {path}: {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as error:
            raise ConfigError(f"Bad flow config {path}: {error}") from None

    def replace(self, **changes: Any) -> "FlowConfig":
        return FlowConfig(**{**asdict(self), **changes})


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


# --- stages and their cache ----------------------------------------------------------------


def stage_key(name: str, inputs: dict[str, Any]) -> str:
    """The cache key of stage ``name`` with ``inputs`` (``<out>/stages/<name>-<key>/``)."""
    text = json.dumps({"stage": name, "version": _STAGE_VERSION[name], **inputs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StageRunner:
    """Runs stages in order, each once per key, and reports progress on stdout.

    A sweep (:mod:`inq_hw.sweep`) subclasses it to read stages back or to compute one
    stage elsewhere; ``clean=False`` leaves the temporary directories of other writers.
    """

    def __init__(
        self, out: Path, total: int, echo: Callable[[str], None], *, clean: bool = True
    ) -> None:
        self.root, self.total, self.done, self.echo = out / "stages", total, 0, echo
        self.seconds: dict[str, float] = {}
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob("*.tmp-*") if clean else ():
            shutil.rmtree(stale, ignore_errors=True)

    def run(
        self, label: str, name: str, inputs: dict[str, Any], work: Callable[[Path], dict[str, Any]]
    ) -> tuple[dict[str, Any], Path, str]:
        key = stage_key(name, inputs)
        final = self.root / f"{name}-{key}"
        self.done += 1
        prefix = f"[{self.done}/{self.total}] {label}"
        if (final / "result.json").is_file():
            cached = json.loads((final / "result.json").read_text())
            # The report shows the time of the run that computed the stage.
            self.seconds[label] = cached.get("seconds")
            self.echo(f"{prefix}: cached (computed in {cached.get('seconds', 0):.1f} s)")
            return cached, final, key
        self.echo(f"{prefix} ...")
        tmp = self.root / f"{name}-{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        start = time.perf_counter()
        try:
            result = work(tmp)
            result["seconds"] = round(time.perf_counter() - start, 2)
            (tmp / "result.json").write_text(json.dumps(result, indent=1, default=_json))
            tmp.rename(final)
        except InqHwError as error:
            raise FlowError(f"Stage {label} failed: {error}") from None
        except Exception as error:  # a bug: still say which stage, keep what is cached
            raise FlowError(f"Stage {label} failed: {type(error).__name__}: {error}") from error
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed stage leaves nothing behind
        self.seconds[label] = result["seconds"]
        self.echo(f"{prefix}: done in {result['seconds']:.1f} s")
        return json.loads((final / "result.json").read_text()), final, key

    def skip(self, label: str, reason: str) -> None:
        """Count a stage that is not run (a top the fit refused), saying why."""
        self.done += 1
        self.echo(f"[{self.done}/{self.total}] {label}: not run: {reason}")


_Runner = StageRunner  # the name tests and earlier code use


def _json(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Not JSON: {value!r}")


def _one_thread() -> None:
    """Train on one thread: the embedded default is far too small to gain from more, and
    on a busy 2-core machine (simulators and synthesis beside it) two threads made INQ at
    2 bits take 629 s, against 3 s on an idle machine."""
    import torch

    torch.set_num_threads(1)


def _fp32(cfg: FlowConfig) -> Callable[[Path], dict[str, Any]]:
    def work(tmp: Path) -> dict[str, Any]:
        from inq_hw.driver import ModelContext, train_fp32
        from inq_hw.train import TrainConfig

        _one_thread()
        context = ModelContext(
            cfg.model, dict(cfg.model_args), cfg.dataset, cfg.data_dir, cfg.split_seed
        )
        train = TrainConfig(
            epochs=cfg.fp32_epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed
        )
        summary = train_fp32(context, train, tmp / "fp32.pt")
        return {"accuracy": summary["accuracy"], "test_samples": summary["test_samples"]}

    return work


def _inq(
    cfg: FlowConfig, bits: int, fp32: Path, weight_format: str = "po2"
) -> Callable[[Path], dict[str, Any]]:
    def work(tmp: Path) -> dict[str, Any]:
        from inq_hw.driver import run_inq
        from inq_hw.inq import INQConfig, parse_schedule
        from inq_hw.train import TrainConfig

        _one_thread()
        config = INQConfig(
            bits=bits,
            schedule=parse_schedule(cfg.schedule, bits=bits),
            partition=cfg.partition,
            seed=cfg.seed,
            weight_format=weight_format,
        )
        train = TrainConfig(
            epochs=cfg.inq_epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed
        )
        summary = run_inq(fp32 / "fp32.pt", config, train, tmp / "inq.pt")
        return {
            "accuracy": summary["accuracy"],
            "one_shot": summary["one_shot_accuracy"],
            "fp32": summary["fp32_accuracy"],
        }

    return work


def _weight_stats(model: Any) -> dict[str, Any]:
    """Counts, zero share, memory and exponent histograms of the weight layers."""
    layers, count, zeros, memory, baseline_memory = {}, 0, 0, 0, 0
    for layer in model.weight_layers():
        magnitude = np.abs(layer.weights_int().ravel())  # 0 or 2**(e - n2)
        nonzero = magnitude[magnitude > 0]
        exponents = layer.n2 + np.log2(nonzero).astype(np.int64)  # exact for powers of two
        histogram: dict[str, int] = {"zero": int(magnitude.size - nonzero.size)}
        for e in range(layer.n2, layer.n1 + 1):
            histogram[str(e)] = int((exponents == e).sum())
        layers[layer.name] = {
            "count": int(magnitude.size),
            "zero_fraction": histogram["zero"] / magnitude.size,
            "exponent_histogram": histogram,
        }
        count, zeros = count + magnitude.size, zeros + histogram["zero"]
        memory += magnitude.size * layer.bits
        baseline_memory += magnitude.size * layer.twin_bits
    return {
        "count": count,
        "zero_fraction": zeros / count if count else 0.0,
        "memory_bits": memory,
        "baseline_memory_bits": baseline_memory,
        "layers": layers,
    }


def _package(
    inq: Path, a_bits: int = 8, twin: Path | None = None
) -> Callable[[Path], dict[str, Any]]:
    """Lower, save and evaluate; the twin's integer accuracy is ``uniform8_integer`` (the
    8-bit twin) or ``twin_integer`` (the uniform INQ run in ``twin``)."""

    def work(tmp: Path) -> dict[str, Any]:
        from inq_hw.evaluate import evaluate_package
        from inq_hw.intmodel import run
        from inq_hw.intmodel.package import save_package
        from inq_hw.lower import CalibrationConfig, lower_checkpoint
        from sim.vectors import golden_vectors

        model = lower_checkpoint(
            inq / "inq.pt",
            CalibrationConfig(a_bits=a_bits),
            twin=None if twin is None else twin / "inq.pt",
        )
        save_package(model, tmp / "pkg")
        summary = evaluate_package(tmp / "pkg")
        vectors = golden_vectors(model, None)
        uniform = run(model, vectors["input"], weights="baseline")
        assert isinstance(uniform, np.ndarray)
        return {
            "integer": summary["integer_accuracy"],
            "float": summary["float_accuracy"],
            "agreement": summary["agreement"],
            "uniform8_integer" if twin is None else "twin_integer": float(
                (uniform.argmax(axis=1) == vectors["labels"]).mean()
            ),
            "weights": _weight_stats(model),
        }

    return work


def _rtl(cfg: FlowConfig, package: Path) -> Callable[[Path], dict[str, Any]]:
    def work(tmp: Path) -> dict[str, Any]:
        from inq_hw.intmodel.package import load_package
        from rtl_gen.dataflow import cap_folding, expand_folding, generate_dataflow

        model = load_package(package / "pkg")
        names = [layer.name for layer in model.weight_layers()]
        folding = cap_folding(model, expand_folding(cfg.folding, names))
        manifest = generate_dataflow(package / "pkg", tmp / "rtl", folding=folding)
        params = manifest["tops"][0]["params"]
        return {
            "folding": folding,
            "latency_cycles": params["latency_cycles"],
            "interval_cycles": params["interval_cycles"],
        }

    return work


def _sim(cfg: FlowConfig, package: Path, rtl: Path) -> Callable[[Path], dict[str, Any]]:
    def work(tmp: Path) -> dict[str, Any]:
        from sim.simulate import simulate_package

        summary = simulate_package(
            package / "pkg",
            rtl_dir=rtl / "rtl",
            simulator=cfg.simulator or _preferred_simulator(),
            samples=cfg.samples if isinstance(cfg.samples, int) else None,  # "all"
            seed=cfg.sim_seed,
            cache_dir=tmp / "build",
            optimize=False,
        )
        shutil.rmtree(tmp / "build", ignore_errors=True)
        keep = (
            "simulator",
            "simulator_version",
            "samples",
            "mismatched_samples",
            "latency_cycles",
            "interval_cycles",
            "timing_matches_manifest",
            "images_per_second",
        )
        result = {key: summary[key] for key in keep}
        result["cycles_per_image"] = summary["interval_cycles"]
        return result

    return work


def _preferred_simulator() -> str:
    """Verilator when installed (a whole network runs orders of magnitude faster than on
    Icarus), else whatever is installed."""
    from sim.runner import available_simulators, choose_simulator

    return "verilator" if "verilator" in available_simulators() else choose_simulator(None)


_DESIGN_KEYS = {"shift-add": "shift_add", "mult8": "mult8", "fp32": "fp32"}


def _cost(package: Path) -> Callable[[Path], dict[str, Any]]:
    def work(tmp: Path) -> dict[str, Any]:
        from inq_hw.cost.analytic import DESIGNS, analyze
        from inq_hw.intmodel.package import load_package

        network = analyze(load_package(package / "pkg"))
        totals = {design: network.total(design) for design in DESIGNS}
        return {
            "energy_pj": {_DESIGN_KEYS[d]: c.energy_pj for d, c in totals.items()},
            "area_um2": {_DESIGN_KEYS[d]: c.area_um2 for d, c in totals.items()},
        }

    return work


_SYNTH_FIGURES = {
    "generic": {"gates": "gates", "transistors": "transistors"},
    "ice40": {"lut": "lut", "ff": "ff", "dsp": "dsp"},
    "ecp5": {"lut": "lut", "ff": "ff", "dsp": "dsp"},
}


def _synth(cfg: FlowConfig, package: Path, target: str) -> Callable[[Path], dict[str, Any]]:
    """Every weight layer's unit, cut to its first ``synth_outputs`` outputs, for the
    shift-add design and its multiplier twin; the figures summed over the layers."""

    def work(tmp: Path) -> dict[str, Any]:
        from inq_hw.cost.designs import layer_jobs
        from inq_hw.cost.synth import synthesize
        from inq_hw.intmodel.package import load_package

        model = load_package(package / "pkg")
        if target == "nangate45":
            return _nangate45(cfg, model)
        figures: dict[str, dict[str, int]] = {name: {} for name in _SYNTH_FIGURES[target]}
        for design, baseline in (("shift_add", None), ("mult8", "mult8")):
            jobs = layer_jobs(model, baseline=baseline, max_outputs=cfg.synth_outputs)
            results = [synthesize(job, target, cache_dir=_synth_cache()) for job, _ in jobs]
            for name, attribute in _SYNTH_FIGURES[target].items():
                values = [getattr(r, attribute) for r in results]
                figures[name][design] = sum(v or 0 for v in values)
        return {**figures, "slice_outputs": cfg.synth_outputs}

    return work


def _nangate45(cfg: FlowConfig, model: Any) -> dict[str, Any]:
    """Nangate45 figures of the same slices, summed over the layers, with activity from
    two test images; the analytic figures of those slices beside them (never mixed)."""
    from inq_hw.cost.asic_layers import asic_layers, network_totals
    from sim.unit_activity import unit_activity

    cache = _synth_cache()
    layers = asic_layers(
        model,
        max_weights=None,
        max_outputs=cfg.synth_outputs,
        activity=lambda job, layer: unit_activity(
            job, model, layer, images=2, cache_dir=cache / "activity"
        ),
        cache_dir=cache,
    )
    totals = network_totals(layers)
    figures: dict[str, Any] = {
        name: {design.replace("-", "_"): totals[design][name] for design in totals}
        for name in totals["shift-add"]
    }
    return {**figures, "slice_outputs": cfg.synth_outputs}


def _synth_cache() -> Path:
    from inq_hw.cost.synth import default_cache_dir

    return default_cache_dir()


# --- implementation of the whole top -------------------------------------------------------


def _design_options(design: str) -> tuple[str | None, bool | None]:
    """``(baseline, dsp)`` of an implemented design, for the fit and the implementation."""
    return (
        None if design == "shift_add" else "mult8",
        {"shift_add": None, "mult8": True, "mult8_lut": False}[design],
    )


def implementation_folding(
    cfg: FlowConfig, rtl: dict[str, Any], package: Path, design: str
) -> dict[str, int] | str:
    """The folding the implementation stage places and routes for ``design``: the
    simulated top's (the rtl stage's, from ``--fold``), so the bitstream is of the top
    verified bit-exact; with ``implement_fit``, the folding the fit chooses for
    ``implement_device`` at ``implement_clock_mhz`` (a top other than the simulated one is
    generated afresh), or the fit's one-line refusal when nothing fits."""
    if not cfg.implement_fit:
        return dict(rtl["folding"])
    from inq_hw.implement.fit import FitError, choose_folding

    baseline, dsp = _design_options(design)
    try:
        fit = choose_folding(
            package / "pkg",
            cfg.implement_device,
            clock_mhz=cfg.implement_clock_mhz,
            baseline=baseline,
            dsp=dsp,
            pipeline=cfg.implement_pipeline,
            arch="dataflow",  # the report's table is of dataflow tops, not PE arrays
        )
    except FitError as error:
        return str(error)
    return dict(fit.folding)


_KEEP = (
    "resources",
    "device_share",
    "fmax_mhz",
    "timing_met",
    "images_per_second",
    "latency_us",
    "interval_cycles",
    "latency_cycles",
)


def _implement(
    cfg: FlowConfig,
    design: str,
    package: Path,
    rtl: Path | None,
    folding: dict[str, int],
    echo: Callable[[str], None],
) -> Callable[[Path], dict[str, Any]]:
    """Synthesis, place and route and bitstream of one whole top (``rtl``: the simulated
    shift-add top; None: the top is generated at ``folding``). A top larger than the
    device is recorded as refused, with the tool's reason, not failed."""

    def work(tmp: Path) -> dict[str, Any]:
        from inq_hw.implement import ImplementError
        from inq_hw.implement.flow import implement_package

        baseline, dsp = _design_options(design)
        try:
            result = implement_package(
                package / "pkg",
                cfg.implement_device,
                rtl_dir=rtl,
                out_dir=tmp / "implement",
                baseline=baseline,
                folding=folding,
                pipeline=cfg.implement_pipeline,
                clock_mhz=cfg.implement_clock_mhz,
                dsp=dsp,
                progress=_echo_progress(echo),
            )
        except ImplementError as error:
            if "does not fit" not in str(error):  # the fit refusal of _check_fit
                raise
            return {"refused": str(error)}
        figures = {key: result[key] for key in _KEEP}
        rate = result["images_per_second"]
        figures["us_per_image"] = 1e6 / rate if rate else None
        figures["dsp"] = result["dsp"]
        figures["tool_seconds"] = {k: round(v, 2) for k, v in result["seconds"].items()}
        figures["bitstream"] = str(Path(result["bitstream"]).relative_to(tmp))
        return figures

    return work


def _echo_progress(echo: Callable[[str], None]) -> Any:
    """The implementation's tool lines, indented under the flow's stage line."""
    from inq_hw.progress import Progress

    class Lines(Progress):
        def message(self, text: str) -> None:
            echo(f"    {text}")

    return Lines()


def _implementation(
    cfg: FlowConfig,
    runner: StageRunner,
    bits: int,
    package: tuple[Path, str],
    rtl: tuple[dict[str, Any], Path, str],
) -> dict[str, Any]:
    from inq_hw.implement import get_device

    (pkg_dir, pkg_key), (rtl_result, rtl_dir, rtl_key) = package, rtl
    device = get_device(cfg.implement_device)
    designs: dict[str, Any] = {}
    foldings: dict[str, dict[str, int]] = {}
    for design in cfg.implement_designs:
        folding = implementation_folding(cfg, rtl_result, pkg_dir, design)
        if isinstance(folding, str):  # the fit found none: a refusal, as a top too large
            designs[design] = {"refused": folding}
            runner.skip(f"implement {_IMPLEMENT_LABELS[design]} {bits}-bit", folding)
            continue
        foldings[design] = folding
        simulated = folding == rtl_result["folding"] and not cfg.implement_pipeline
        top = rtl_dir / "rtl" if design == "shift_add" and simulated else None
        designs[design], stage, _ = runner.run(
            f"implement {_IMPLEMENT_LABELS[design]} {bits}-bit",
            "implement",
            {
                "package": pkg_key,
                "rtl": rtl_key if top is not None else None,
                "design": design,
                "folding": folding,
                "device": device.name,
                "clock_mhz": cfg.implement_clock_mhz,
                # only when pipelined: the keys of unpipelined tops stay as they were
                **({"pipeline": cfg.implement_pipeline} if cfg.implement_pipeline else {}),
            },
            _implement(cfg, design, pkg_dir, top, folding, runner.echo),
        )
        if "bitstream" in designs[design]:  # written in the stage's directory
            designs[design]["bitstream"] = str(stage / designs[design]["bitstream"])
    return {
        "device": device.name,
        "part": device.part,
        "device_resources": {
            "lut": device.lut,
            "ff": device.ff,
            "bram": device.bram,
            "dsp": device.dsp,
        },
        "clock_mhz": cfg.implement_clock_mhz,
        **({"pipeline": cfg.implement_pipeline} if cfg.implement_pipeline else {}),
        # one folding for every top (the simulated one), else the fit's per design
        **(
            {"folding": next(iter(foldings.values()))}
            if len({json.dumps(f, sort_keys=True) for f in foldings.values()}) == 1
            else {"foldings": foldings}
        ),
        **({"fit": True} if cfg.implement_fit else {}),
        "designs": designs,
    }


# --- the whole flow -----------------------------------------------------------------------


def _stage_count(cfg: FlowConfig) -> int:
    synth = 0 if cfg.skip_synthesis else len([t for t in cfg.targets if t != "analytic"])
    cost = 1 if "analytic" in cfg.targets else 0
    twin = 1 if cfg.twin == "uniform" else 0
    implement = len(cfg.implemented_bits()) * len(cfg.implement_designs)
    return 1 + len(cfg.bits) * (4 + twin + cost + synth) + implement


def _bit_width(
    cfg: FlowConfig, runner: StageRunner, bits: int, fp32: tuple[dict[str, Any], Path, str]
) -> dict[str, Any]:
    _, fp32_dir, fp32_key = fp32
    inq_inputs = {
        "fp32": fp32_key,
        "bits": bits,
        "schedule": cfg.schedule,
        "partition": cfg.partition,
        "epochs": cfg.inq_epochs,
        "lr": cfg.lr,
        "batch": cfg.batch_size,
        "seed": cfg.seed,
    }
    inq, inq_dir, inq_key = runner.run(
        f"INQ {bits}-bit", "inq", inq_inputs, _inq(cfg, bits, fp32_dir)
    )
    # a_bits and the twin join the key only when not the defaults: earlier caches stay valid
    lowering = {"inq": inq_key, **({"a_bits": cfg.a_bits} if cfg.a_bits != 8 else {})}
    twin: dict[str, Any] | None = None
    twin_dir = None
    if cfg.twin == "uniform":
        twin, twin_dir, lowering["twin"] = runner.run(
            f"INQ uniform {bits}-bit twin",
            "inq",
            {**inq_inputs, "weight_format": "uniform"},
            _inq(cfg, bits, fp32_dir, "uniform"),
        )
    pkg, pkg_dir, pkg_key = runner.run(
        f"lower + evaluate {bits}-bit",
        "package",
        lowering,
        _package(inq_dir, cfg.a_bits, twin_dir),
    )
    rtl, rtl_dir, rtl_key = runner.run(
        f"generate RTL {bits}-bit",
        "rtl",
        {"package": pkg_key, "folding": cfg.folding},
        _rtl(cfg, pkg_dir),
    )
    sim, _, _ = runner.run(
        f"simulate {bits}-bit",
        "sim",
        {
            "rtl": rtl_key,
            "simulator": cfg.simulator,
            "samples": cfg.samples,
            "seed": cfg.sim_seed,
        },
        _sim(cfg, pkg_dir, rtl_dir),
    )
    entry: dict[str, Any] = {
        "bits": bits,
        "accuracy": {
            "inq": inq["accuracy"],
            "integer": pkg["integer"],
            "one_shot": inq["one_shot"],
            "agreement": pkg["agreement"],
        },
        "weights": pkg["weights"],
        "rtl": {**sim, "folding": rtl["folding"]},
        "cost": {},
        "paths": {"package": str(pkg_dir / "pkg"), "rtl": str(rtl_dir / "rtl")},
    }
    if twin is None:
        entry["uniform8_integer"] = pkg["uniform8_integer"]
    else:
        entry["twin"] = {
            "kind": "uniform",
            "weight_bits": bits,
            "inq": twin["accuracy"],
            "integer": pkg["twin_integer"],
            "one_shot": twin["one_shot"],
        }
    if "analytic" in cfg.targets:
        entry["cost"]["analytic"], _, _ = runner.run(
            f"analytic cost {bits}-bit", "cost", {"package": pkg_key}, _cost(pkg_dir)
        )
    if not cfg.skip_synthesis:
        for target in (t for t in cfg.targets if t != "analytic"):
            entry["cost"][target], _, _ = runner.run(
                f"synthesis {target} {bits}-bit",
                "synth",
                {"package": pkg_key, "target": target, "outputs": cfg.synth_outputs},
                _synth(cfg, pkg_dir, target),
            )
    if bits in cfg.implemented_bits():
        entry["implementation"] = _implementation(
            cfg, runner, bits, (pkg_dir, pkg_key), (rtl, rtl_dir, rtl_key)
        )
    return entry


def _check_schedule(cfg: FlowConfig) -> None:
    """The schedule must parse for every bit-width: checked before the first stage."""
    from inq_hw.inq import parse_schedule

    for bits in cfg.bits:
        parse_schedule(cfg.schedule, bits=bits)


def _check_folding(cfg: FlowConfig) -> None:
    """Fold names must be weight layers of the model: checked before the first stage."""
    if set(cfg.folding) <= {"all"}:
        return
    from torch import nn

    from inq_hw.driver import ModelContext

    context = ModelContext(
        cfg.model, dict(cfg.model_args), cfg.dataset, cfg.data_dir, cfg.split_seed
    )
    model = context.build(context.load_data())
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if unknown := sorted(set(cfg.folding) - {"all", *names}):
        raise ConfigError(
            f"--fold names no weight layer of {cfg.model}: {', '.join(unknown)} "
            f"(its weight layers: {', '.join(names)})"
        )


def check_config(cfg: FlowConfig) -> None:
    """What the flow checks before its first stage: the schedule parses for every
    bit-width and the fold names are weight layers of the model."""
    _check_schedule(cfg)
    _check_folding(cfg)


def run_flow(
    cfg: FlowConfig, *, out: Path, report: Path, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or continue) the flow and write the report; return the results.

    Raises:
        FlowError: A stage failed (every earlier stage stays cached).
    """
    from inq_hw.checkpoint import atomic_write
    from inq_hw.report import render_report

    start = time.perf_counter()
    check_config(cfg)
    results = flow_results(cfg, StageRunner(out, _stage_count(cfg), echo))
    results["flow_seconds"] = round(time.perf_counter() - start, 1)
    report.mkdir(parents=True, exist_ok=True)

    def write_config(tmp: Path) -> None:
        tmp.write_text(cfg.to_toml())

    atomic_write(report / "flow.toml", write_config)
    render_report(results, report)
    return results


def flow_results(cfg: FlowConfig, runner: StageRunner) -> dict[str, Any]:
    """Run (or read back) every stage of ``cfg`` through ``runner``; the results (their
    ``flow_seconds`` is the time of this call)."""
    start = time.perf_counter()
    fp32 = runner.run(
        "train FP32",
        "fp32",
        {
            "dataset": cfg.dataset,
            "data_dir": cfg.data_dir,
            "split_seed": cfg.split_seed,
            "model": cfg.model,
            "model_args": cfg.model_args,
            "epochs": cfg.fp32_epochs,
            "lr": cfg.lr,
            "batch": cfg.batch_size,
            "seed": cfg.seed,
        },
        _fp32(cfg),
    )
    entries = [_bit_width(cfg, runner, bits, fp32) for bits in sorted(cfg.bits)]
    # The 8-bit twin is rounded from the one FP32 model: the same at every bit-width.
    uniform = [entry.pop("uniform8_integer", None) for entry in entries][0]  # noqa: RUF015
    return {
        "format": "inq-hw-results",
        "version": 1,
        "name": cfg.name,
        "config": asdict(cfg),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count()},
        "dataset": {
            "name": cfg.dataset,
            # A stage cached by an older run has no count; the report then says so.
            **({"test_samples": fp32[0]["test_samples"]} if "test_samples" in fp32[0] else {}),
        },
        "fp32": {"accuracy": fp32[0]["accuracy"]},
        **({"uniform8": {"integer_accuracy": uniform}} if uniform is not None else {}),
        "bits": entries,
        "stage_seconds": runner.seconds,
        "flow_seconds": round(time.perf_counter() - start, 1),
    }
