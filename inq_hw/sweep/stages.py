"""The flow's cached stages, one at a time: which one a point needs next, and computing it
away from the driver.

The driver never plans stages itself: it runs the flow's own code
(:func:`inq_hw.flow.flow_results`) with a runner that reads back every finished stage and
stops at the first missing one (:func:`next_stage`), so the stage keys and their order are
the flow's. A worker (:func:`compute_stage`) receives that stage's inputs as tar bytes,
unpacks them into a private directory, runs the same flow code up to the stage, computes
it and returns the finished stage directory as tar bytes; the driver writes it into
``<out>/stages/`` (:func:`store_stage`). Workers need no shared file system.

Paths: a worker runs in its private directory with the stage root ``stages/`` relative to
it, so what a stage records of its inputs (an INQ checkpoint records the path of its FP32
source, a package the path of its INQ checkpoint) is ``stages/<name>-<key>/...``, the same
in every worker, and the next stage's worker finds it where it unpacks its inputs.
"""

import contextlib
import io
import json
import os
import platform
import shutil
import socket
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inq_hw.errors import InqHwError
from inq_hw.flow import STAGE_NAMES, FlowConfig, StageRunner, flow_results, stage_key

__all__ = [
    "STAGE_CPUS",
    "NextStage",
    "SweepError",
    "compute_stage",
    "machine_info",
    "next_stage",
    "stage_payload",
    "store_stage",
]

#: The CPUs each stage kind is declared to need (Ray's ``num_cpus``): the flow trains on
#: one thread, and Yosys, nextpnr, Icarus and a Verilator run of one image at a time are
#: single-threaded.
STAGE_CPUS = dict.fromkeys(STAGE_NAMES, 1)


class SweepError(InqHwError):
    """A sweep cannot run or a point's stage failed; the message names the point."""


@dataclass(frozen=True)
class NextStage:
    """The first stage of a point that is not in the cache, and what it reads.

    Members
    -------
    label, name, key : str
        The flow's label (``INQ 2-bit``), stage kind and cache key.
    before : tuple of (str, bool)
        Every stage directory the flow reads before it, in order, each with whether the
        stage needs its files (its inputs, transitively) or only its ``result.json``.
    """

    label: str
    name: str
    key: str
    before: tuple[tuple[str, bool], ...]

    @property
    def directory(self) -> str:
        return f"{self.name}-{self.key}"


class _Missing(Exception):
    def __init__(self, stage: NextStage) -> None:
        self.stage = stage


class _Probe(StageRunner):
    """Reads back finished stages; raises :class:`_Missing` at the first one not there."""

    def __init__(self, out: Path) -> None:
        super().__init__(out, 0, lambda _: None, clean=False)
        self.seen: dict[str, dict[str, Any]] = {}  # key → inputs, in the order read
        self.names: dict[str, str] = {}  # key → stage kind

    def run(
        self, label: str, name: str, inputs: dict[str, Any], work: Callable[[Path], Any]
    ) -> tuple[dict[str, Any], Path, str]:
        key = stage_key(name, inputs)
        if not (self.root / f"{name}-{key}" / "result.json").is_file():
            needed = _needed(inputs, self.seen)
            before = tuple((f"{self.names[k]}-{k}", k in needed) for k in self.seen)
            raise _Missing(NextStage(label, name, key, before))
        self.seen[key], self.names[key] = inputs, name
        return super().run(label, name, inputs, work)


def _needed(inputs: dict[str, Any], seen: dict[str, dict[str, Any]]) -> set[str]:
    """The keys of the stages ``inputs`` names, and of theirs (a simulation reads the
    package through the RTL stage's key)."""
    found: set[str] = set()
    todo = [v for v in inputs.values() if isinstance(v, str) and v in seen]
    while todo:
        key = todo.pop()
        if key not in found:
            found.add(key)
            todo += [v for v in seen[key].values() if isinstance(v, str) and v in seen]
    return found


def next_stage(cfg: FlowConfig, out: Path) -> tuple[NextStage | None, dict[str, Any] | None]:
    """The first stage of ``cfg`` missing under ``out/stages`` (None, and the flow's
    results read back, when every stage is there)."""
    try:
        return None, flow_results(cfg, _Probe(out))
    except _Missing as missing:
        return missing.stage, None


def stage_payload(root: Path, directory: str, whole: bool) -> bytes:
    """A stage directory as tar bytes (``whole=False``: only its ``result.json``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        source = root / directory
        tar.add(source if whole else source / "result.json", arcname=_arcname(directory, whole))
    return buffer.getvalue()


def _arcname(directory: str, whole: bool) -> str:
    return directory if whole else f"{directory}/result.json"


def _unpack(data: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(into, filter="data")


def store_stage(root: Path, directory: str, data: bytes) -> bool:
    """Write a stage a worker returned into ``root`` (temporary name, then rename); False
    when it is there already (another point's task computed it)."""
    final = root / directory
    if (final / "result.json").is_file():
        return False
    tmp = root / f"{directory}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _unpack(data, tmp)
        if not (tmp / directory / "result.json").is_file():
            raise SweepError(f"A worker returned stage {directory} without its result.json")
        shutil.rmtree(final, ignore_errors=True)  # a directory without result.json: unfinished
        (tmp / directory).rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


class _Computed(Exception):
    pass


class _Target(StageRunner):
    """Computes the one stage ``key`` (every stage before it must have been unpacked)."""

    def __init__(self, out: Path, key: str, echo: Callable[[str], None]) -> None:
        super().__init__(out, 0, echo)
        self.key = key

    def run(
        self, label: str, name: str, inputs: dict[str, Any], work: Callable[[Path], Any]
    ) -> tuple[dict[str, Any], Path, str]:
        key = stage_key(name, inputs)
        if key == self.key:
            super().run(label, name, inputs, work)
            raise _Computed
        if not (self.root / f"{name}-{key}" / "result.json").is_file():
            raise SweepError(f"Stage {label} ({name}-{key}) was not sent to the worker")
        return super().run(label, name, inputs, work)


def compute_stage(config: str, directory: str, *payloads: bytes) -> dict[str, Any]:
    """A worker's task: compute stage ``directory`` of the flow config ``config`` (JSON of
    its fields) from the stages in ``payloads`` (tar bytes); return it as a value.

    Returns:
        ``{"directory", "tar", "seconds", "machine"}``, or ``{"directory", "error"}``
        when the stage failed (a one-line message; the flow's own :class:`FlowError`).
    """
    cfg = FlowConfig(**json.loads(config))
    key = directory.rsplit("-", 1)[1]
    start = time.perf_counter()
    lines: list[str] = []
    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="inq-hw-sweep-") as private:
        work = Path(private)
        for data in payloads:
            _unpack(data, work / "stages")
        os.chdir(work)  # stage paths relative to it: see the module's docstring
        try:
            with _quiet(work / "stage.log"):
                flow_results(cfg, _Target(Path("."), key, lines.append))
        except _Computed:
            pass
        except InqHwError as error:
            return {"directory": directory, "error": str(error), "machine": machine_info()}
        else:
            raise SweepError(f"The flow of this point has no stage {directory}")
        finally:
            os.chdir(here)
        tar = stage_payload(work / "stages", directory, whole=True)
    seconds = round(time.perf_counter() - start, 2)
    return {"directory": directory, "tar": tar, "seconds": seconds, "machine": machine_info()}


@contextlib.contextmanager
def _quiet(log: Path) -> Iterator[None]:
    """Send the stage's output to ``log``, down to file descriptors 1 and 2: a stage's own
    lines (the simulator's summary, the compiled harness's progress on stderr) would
    interleave with the driver's progress lines, since a pool's workers share its terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def machine_info() -> dict[str, Any]:
    """What a stage's figures depend on besides the code: host, CPU, torch build, threads
    (the flow trains on one thread, :func:`inq_hw.flow._one_thread`)."""
    import torch

    return {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_git": torch.version.git_version,
        # The flow's training stages set one intra-op thread (inq_hw.flow._one_thread); a
        # process's current count depends on which stage it ran last, so it is not recorded.
        "training_threads": 1,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
