"""``inq-hw sweep``: every point of a sweep through the flow's cached stages, on an executor.

The driver loop: for each point, ask the flow which stage is missing next
(:func:`~inq_hw.sweep.stages.next_stage`); start it on the executor unless another point
already has (points that share a stage, such as an FP32 model, wait for the one task);
when a task returns, write its stage into ``<out>/stages/`` and ask again. A point with no
stage missing is finished: its flow report is written to ``<out>/points/<name>/``. A
rerun after a crash finds every finished stage in the cache and computes only the rest.
At the end ``<out>/sweep.json`` and the sweep report (:mod:`inq_hw.report.sweep`) are
written, each atomically.
"""

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inq_hw.flow import StageRunner, check_config
from inq_hw.sweep.config import SweepConfig, SweepPoint
from inq_hw.sweep.executors import Executor, Payload, make_executor
from inq_hw.sweep.stages import (
    NextStage,
    SweepError,
    machine_info,
    next_stage,
    stage_payload,
    store_stage,
)

__all__ = ["SWEEP_FILE", "run_sweep"]

SWEEP_FILE = "sweep.json"


@dataclass
class _State:
    """A point's progress in this run."""

    point: SweepPoint
    computed: list[str] = field(default_factory=list)  # the stages it waited for
    results: dict[str, Any] | None = None
    error: str | None = None


class _Sweep:
    def __init__(
        self, out: Path, executor: Executor, echo: Callable[[str], None], total: int
    ) -> None:
        self.out, self.root, self.executor, self.echo = out, out / "stages", executor, echo
        self.total = total
        self.inflight: dict[str, tuple[Any, NextStage]] = {}  # directory → (handle, stage)
        self.waiting: dict[str, list[_State]] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        self.finished = self.stages_done = 0

    def run(self, states: list[_State]) -> None:
        ready = deque(states)
        while ready or self.inflight:
            while ready and len(self.inflight) < self.executor.jobs:
                self._advance(ready.popleft())
            if self.inflight:
                ready.extend(self._collect())

    def _advance(self, state: _State) -> None:
        stage, results = next_stage(state.point.config, self.out)
        if stage is None:
            assert results is not None
            state.results = results
            self._finish(state)
            return
        state.computed.append(stage.label)
        self.waiting.setdefault(stage.directory, []).append(state)
        if stage.directory not in self.inflight:
            config = json.dumps(asdict(state.point.config))
            payloads = list(stage.before)
            handle = self.executor.submit(config, stage.directory, payloads, self._read)
            self.inflight[stage.directory] = (handle, stage)

    def _read(self, payload: Payload) -> bytes:
        return stage_payload(self.root, *payload)

    def _collect(self) -> list[_State]:
        """Wait for one task, store its stage; the points that waited for it."""
        handles = {handle: d for d, (handle, _) in self.inflight.items()}
        handle, value = self.executor.wait_one(list(handles))
        directory = handles[handle]
        _, stage = self.inflight.pop(directory)
        waiting = self.waiting.pop(directory)
        if "machine" in value:  # not when the worker died
            self.workers.setdefault(value["machine"]["host"], value["machine"])
        self.stages_done += 1
        names = ", ".join(s.point.name for s in waiting)
        if "error" in value:
            self.echo(f"[stage {self.stages_done}] {stage.label} ({names}): FAILED")
            for state in waiting:
                state.error = value["error"]
                self._finish(state)
            return []
        store_stage(self.root, directory, value["tar"])
        self.echo(
            f"[stage {self.stages_done}] {stage.label} ({names}): done in "
            f"{value['seconds']:.1f} s on {value['machine']['host']}"
        )
        return waiting

    def _finish(self, state: _State) -> None:
        self.finished += 1
        point = state.point
        prefix = f"[point {self.finished}/{self.total}] {point.name}"
        if state.error is not None:
            self.echo(f"{prefix}: FAILED: {state.error}")
            return
        assert state.results is not None
        _write_point_report(point, state.results, self.out / "points" / point.name)
        how = f"{len(state.computed)} stages computed" if state.computed else "all read back"
        accuracy = ", ".join(
            f"{e['bits']}-bit {100 * e['accuracy']['integer']:.2f}%" for e in state.results["bits"]
        )
        self.echo(f"{prefix}: done ({how}): integer {accuracy}")


def _write_point_report(point: SweepPoint, results: dict[str, Any], report: Path) -> None:
    """The point's flow report, unless it is there with the same results already (a
    rerun reads every point back: rendering twelve reports' plots again took 20 s)."""
    from inq_hw.files import atomic_write
    from inq_hw.report import RESULTS_FILE, render_report

    # The sum of the point's stage times (the probe that read them back took none).
    results["flow_seconds"] = round(sum(v or 0 for v in results["stage_seconds"].values()), 1)
    if _same_results(report / RESULTS_FILE, results) and (report / "report.html").is_file():
        return
    report.mkdir(parents=True, exist_ok=True)

    def write_config(tmp: Path) -> None:
        tmp.write_text(point.config.to_toml())

    atomic_write(report / "flow.toml", write_config)
    render_report(results, report)


def _same_results(path: Path, results: dict[str, Any]) -> bool:
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    new = json.loads(json.dumps(results))  # tuples as lists, as the file holds them
    old.pop("created", None)
    new.pop("created", None)
    return bool(old == new)


def run_sweep(
    sweep: SweepConfig,
    *,
    out: Path,
    executor: str = "auto",
    jobs: int | None = None,
    address: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or continue) every point of ``sweep``; write sweep.json and the sweep report
    into ``out``; return what sweep.json holds.

    Args:
        sweep: The sweep (:meth:`SweepConfig.from_toml`).
        out: The stage cache (``out/stages``), the points' reports and the sweep's files.
        executor: ``auto`` (Ray when installed), ``ray`` or ``pool``.
        jobs: Tasks in flight at a time (default: the pool's or Ray cluster's CPUs).
        address: A Ray cluster to join (default ``RAY_ADDRESS``, else a local one).
        echo: Where the progress lines go, one per finished stage and point.

    Raises:
        SweepError: A point failed (sweep.json and the report are written first) or the
            executor cannot start.
        ConfigError: A point's schedule or folding is not valid for its model.

    Example usage::

        sweep = SweepConfig.from_toml(Path("sweep.toml"))
        run_sweep(sweep, out=Path("runs/sweep"), executor="pool", jobs=2)
    """
    start = time.perf_counter()
    points = sweep.points()
    for point in points:  # before the first stage, as the flow checks
        check_config(point.config)
    states = [_State(point) for point in points]
    chosen = make_executor(executor, jobs, address)
    try:
        StageRunner(out, 0, lambda _: None)  # creates out/stages, removes stale temporaries
        runner = _Sweep(out, chosen, echo, len(points))
        runner.run(states)
        described = chosen.describe()
    finally:
        chosen.close()
    record = _record(sweep, states, described, runner.workers, time.perf_counter() - start)
    _write_sweep(record, out)
    if failed := [s for s in states if s.error is not None]:
        raise SweepError(
            f"{len(failed)} of {len(states)} points failed; {failed[0].point.name}: "
            f"{failed[0].error} (finished stages are cached; sweep.json lists the rest)"
        )
    return record


def _record(
    sweep: SweepConfig,
    states: list[_State],
    executor: dict[str, Any],
    workers: dict[str, dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    from inq_hw.report.sweep import SWEEP_FORMAT, SWEEP_VERSION, compare_formats, summarize

    points = [_point_record(state) for state in states]
    return {
        "format": SWEEP_FORMAT,
        "version": SWEEP_VERSION,
        "name": sweep.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "sweep": sweep.to_dict(),
        "executor": executor,
        "machine": machine_info(),
        "workers": sorted(workers.values(), key=lambda w: w["host"]),
        "points": points,
        "groups": summarize(points),
        "formats": compare_formats(points),
        "sweep_seconds": round(seconds, 1),
    }


def _point_record(state: _State) -> dict[str, Any]:
    point, results = state.point, state.results
    record: dict[str, Any] = {
        "name": point.name,
        "group": point.group,
        "axes": point.axes,
        "config": asdict(point.config),
        "status": "failed" if state.error is not None else "done",
        "stages_computed": state.computed,
    }
    if state.error is not None:
        record["error"] = state.error
    if results is not None:
        record["report"] = f"points/{point.name}/report.md"
        keys = ("dataset", "fp32", "uniform8", "bits")
        record["results"] = {k: results[k] for k in keys if k in results}
        for entry in record["results"]["bits"]:
            entry.pop("paths", None)  # the driver's paths; the report links the point's
        record["stage_seconds"] = results["stage_seconds"]
    return record


def _write_sweep(record: dict[str, Any], out: Path) -> None:
    from inq_hw.files import atomic_write
    from inq_hw.report.sweep import render_sweep_report

    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(record, indent=1) + "\n")

    atomic_write(out / SWEEP_FILE, write)
    render_sweep_report(record, out)


def load_sweep(path: Path) -> dict[str, Any]:
    """Read a sweep.json back."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as error:
        raise SweepError(f"Cannot read {path}: {error}") from None
