"""Patch scores -> anomaly maps, overlays and verdicts (OpenCV, no torch)."""

from __future__ import annotations

import cv2
import numpy as np

from edgead.bundle.manifest import Normalization, PostprocessSpec
from edgead.runtime.regions import Region, VerdictRules, draw_regions


def gaussian_kernel_size(sigma: float) -> int:
    """Kernel size used on both sides (torch and OpenCV): 2 * round(4 sigma) + 1."""
    return 2 * int(4.0 * sigma + 0.5) + 1


def anomaly_map(patch_scores: np.ndarray, spec: PostprocessSpec) -> np.ndarray:
    """Upsample an (h, w) patch-score grid to the map size (bilinear) and blur it."""
    scores = np.asarray(patch_scores, np.float32)
    out = cv2.resize(scores, (spec.map_width, spec.map_height), interpolation=cv2.INTER_LINEAR)
    if spec.blur_sigma > 0:
        k = gaussian_kernel_size(spec.blur_sigma)
        out = cv2.GaussianBlur(
            out,
            (k, k),
            sigmaX=spec.blur_sigma,
            sigmaY=spec.blur_sigma,
            borderType=cv2.BORDER_REFLECT_101,
        )
    return out


def normalize_score(score: float, norm: Normalization) -> float | None:
    """Min-max normalization centred on the threshold (0.5 = threshold), clipped to [0, 1]."""
    if norm.image_threshold is None or norm.image_min is None or norm.image_max is None:
        return None
    span = max(norm.image_max - norm.image_min, 1e-12)
    return float(np.clip((score - norm.image_threshold) / span + 0.5, 0.0, 1.0))


def verdict(
    score: float,
    norm: Normalization,
    regions: list[Region] | None = None,
    rules: VerdictRules | None = None,
) -> str | None:
    """ "anomalous" at or over the image threshold (and, when the rules require one, with a
    region left after the area filter), else "good"; None without a threshold."""
    if norm.image_threshold is None:
        return None
    if score < norm.image_threshold:
        return "good"
    if rules is not None and rules.require_region and norm.pixel_threshold is not None:
        return "anomalous" if regions else "good"
    return "anomalous"


def overlay(
    image_rgb: np.ndarray,
    amap: np.ndarray,
    norm: Normalization,
    alpha: float = 0.45,
    regions: list[Region] | None = None,
) -> np.ndarray:
    """Heat-map overlay (BGR, at the image's own size) for people to look at: the map, the
    outline of what is over the pixel threshold, and the boxes of the verdict's regions."""
    lo = norm.pixel_min if norm.pixel_min is not None else float(amap.min())
    hi = norm.pixel_max if norm.pixel_max is not None else float(amap.max())
    scaled = np.clip((amap - lo) / max(hi - lo, 1e-12), 0, 1)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.resize(
        heat, (image_rgb.shape[1], image_rgb.shape[0]), interpolation=cv2.INTER_LINEAR
    )
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    out = cv2.addWeighted(bgr, 1 - alpha, heat, alpha, 0)
    if norm.pixel_threshold is not None:
        region = cv2.resize(
            (amap >= norm.pixel_threshold).astype(np.uint8),
            (image_rgb.shape[1], image_rgb.shape[0]),
            interpolation=cv2.INTER_NEAREST,
        )
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    if regions:
        draw_regions(out, regions)
    return out
