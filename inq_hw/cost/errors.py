"""The cost model's exceptions: each one a user error the CLI reports in one line."""

from inq_hw.errors import InqHwError

__all__ = ["CostError", "SynthesisError", "SynthesisTimeout", "TechTableError", "ToolNotFound"]


class CostError(InqHwError):
    """A cost cannot be computed as asked (unknown target, a package without a baseline)."""


class TechTableError(CostError, ValueError):
    """A technology table is missing, unreadable, or has a malformed or missing figure."""


class SynthesisError(CostError):
    """A synthesis or place-and-route tool failed on a design."""


class SynthesisTimeout(SynthesisError):
    """A synthesis or place-and-route run did not finish within its time limit."""


class ToolNotFound(SynthesisError):
    """A synthesis or place-and-route tool is not installed."""
