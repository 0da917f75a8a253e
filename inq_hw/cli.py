"""The ``inq-hw`` command line.

Every subcommand reads and writes files, prints a short summary (``--json``: a JSON
document on stdout instead) and turns any user error into one line on stderr and exit
code 2. Subcommands register themselves with :func:`inq_hw.commands.registry.command`
(re-exported here).
"""

import argparse
import json
import os
import sys
from collections.abc import Sequence

from inq_hw.commands.common import is_rank_zero
from inq_hw.commands.registry import COMMANDS, command, parse_csv
from inq_hw.errors import InqHwError

__all__ = ["command", "main", "parse_csv"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"inq-hw: error: {message}\n")
        raise SystemExit(2)


#: Subcommands in the order a user runs them (``inq-hw --help`` lists them so).
WORKFLOW = (
    "train", "quantize", "export", "eval", "vectors", "generate", "simulate", "implement",
    "ip", "cost", "explore", "flow", "sweep", "report",
)  # fmt: skip

#: What to tell a user who pressed Ctrl-C, by subcommand.
_RESUME_HINTS = {
    "train": "rerun the same command with --resume to continue",
    "quantize": "rerun the same command with --resume to continue",
    "flow": "rerun the same command to continue: finished stages are cached",
    "sweep": "rerun the same command to continue: finished stages are cached",
}


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default, unless its help already names it or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        said = "(default" in text or "default:" in text
        if not action.option_strings or said or not _shows_default(action):
            return text
        return f"{text} (default: %(default)s)"


def _shows_default(action: argparse.Action) -> bool:
    return not any(action.default is none for none in (None, False, argparse.SUPPRESS))


def _in_workflow_order(name: str) -> tuple[int, str]:
    return (WORKFLOW.index(name) if name in WORKFLOW else len(WORKFLOW), name)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="inq-hw", description="Incremental Network Quantization to multiplier-free hardware."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in sorted(COMMANDS, key=_in_workflow_order):
        help_text, configure, _ = COMMANDS[name]
        child = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=_HelpFormatter
        )
        configure(child)
        for action in child._actions:  # options given no help still show their default
            if action.help is None and action.option_strings and _shows_default(action):
                action.help = "(default: %(default)s)"
        child.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
        child.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def _init_distributed() -> bool:
    """Join the process group when started by torchrun (WORLD_SIZE > 1), gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``inq-hw`` console script; returns the exit code."""
    from inq_hw import commands  # noqa: F401  (registers the subcommands)

    parser = _build_parser()
    args = parser.parse_args(argv)
    _, _, handler = COMMANDS[args.command]
    distributed = _init_distributed()
    try:
        summary = handler(args)
        show = is_rank_zero()
    except InqHwError as exc:
        sys.stderr.write(f"inq-hw {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        hint = _RESUME_HINTS.get(args.command)
        sys.stderr.write(f"inq-hw {args.command}: interrupted" + (f"; {hint}\n" if hint else "\n"))
        return 130
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    text = summary.pop("_text", "")
    if show:
        print(json.dumps(summary, indent=2, sort_keys=True) if args.json else text)
    return 0


if __name__ == "__main__":
    # Run as a script, this module is __main__; the subcommands register with inq_hw.cli.
    from inq_hw.cli import main as _main

    raise SystemExit(_main())
