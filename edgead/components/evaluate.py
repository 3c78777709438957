"""Evaluate a fitted PyTorch detector on an MVTec-layout test set."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgead.bundle.manifest import InputSpec, Metrics, Normalization
from edgead.components.common import batched_inputs
from edgead.data.datasets import MVTecCategory
from edgead.metrics.calibration import (
    DEFAULT_CONFIDENCE,
    CalibrationRecord,
    calibration_record,
    normalization_from,
)
from edgead.metrics.scored import ScoredTestSet

log = logging.getLogger(__name__)

# infer: preprocessed batch (B, 3, H, W) -> (image scores (B,), anomaly maps (B, H, W))
InferFn = Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]]


@dataclass
class EvalResult:
    metrics: Metrics
    normalization: Normalization
    records: list[dict] = field(default_factory=list)  # relpath, label, defect, score
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EvalResult:
        return cls(
            Metrics(**d["metrics"]),
            Normalization(**d["normalization"]),
            d["records"],
            d.get("skipped", []),
        )


def score_paths(
    infer: InferFn, paths: list[Path], spec: InputSpec, batch_size: int, quiet: bool, desc: str
) -> tuple[dict[Path, float], dict[Path, np.ndarray], list[str], list[float]]:
    scores: dict[Path, float] = {}
    maps: dict[Path, np.ndarray] = {}
    skipped: list[str] = []
    per_image_ms: list[float] = []
    for names, batch, errors in batched_inputs(paths, spec, batch_size, desc, quiet):
        skipped += [str(e) for e in errors]
        if not len(batch):
            continue
        t0 = time.perf_counter()
        s, m = infer(batch)
        per_image_ms.append((time.perf_counter() - t0) * 1000 / len(names))
        for i, name in enumerate(names):
            scores[name] = float(s[i])
            maps[name] = m[i]
    return scores, maps, skipped, per_image_ms


def evaluate(
    infer: InferFn,
    dataset: MVTecCategory,
    spec: InputSpec,
    batch_size: int = 1,
    quiet: bool = False,
    device: str = "cpu",
) -> EvalResult:
    """Score the test set; metrics, F1-optimal thresholds and normalization statistics."""
    samples = dataset.test_samples()
    scores, maps, skipped, ms = score_paths(
        infer, [s.path for s in samples], spec, batch_size, quiet, "evaluate"
    )
    scored = ScoredTestSet.collect(
        dataset,
        samples,
        {str(p): v for p, v in scores.items()},
        {str(p): v for p, v in maps.items()},
    )
    labels, image_scores = scored.labels, scored.scores
    summary = scored.summary(spec.height, spec.width)
    all_maps = np.stack(scored.maps) if scored.maps else np.zeros((1, 1, 1))
    norm = Normalization(
        image_threshold=summary.image_threshold,
        pixel_threshold=summary.pixel_threshold,
        image_min=float(min(image_scores)) if image_scores else None,
        image_max=float(max(image_scores)) if image_scores else None,
        pixel_min=float(all_maps.min()),
        pixel_max=float(all_maps.max()),
        # the F1-optimal thresholds: a diagnostic (apply_calibration sets the real ones)
        source=f"F1-optimal thresholds and min/max on the test set of {dataset.name}",
    )
    metrics = Metrics(
        dataset=dataset.name,  # no paths of the fitting machine in the bundle
        n_images=len(scored.samples),
        n_anomalous=int(sum(labels)),
        image_rocauc=summary.image_rocauc,
        pixel_rocauc=summary.pixel_rocauc,
        aupro=summary.aupro,
        image_f1=summary.image_f1,
        torch_ms_per_image=float(np.median(ms)) if ms else None,
        torch_device=f"{device}, batch {batch_size}",
    )
    return EvalResult(metrics, norm, scored.records(), skipped)


def calibrate(
    infer: InferFn,
    held: list[Path],
    spec: InputSpec,
    target_frr: float,
    source: str,
    quiet: bool = False,
    batch_size: int = 8,
    confidence: float = DEFAULT_CONFIDENCE,
) -> CalibrationRecord | None:
    """Thresholds at ``target_frr`` from the held-out good images' scores and map maxima."""
    if not held:
        return None
    scores, maps, skipped, _ = score_paths(infer, held, spec, batch_size, quiet, "calibrate")
    if len(scores) < 2:
        return None
    return calibration_record(
        list(scores.values()),
        [float(m.max()) for m in maps.values()],
        [float(m.min()) for m in maps.values()],
        target_frr,
        source,
        skipped,
        confidence,
    )


def apply_calibration(evaluation: EvalResult | None, cal: CalibrationRecord | None) -> EvalResult:
    """The evaluation with its normalization set from the calibration: the thresholds come from
    held-out good images; the labelled test set only says what they cost (and where the
    F1-optimal threshold would be, as a diagnostic)."""
    evaluation = evaluation or EvalResult(Metrics(), Normalization())
    labels = [r["label"] for r in evaluation.records]
    scores = [r["score"] for r in evaluation.records]
    if cal is None:
        log.warning(
            "no held-out good images: the bundle gets no threshold; set one with "
            "`edgead calibrate BUNDLE GOOD_DIR` (or fit with --holdout > 0)"
        )
    evaluation.normalization = normalization_from(cal, labels, scores, evaluation.normalization)
    return evaluation
