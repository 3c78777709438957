"""What a threshold does on labelled images: false rejects and detections (no torch)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgead.bundle.records import Verdicts

__all__ = ["Verdicts", "verdicts_at"]


def verdicts_at(threshold: float, labels: Sequence[int], scores: Sequence[float]) -> Verdicts:
    """Count false rejects (good >= threshold) and detections (anomalous >= threshold)."""
    y = np.asarray(labels)
    s = np.asarray(scores, np.float64)
    return Verdicts(
        float(threshold),
        int((y == 0).sum()),
        int((y == 1).sum()),
        int(((y == 0) & (s >= threshold)).sum()),
        int(((y == 1) & (s >= threshold)).sum()),
    )
