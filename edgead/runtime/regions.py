"""Where and how big: the defect regions of an anomaly map (OpenCV, no torch).

A region is a connected component (8-connected) of the anomaly map above the bundle's pixel
threshold, set on good images so that a good part shows any region with at most the target
probability. Its box and area are given in pixels of the original image (the map is at the
model's input size; the scale is applied to OpenCV's component statistics, not to an
upsampled map, so a region costs the same on a 4K frame as on a thumbnail), with its peak
score in the map's raw units. Regions smaller than ``min_area`` original pixels are dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

MAX_REGIONS = 32  # a verdict carries at most this many (largest peaks first)


@dataclass(frozen=True)
class VerdictRules:
    """How regions enter the verdict. ``min_region_area``: regions smaller than this (original
    pixels) are dropped; ``require_region``: an image is anomalous only when its score is over
    the threshold *and* a region is left (a tiny speck over the threshold is then no reject)."""

    min_region_area: int = 0
    require_region: bool = False

    def __post_init__(self) -> None:
        if self.min_region_area < 0:
            raise ValueError(f"min_region_area {self.min_region_area}: expected 0 or more")


@dataclass(frozen=True)
class Region:
    """One defect region, in pixels of the original image."""

    x: int
    y: int
    width: int
    height: int
    area: int
    peak: float

    def to_dict(self) -> dict:
        return asdict(self)


def find_regions(
    amap: np.ndarray,
    pixel_threshold: float | None,
    image_size: tuple[int, int] | None = None,
    min_area: int = 0,
) -> list[Region]:
    """Regions of ``amap`` above ``pixel_threshold``; ``image_size`` (height, width) of the
    original image (default: the map's own). Largest peak first, at most ``MAX_REGIONS``."""
    if pixel_threshold is None:
        return []
    mask = (amap >= pixel_threshold).astype(np.uint8)
    if not mask.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    mh, mw = amap.shape
    ih, iw = image_size or (mh, mw)
    sy, sx = ih / mh, iw / mw
    # the peak of each component: one pass over the map, not one per region
    peaks = np.full(n, -np.inf, np.float64)
    np.maximum.at(peaks, labels[mask > 0], amap[mask > 0].astype(np.float64))
    regions = []
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        area_px = int(area * sx * sy + 0.5)
        if area_px < min_area:
            continue
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        x1, y1 = min(iw, int(np.ceil((x + w) * sx))), min(ih, int(np.ceil((y + h) * sy)))
        regions.append(Region(x0, y0, x1 - x0, y1 - y0, area_px, float(peaks[k])))
    regions.sort(key=lambda r: -r.peak)
    return regions[:MAX_REGIONS]


def draw_regions(image_bgr: np.ndarray, regions: list[Region]) -> np.ndarray:
    """Boxes and areas drawn on an image at the original size (in place; returned)."""
    thickness = max(1, round(max(image_bgr.shape[:2]) / 400))
    for r in regions:
        cv2.rectangle(
            image_bgr, (r.x, r.y), (r.x + r.width - 1, r.y + r.height - 1), (0, 0, 255), thickness
        )
        cv2.putText(
            image_bgr,
            f"{r.area}px",
            (r.x, max(12, r.y - 3)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            (0, 0, 255),
            thickness,
            cv2.LINE_AA,
        )
    return image_bgr
