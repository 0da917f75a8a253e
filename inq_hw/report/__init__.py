"""The bit-width trade-off report: results.json in; report.md, report.html and PNGs out.

:mod:`~inq_hw.report.schema` (the results contract and its validator),
:mod:`~inq_hw.report.plots` (matplotlib figures as PNG bytes),
:mod:`~inq_hw.report.sections` and :mod:`~inq_hw.report.document` (the content, written as
Markdown and as self-contained HTML), :mod:`~inq_hw.report.paper` (the INQ paper's own
published figures, labelled as such) and :mod:`~inq_hw.report.render` (atomic writes).

Example usage::

    from inq_hw.report import load_results, render_report

    render_report(load_results("runs/flow/results.json"), "reports/digits-cnn")
"""

from inq_hw.report.render import RESULTS_FILE, render_report
from inq_hw.report.schema import (
    RESULTS_FORMAT,
    RESULTS_VERSION,
    ResultsError,
    load_results,
    validate_results,
)

__all__ = [
    "RESULTS_FILE",
    "RESULTS_FORMAT",
    "RESULTS_VERSION",
    "ResultsError",
    "load_results",
    "render_report",
    "validate_results",
]
