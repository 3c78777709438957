"""What a threshold does on labelled images: false rejects and detections (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Verdicts:
    """What a threshold does on labelled images: false rejects and detections."""

    threshold: float
    n_good: int
    n_anomalous: int
    false_rejects: int
    detections: int

    @property
    def frr(self) -> float | None:
        return self.false_rejects / self.n_good if self.n_good else None

    @property
    def detection_rate(self) -> float | None:
        return self.detections / self.n_anomalous if self.n_anomalous else None

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "false_reject_rate": self.frr,
            "detection_rate": self.detection_rate,
        }

    def describe(self) -> str:
        parts = []
        if self.n_good:
            parts.append(
                f"{self.false_rejects} of {self.n_good} good flagged ({100 * self.frr:.1f}%)"
            )
        if self.n_anomalous:
            parts.append(
                f"{self.detections} of {self.n_anomalous} defective detected "
                f"({100 * self.detection_rate:.1f}%)"
            )
        return ", ".join(parts) or "no labelled images"


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
