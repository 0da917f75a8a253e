"""The scoreboard rule every simulation engine applies: every output integer of every
sample against the golden executor's, the first few differences kept.

A mismatch names the ``sample``, the ``output`` (its index, or ``"class"`` for the class
the top computed), the ``expected`` and the ``seen`` value. Samples the design never
delivered are not mismatches here; the engines report them as a timeout.
"""

from typing import Any

import numpy as np

__all__ = ["KEPT_MISMATCHES", "score_stream"]

KEPT_MISMATCHES = 20


def score_stream(
    expected: np.ndarray, labels: np.ndarray | None, seen: np.ndarray
) -> tuple[int, list[dict[str, Any]]]:
    """Compare ``seen`` (``(M, outputs)``, plus the class as a last column when
    ``labels`` is given) with the first ``M`` rows of ``expected`` (and ``labels``).

    Returns:
        The number of samples with any difference, and the first
        :data:`KEPT_MISMATCHES` differences in sample order.
    """
    seen = np.asarray(seen, dtype=np.int64)
    count = len(seen)
    expected = np.asarray(expected, dtype=np.int64)
    want = expected[:count].reshape(count, int(np.prod(expected.shape[1:])))
    if labels is not None:
        want = np.concatenate([want, np.asarray(labels, dtype=np.int64)[:count, None]], axis=1)
    seen = seen.reshape(count, want.shape[1])
    if want.shape != seen.shape:
        raise ValueError(f"Outputs of shape {seen.shape}, expected {want.shape}")
    wrong = want != seen
    rows, cols = np.nonzero(wrong[:count])
    class_column = want.shape[1] - 1 if labels is not None else -1
    mismatches = [
        {
            "sample": int(n),
            "output": "class" if k == class_column else int(k),
            "expected": int(want[n, k]),
            "seen": int(seen[n, k]),
        }
        for n, k in zip(rows[:KEPT_MISMATCHES], cols[:KEPT_MISMATCHES], strict=True)
    ]
    return int(wrong.any(axis=1).sum()), mismatches
