"""Write the bit-width trade-off report of a flow run: Markdown, HTML, PNGs, results.json.

Everything is rendered in memory first; only then is each file written, each atomically
(temporary file beside it, fsync, rename). A plot that fails, or a run interrupted at any
moment, leaves every report file either as it was or whole and new, never half written.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inq_hw.report.document import Image, to_html, to_markdown
from inq_hw.report.plots import PLOTS
from inq_hw.report.schema import validate_results
from inq_hw.report.sections import build_document

__all__ = ["RESULTS_FILE", "render_report"]

RESULTS_FILE = "results.json"


def render_report(results: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Validate ``results`` and write the report into ``out_dir``.

    Writes ``report.md`` (plots linked by relative path), a self-contained ``report.html``
    (plots embedded as ``data:`` URIs, inline style), one PNG per plot the results have data
    for, and ``results.json`` unless ``out_dir`` already holds the same results. Plots no
    longer produced (their data gone) are removed, so the directory matches report.md.

    Args:
        results: A results dictionary of the schema in :mod:`inq_hw.report.schema`.
        out_dir: The report directory; created if missing.

    Returns:
        The report's files: the PNGs, results.json, report.md, report.html, in that order.

    Raises:
        ResultsError: ``results`` does not match the schema (nothing is written).

    Example usage::

        results = load_results("runs/flow/results.json")
        render_report(results, Path("reports/digits-cnn"))
    """
    from inq_hw.files import atomic_write

    validate_results(results)
    out = Path(out_dir)
    images = [Image(p.file, p.caption, data) for p in PLOTS if (data := p.make(results))]
    blocks = build_document(results, images)
    files = {image.file: image.data for image in images}
    if not _holds(out / RESULTS_FILE, results):
        files[RESULTS_FILE] = (json.dumps(results, indent=2) + "\n").encode()
    files["report.md"] = to_markdown(blocks).encode()
    title = f"INQ bit-width trade-off report: {results['name']}"
    files["report.html"] = to_html(blocks, title=title).encode()
    for name, data in files.items():
        atomic_write(out / name, _writer(data))
    for plot in PLOTS:
        if plot.file not in files:
            (out / plot.file).unlink(missing_ok=True)
    written = [out / image.file for image in images]
    return [*written, out / RESULTS_FILE, out / "report.md", out / "report.html"]


def _writer(data: bytes) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        tmp.chmod(0o666 & ~_umask())  # a report is for reading: not mkstemp's 0600

    return write


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _holds(path: Path, results: dict[str, Any]) -> bool:
    """Whether ``path`` already is a results file equal to ``results``."""
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")) == results)
    except (OSError, ValueError):
        return False
