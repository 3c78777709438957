"""Evaluate a fitted PyTorch detector on an MVTec-layout test set."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from edgead.bundle.manifest import InputSpec, Metrics, Normalization
from edgead.data.datasets import MVTecCategory, Sample
from edgead.data.images import read_mask
from edgead.metrics import summarize
from edgead.models.common import batched_inputs

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


def mask_for(sample: Sample, spec: InputSpec) -> np.ndarray | None:
    """Ground truth at the map size (nearest), zeros for good images; None without masks."""
    if sample.label == 0:
        return np.zeros((spec.height, spec.width), np.uint8)
    if sample.mask_path is None:
        return None
    mask = read_mask(sample.mask_path)
    return cv2.resize(mask, (spec.width, spec.height), interpolation=cv2.INTER_NEAREST)


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
    kept = [s for s in samples if s.path in scores]
    labels = [s.label for s in kept]
    image_scores = [scores[s.path] for s in kept]
    masks = [mask_for(s, spec) for s in kept] if dataset.has_masks else None
    kept_maps = [maps[s.path] for s in kept]
    summary = summarize(labels, image_scores, masks, kept_maps if masks else None)
    records = [
        {
            "relpath": s.relpath(dataset.root),
            "label": s.label,
            "defect": s.defect,
            "score": scores[s.path],
        }
        for s in kept
    ]
    all_maps = np.stack(kept_maps) if kept_maps else np.zeros((1, 1, 1))
    norm = Normalization(
        image_threshold=summary.image_threshold,
        pixel_threshold=summary.pixel_threshold,
        image_min=float(min(image_scores)) if image_scores else None,
        image_max=float(max(image_scores)) if image_scores else None,
        pixel_min=float(all_maps.min()),
        pixel_max=float(all_maps.max()),
        source=f"F1-optimal thresholds and min/max on the test set of {dataset.root}",
    )
    if summary.image_threshold is None:
        norm = good_only_normalization(infer, dataset, spec, batch_size, quiet) or norm
    metrics = Metrics(
        dataset=str(dataset.root),
        n_images=len(kept),
        n_anomalous=int(sum(labels)),
        image_rocauc=summary.image_rocauc,
        pixel_rocauc=summary.pixel_rocauc,
        aupro=summary.aupro,
        image_f1=summary.image_f1,
        torch_ms_per_image=float(np.median(ms)) if ms else None,
        torch_device=f"{device}, batch {batch_size}",
    )
    return EvalResult(metrics, norm, records, skipped)


def good_only_normalization(
    infer: InferFn, dataset: MVTecCategory, spec: InputSpec, batch_size: int, quiet: bool
) -> Normalization | None:
    """Without labelled defects: the threshold is the highest score on held-out good images."""
    paths = dataset.validation_paths()
    if not paths:
        return None
    scores, maps, _, _ = score_paths(infer, paths, spec, batch_size, quiet, "validation")
    if not scores:
        return None
    values = list(scores.values())
    stacked = np.stack(list(maps.values()))
    return Normalization(
        image_threshold=max(values),
        pixel_threshold=float(stacked.max()),
        image_min=min(values),
        image_max=max(values),
        pixel_min=float(stacked.min()),
        pixel_max=float(stacked.max()),
        source=f"max score of the validation/good images of {dataset.root}",
    )
