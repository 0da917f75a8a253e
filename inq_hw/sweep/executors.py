"""Where a sweep's stages run: a local process pool, or Ray (on this machine or a cluster).

Both take the same task (:func:`inq_hw.sweep.stages.compute_stage`: a flow config, the
stage's directory name and its inputs as tar bytes) and give back the same value (the
finished stage as tar bytes), so where a stage ran does not change what it produced.

Ray is an optional extra (``pip install 'inq-hw[cluster]'``): ``ray.init`` starts a local
cluster on ``jobs`` CPUs (default: this machine's), or joins ``address`` (or
``RAY_ADDRESS``). Each stage is a Ray task with its CPU need declared
(:data:`~inq_hw.sweep.stages.STAGE_CPUS`); a stage's inputs are put into Ray's object
store once and passed by reference, so a cluster node fetches them from the store.
"""

import concurrent.futures
import multiprocessing
import os
import socket
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from inq_hw.sweep.stages import STAGE_CPUS, SweepError, compute_stage

__all__ = ["EXECUTORS", "Executor", "PoolExecutor", "RayExecutor", "make_executor"]

EXECUTORS = ("auto", "ray", "pool")
_PACKAGES = ("inq_hw", "rtl_gen", "sim")
_ENV = {"OMP_NUM_THREADS": "1"}
#: Payload: the stage directory name, whether the whole directory (else result.json only).
Payload = tuple[str, bool]


class Executor(Protocol):
    """Runs stage tasks; at most :attr:`jobs` are in flight at a time (the driver's rule)."""

    kind: str
    jobs: int

    def submit(
        self, config: str, directory: str, payloads: list[Payload], read: Callable[[Payload], bytes]
    ) -> Any:
        """Start computing ``directory``; returns a handle."""

    def wait_one(self, handles: list[Any]) -> tuple[Any, dict[str, Any]]:
        """Block until one of ``handles`` has finished: it and the task's value."""

    def describe(self) -> dict[str, Any]:
        """What sweep.json records of the executor."""

    def close(self) -> None:
        """Stop the workers this executor started."""


def _worker_init() -> None:
    # Before numpy or torch load in the worker: one BLAS/OpenMP thread, as the CLI's tests
    # and Ray's workers (which set OMP_NUM_THREADS to the task's CPUs) run.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


class PoolExecutor:
    """A local process pool (``spawn``: a fresh interpreter per worker, no forked torch)."""

    kind = "pool"

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
        )

    def submit(
        self, config: str, directory: str, payloads: list[Payload], read: Callable[[Payload], bytes]
    ) -> Any:
        return self._pool.submit(compute_stage, config, directory, *(read(p) for p in payloads))

    def wait_one(self, handles: list[Any]) -> tuple[Any, dict[str, Any]]:
        done, _ = concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED)
        handle = next(h for h in handles if h in done)
        try:
            return handle, handle.result()
        except BrokenProcessPool as error:  # a worker was killed
            return handle, {"error": f"The process pool broke: {_first_line(error)}"}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "jobs": self.jobs}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Ray tasks, each declaring its stage's CPUs; inputs go through the object store."""

    kind = "ray"

    def __init__(self, jobs: int | None, address: str | None) -> None:
        import ray

        self._ray = ray
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._started = not ray.is_initialized()
        if self._started:
            _probe(self.address)
            try:
                ray.init(**self._init_options(jobs))
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise SweepError(_join_error(self.address, error)) from None
        self.jobs = jobs or int(ray.cluster_resources().get("CPU", 1))
        self._task = ray.remote(compute_stage)
        self._refs: dict[Payload, Any] = {}

    def _init_options(self, jobs: int | None) -> dict[str, Any]:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        root = Path(__file__).resolve().parents[2]
        if self.address:
            # A cluster: the driver's own code is shipped to every node (1.4 MB), so every
            # stage runs the code the driver runs, whatever the nodes have installed.
            modules = [str(root / name) for name in _PACKAGES]
            env = {"py_modules": modules, "excludes": ["__pycache__"], "env_vars": _ENV}
            return {**options, "address": self.address, "runtime_env": env}
        # A local cluster: its workers import this checkout's packages, as the driver does.
        path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
        env_vars = {**_ENV, "PYTHONPATH": path}
        cpus = jobs or os.cpu_count()
        return {**options, "num_cpus": cpus, "runtime_env": {"env_vars": env_vars}}

    def submit(
        self, config: str, directory: str, payloads: list[Payload], read: Callable[[Payload], bytes]
    ) -> Any:
        refs = [self._ref(p, read) for p in payloads]
        cpus = STAGE_CPUS[directory.rsplit("-", 1)[0]]
        return self._task.options(num_cpus=cpus).remote(config, directory, *refs)

    def _ref(self, payload: Payload, read: Callable[[Payload], bytes]) -> Any:
        if payload not in self._refs:
            self._refs[payload] = self._ray.put(read(payload))
        return self._refs[payload]

    def wait_one(self, handles: list[Any]) -> tuple[Any, dict[str, Any]]:
        (ready,), _ = self._ray.wait(handles, num_returns=1)
        try:
            return ready, self._ray.get(ready)
        except self._ray.exceptions.RayError as error:  # a worker or node died
            return ready, {"error": f"Ray: {type(error).__name__}: {_first_line(error)}"}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "jobs": self.jobs, "address": self.address or "local"}

    def close(self) -> None:
        self._refs.clear()
        if self._started:
            self._ray.shutdown()


def _probe(address: str | None, timeout_s: float = 10.0) -> None:
    """Refuse, in one line, a ``host:port`` address where nothing listens: Ray itself keeps
    retrying such an address for minutes before it gives up."""
    if not address or "://" in address or address in ("auto", "local"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address must be host:port, ray://host:port or auto, not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise SweepError(f"Cannot join the Ray cluster at {address}: {error}") from None


def _join_error(address: str | None, error: BaseException) -> str:
    """The one line for a Ray cluster that could not be started or joined. A cluster of
    ``ray start --head`` (Ray 2.5x and later) asks for a token, which Ray sends to an
    explicit address only when ``RAY_AUTH_MODE=token`` says so."""
    where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any("AuthToken" in str(e) or type(e).__name__ == "AuthenticationError" for e in chain):
        return (
            f"Cannot join {where}: it asks for a token; set RAY_AUTH_MODE=token (the token "
            "from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
        )
    return f"Cannot join {where}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def make_executor(kind: str, jobs: int | None, address: str | None) -> Executor:
    """``auto``: Ray when it is installed, else the pool; ``ray`` without Ray is an error."""
    if kind not in EXECUTORS:
        raise SweepError(f"Executor must be one of {EXECUTORS}, not {kind!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise SweepError(f"--jobs must be a positive integer, not {jobs!r}")
    if kind == "ray" or (kind == "auto" and ray_available()):
        if not ray_available():
            raise SweepError("--executor ray needs Ray: pip install 'inq-hw[cluster]'")
        return RayExecutor(jobs, address)
    if address:
        raise SweepError(f"--address {address} needs the Ray executor, not the process pool")
    return PoolExecutor(jobs or os.cpu_count() or 1)
