"""The evaluation core: a labelled test set scored by a model, and what is measured on it.

The fit's evaluation (the PyTorch model, edgead.components.evaluate) and parity (the bundle
through the runtime, edgead.runtime.parity) both score a test set and measure it here, so the
masks, the per-image records and the metrics they compare are computed one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgead.data.datasets import MVTecCategory, Sample
from edgead.data.images import read_mask
from edgead.metrics.evaluation import EvalMetrics, summarize
from edgead.metrics.verdicts import Verdicts, verdicts_at


def mask_at(sample: Sample, height: int, width: int) -> np.ndarray | None:
    """Ground truth at the map size (nearest), zeros for good images; None without a mask."""
    if sample.label == 0:
        return np.zeros((height, width), np.uint8)
    if sample.mask_path is None:
        return None
    mask = read_mask(sample.mask_path)
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


@dataclass
class ScoredTestSet:
    """The test images a model scored (unreadable ones left out), in the test set's order."""

    dataset: MVTecCategory
    samples: list[Sample]
    scores: list[float]
    maps: list[np.ndarray]

    @classmethod
    def collect(
        cls,
        dataset: MVTecCategory,
        samples: list[Sample],
        scores: Mapping[str, float],
        maps: Mapping[str, np.ndarray] | None = None,
    ) -> ScoredTestSet:
        """The samples scored, from scores (and maps) keyed by ``str(sample.path)``; without
        maps, the image-level measures only."""
        kept = [s for s in samples if str(s.path) in scores]
        return cls(
            dataset,
            kept,
            [float(scores[str(s.path)]) for s in kept],
            [maps[str(s.path)] for s in kept] if maps is not None else [],
        )

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    @property
    def root(self) -> Path:
        return self.dataset.root

    def records(self, with_path: bool = False) -> list[dict]:
        """Per image: relpath, label, defect and score (and its path on this machine)."""
        out = []
        for s, score in zip(self.samples, self.scores, strict=True):
            record = {"relpath": s.relpath(self.root), "label": s.label, "defect": s.defect}
            if with_path:
                record["path"] = str(s.path)
            record["score"] = score
            out.append(record)
        return out

    def masks(self, height: int, width: int) -> list[np.ndarray] | None:
        """Every image's ground truth at the map size; None when the set has no masks."""
        if not self.dataset.has_masks:
            return None
        masks = [mask_at(s, height, width) for s in self.samples]
        return None if any(m is None for m in masks) else masks  # type: ignore[return-value]

    def summary(self, height: int, width: int) -> EvalMetrics:
        """Image and pixel ROCAUC, AUPRO and the F1-optimal image threshold."""
        masks = self.masks(height, width) if self.maps else None
        return summarize(self.labels, self.scores, masks, self.maps if masks else None)

    def verdicts(self, threshold: float) -> Verdicts:
        """False rejects and detections at ``threshold``."""
        return verdicts_at(threshold, self.labels, self.scores)
