"""Helpers shared by the subcommands: tables, percentages, progress."""

import argparse
from typing import Any

__all__ = ["format_table", "percent", "progress"]


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain, aligned text table (numbers right-aligned)."""
    cells = [headers, *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def percent(value: float) -> str:
    """``0.9889`` → ``"98.89%"``."""
    return f"{100 * value:.2f}%"


def progress(args: argparse.Namespace) -> Any:
    """A rich progress display on stderr unless ``--no-progress`` (rank 0 only)."""
    from inq_hw.progress import RichProgress
    from inq_hw.train import is_main_process

    return RichProgress(enabled=not args.no_progress and is_main_process())
