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

from inq_hw.commands.registry import COMMANDS, command, parse_csv
from inq_hw.errors import InqHwError

__all__ = ["command", "main", "parse_csv"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"inq-hw: error: {message}\n")
        raise SystemExit(2)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="inq-hw", description="Incremental Network Quantization to multiplier-free hardware."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, configure, _) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        configure(child)
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
        show = _is_rank_zero()
    except InqHwError as exc:
        sys.stderr.write(f"inq-hw {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"inq-hw {args.command}: interrupted\n")
        return 130
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    text = summary.pop("_text", "")
    if show:
        print(json.dumps(summary, indent=2, sort_keys=True) if args.json else text)
    return 0


def _is_rank_zero() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


if __name__ == "__main__":
    # Run as a script, this module is __main__; the subcommands register with inq_hw.cli.
    from inq_hw.cli import main as _main

    raise SystemExit(_main())
