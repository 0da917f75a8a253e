"""The project's own exception classes.

Every failure that a user can cause (bad arguments, a malformed file, a data set that is
not where they said) raises one of these. The CLI turns any :class:`InqHwError` into one
line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "InqHwError",
    "ModelError",
    "PackageError",
    "ToolError",
    "ToolNotFound",
    "ToolTimeout",
    "TrainingDiverged",
]


class InqHwError(Exception):
    """Base class of every error inq-hw reports to a user."""


class ConfigError(InqHwError, ValueError):
    """An option, schedule or configuration value is invalid."""


class CheckpointError(InqHwError):
    """A checkpoint is missing, truncated, corrupted or of the wrong kind."""


class DataError(InqHwError):
    """A data set is missing, incomplete or malformed."""


class ModelError(InqHwError):
    """A model cannot be built, quantized or transformed as asked."""


class TrainingDiverged(InqHwError):
    """The loss or the weights became NaN or infinite during training."""


class PackageError(InqHwError):
    """An integer model package is missing, corrupted, hand-edited or of another version."""


class ToolError(InqHwError):
    """An external tool (Yosys, nextpnr, a packer, OpenSTA) failed on a design."""


class ToolTimeout(ToolError):
    """An external tool did not finish within its time limit."""


class ToolNotFound(ToolError):
    """An external tool is not installed."""
