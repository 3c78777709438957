"""Anomaly-detection metrics.

ROCAUC and the precision-recall curve come from scikit-learn. AUPRO is written here because
no maintained library computes it without torch (torchmetrics has none; anomalib's needs
torch and Lightning); it follows the MVTec AD reference implementation: per-region overlap
averaged over all ground-truth regions, against the false-positive rate on good pixels,
integrated up to FPR 0.3 and divided by 0.3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score


def image_rocauc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, np.asarray(scores, np.float64)))


def pixel_rocauc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float | None:
    """ROCAUC over every pixel of every image; masks and maps must have equal shapes."""
    if not masks:
        return None
    return _flat_rocauc(*_flatten(masks, maps))


def _flatten(
    masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel of every image as (labels, scores) vectors."""
    y = np.concatenate([np.asarray(m).ravel() > 0 for m in masks])
    s = np.concatenate([np.asarray(a, np.float32).ravel() for a in maps])
    return y, s


def _flat_rocauc(y: np.ndarray, s: np.ndarray) -> float | None:
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, s))


def f1_optimal_threshold(labels: Sequence[int], scores: Sequence[float]) -> tuple[float, float]:
    """Threshold that maximises F1 on the given labels; returns (threshold, f1)."""
    precision, recall, thresholds = precision_recall_curve(
        np.asarray(labels), np.asarray(scores, np.float64)
    )
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    return float(thresholds[best]), float(f1[best])


def aupro(
    masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], fpr_limit: float = 0.3
) -> float | None:
    """Normalized area under the per-region-overlap curve up to ``fpr_limit``."""
    if not masks:
        return None
    fp_changes, pro_changes, scores = [], [], []
    num_ok, num_regions = 0, 0
    for mask, amap in zip(masks, maps, strict=True):
        mask = (np.asarray(mask) > 0).astype(np.uint8)
        n_labels, labeled = cv2.connectedComponents(mask, connectivity=8)
        ok = labeled == 0
        num_ok += int(ok.sum())
        num_regions += n_labels - 1
        fp = ok.astype(np.float64)
        pro = np.zeros(mask.shape, np.float64)
        for k in range(1, n_labels):
            region = labeled == k
            pro[region] = 1.0 / region.sum()
        fp_changes.append(fp.ravel())
        pro_changes.append(pro.ravel())
        scores.append(np.asarray(amap, np.float64).ravel())
    if num_regions == 0 or num_ok == 0:
        return None
    s = np.concatenate(scores)
    order = np.argsort(s, kind="stable")[::-1]
    s = s[order]
    fprs = np.cumsum(np.concatenate(fp_changes)[order]) / num_ok
    pros = np.cumsum(np.concatenate(pro_changes)[order]) / num_regions
    keep = np.append(np.diff(s) != 0, True)  # one point per distinct threshold
    fprs = np.concatenate(([0.0], np.clip(fprs[keep], None, 1.0), [1.0]))
    pros = np.concatenate(([0.0], np.clip(pros[keep], None, 1.0), [1.0]))
    # integrate up to the limit, interpolating the curve at the limit itself
    cut = np.searchsorted(fprs, fpr_limit, side="right")
    x = np.concatenate((fprs[:cut], [fpr_limit]))
    y = np.concatenate((pros[:cut], [np.interp(fpr_limit, fprs, pros)]))
    return float(np.trapezoid(y, x) / fpr_limit)


@dataclass
class EvalMetrics:
    image_rocauc: float | None
    pixel_rocauc: float | None
    aupro: float | None
    image_threshold: float | None
    image_f1: float | None
    pixel_threshold: float | None


def summarize(
    labels: Sequence[int],
    scores: Sequence[float],
    masks: Sequence[np.ndarray] | None = None,
    maps: Sequence[np.ndarray] | None = None,
    pixel_f1: bool = False,
) -> EvalMetrics:
    """All metrics for one evaluation run. Masks of good images are all-zero arrays.

    ``pixel_f1``: also the F1-optimal pixel threshold (a diagnostic: thresholds come from
    held-out good images, ``metrics.calibration``; it costs a sort of millions of pixels)."""
    img_auc = image_rocauc(labels, scores)
    thr, f1 = (None, None)
    if img_auc is not None:
        thr, f1 = f1_optimal_threshold(labels, scores)
    pix_auc = pro = pix_thr = None
    if masks is not None and maps is not None and len(masks) == len(maps) and masks:
        y, s = _flatten(masks, maps)  # once: millions of pixels
        pix_auc = _flat_rocauc(y, s)
        pro = aupro(masks, maps)
        if pix_auc is not None and pixel_f1:
            # subsample pixels for the threshold: the F1 curve over millions of pixels is slow
            step = max(1, len(y) // 2_000_000)
            pix_thr, _ = f1_optimal_threshold(y[::step], s[::step])
    return EvalMetrics(img_auc, pix_auc, pro, thr, f1, pix_thr)
