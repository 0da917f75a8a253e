"""Timing and reporting shared by the benches: best-of and median timers, tables, threads."""

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence

import torch

__all__ = [
    "BenchError",
    "best_of",
    "median",
    "print_table",
    "single_thread",
    "time_once",
    "verdict",
]


class BenchError(RuntimeError):
    """A bench measured something other than what it claims (its set-up went wrong)."""


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_once(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes, with the garbage collector held off (as timeit)."""
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` timed calls: the figure least disturbed by the machine."""
    return min(time_once(fn) for _ in range(repeat))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print(title)
    for row in [header, *rows]:
        cells = [
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  " + "  ".join(cells).rstrip())
