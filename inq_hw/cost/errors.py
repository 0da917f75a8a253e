"""The cost model's exceptions: each one a user error the CLI reports in one line."""

from inq_hw.errors import InqHwError, ToolError, ToolNotFound, ToolTimeout

__all__ = ["CostError", "SynthesisError", "SynthesisTimeout", "TechTableError", "ToolNotFound"]


class CostError(InqHwError):
    """A cost cannot be computed as asked (unknown target, a package without a baseline)."""


class TechTableError(CostError, ValueError):
    """A technology table is missing, unreadable, or has a malformed or missing figure."""


#: Synthesis failures are the tool layer's (:mod:`inq_hw.tools`); the old names remain.
SynthesisError = ToolError
SynthesisTimeout = ToolTimeout
