"""Helpers shared by the subcommands: tables, percentages, progress."""

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "format_table",
    "is_rank_zero",
    "output_dir",
    "output_file",
    "percent",
    "progress",
    "samples_arg",
]


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


def is_rank_zero() -> bool:
    """True outside torch.distributed and on rank 0 inside it. A process group exists only
    once ``torch.distributed`` is imported, so a torch-free command (cost, generate,
    simulate) never loads torch to ask."""
    if "torch.distributed" not in sys.modules:
        return True
    from inq_hw.train import is_main_process

    return is_main_process()


def progress(args: argparse.Namespace) -> Any:
    """A rich progress display on stderr unless ``--no-progress`` (rank 0 only)."""
    from inq_hw.progress import RichProgress

    return RichProgress(enabled=not args.no_progress and is_rank_zero())


def _check_output(text: str, *, directory: bool) -> Path:
    path = Path(text)
    kind = "directory" if directory else "file"
    if path.exists() and path.is_dir() != directory:
        found = "a directory" if path.is_dir() else "a file"
        raise argparse.ArgumentTypeError(f"cannot write the {kind} {text}: it is {found}")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(
                    f"cannot write {text}: {parent} is a file, not a directory"
                )
            break
    return path


def output_file(text: str) -> Path:
    """argparse ``type=``: a file that can be written (checked before any work starts)."""
    return _check_output(text, directory=False)


def output_dir(text: str) -> Path:
    """argparse ``type=``: a directory that can be created or written into."""
    return _check_output(text, directory=True)


def samples_arg(text: str) -> int | str:
    """argparse ``type=`` of a ``--samples`` option: a positive count, or ``"all"``."""
    if text != "all" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'all', not {text!r}")
    return text if text == "all" else int(text)
