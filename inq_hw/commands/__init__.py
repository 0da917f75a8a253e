"""The subcommands of ``inq-hw``; importing this package registers them with the CLI."""

from inq_hw.commands import (
    cost,
    explore,
    flow,
    hardware,
    implement,
    integer,
    ip,
    report,
    sweep,
    training,
)
from inq_hw.commands.common import format_table

__all__ = [
    "cost",
    "explore",
    "flow",
    "format_table",
    "hardware",
    "implement",
    "integer",
    "ip",
    "report",
    "sweep",
    "training",
]
