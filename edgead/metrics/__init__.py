"""Image and pixel ROCAUC, AUPRO and thresholds (numpy, scikit-learn, OpenCV; no torch)."""

from edgead.metrics.evaluation import (
    EvalMetrics,
    aupro,
    f1_optimal_threshold,
    image_rocauc,
    pixel_rocauc,
    summarize,
)

__all__ = [
    "EvalMetrics",
    "aupro",
    "f1_optimal_threshold",
    "image_rocauc",
    "pixel_rocauc",
    "summarize",
]
