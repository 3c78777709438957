"""A small, deterministic synthetic inspection set in the MVTec layout, with masks.

Each image shows a machined part (a textured disc with a bore and bolt holes) on a
conveyor-grey background, with a little jitter in position, rotation and lighting.
Defects: scratches (thin dark lines), spots (stains of another colour) and missing
pieces (a bite out of the rim). Same seed, same files, on every machine.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

DEFECTS = ("scratch", "spot", "missing")


def _part(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render a good part; returns (BGR image, mask of the part)."""
    img = np.empty((size, size, 3), np.float32)
    base = 110 + rng.normal(0, 3)
    img[:] = (base, base + 4, base + 8)
    img += rng.normal(0, 4, img.shape).astype(np.float32)  # conveyor grain
    centre = (size / 2 + rng.normal(0, size * 0.01), size / 2 + rng.normal(0, size * 0.01))
    radius = size * 0.36
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - centre[0], yy - centre[1]
    r = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx) - angle
    part = r <= radius
    # brushed-metal texture: fine concentric rings plus radial streaks
    tex = 170 + 12 * np.sin(r * 0.9) + 6 * np.sin(theta * 24) + rng.normal(0, 3, r.shape)
    light = 1.0 + rng.normal(0, 0.02)
    for c, tint in enumerate((1.0, 0.98, 0.95)):
        img[..., c] = np.where(part, tex * tint * light, img[..., c])
    hole = r <= radius * 0.22
    img[hole] = img[hole] * 0.3 + 20
    for k in range(4):
        a = angle + k * math.pi / 2
        hx, hy = centre[0] + radius * 0.62 * math.cos(a), centre[1] + radius * 0.62 * math.sin(a)
        cv2.circle(img, (round(hx), round(hy)), max(2, round(size * 0.03)), (40, 40, 40), -1)
    mask = np.zeros((size, size), np.uint8)
    mask[part] = 1
    return img, mask


def _defect(rng: np.random.Generator, img: np.ndarray, part: np.ndarray, kind: str) -> np.ndarray:
    """Draw one defect on img in place; returns its mask (uint8 0/255)."""
    size = img.shape[0]
    mask = np.zeros((size, size), np.uint8)
    ys, xs = np.nonzero(part)
    i = rng.integers(len(xs))
    cx, cy = int(xs[i]), int(ys[i])
    if kind == "scratch":
        length = size * rng.uniform(0.15, 0.3)
        a = rng.uniform(0, math.pi)
        p0 = (round(cx - length / 2 * math.cos(a)), round(cy - length / 2 * math.sin(a)))
        p1 = (round(cx + length / 2 * math.cos(a)), round(cy + length / 2 * math.sin(a)))
        thickness = max(1, round(size * 0.012))
        cv2.line(img, p0, p1, (60, 55, 50), thickness, cv2.LINE_AA)
        cv2.line(mask, p0, p1, 255, thickness + 1)
    elif kind == "spot":
        axes = (round(size * rng.uniform(0.03, 0.06)), round(size * rng.uniform(0.02, 0.05)))
        colour = (40, 90, 150) if rng.random() < 0.5 else (150, 120, 60)
        cv2.ellipse(img, (cx, cy), axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
        cv2.ellipse(mask, (cx, cy), axes, 0, 0, 360, 255, -1)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    elif kind == "missing":
        # a bite out of the rim: the part's pixels in a circle at its edge become background
        edge = np.nonzero(cv2.morphologyEx(part, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)))
        j = rng.integers(len(edge[0]))
        ex, ey = int(edge[1][j]), int(edge[0][j])
        bite = np.zeros_like(mask)
        cv2.circle(bite, (ex, ey), round(size * rng.uniform(0.05, 0.08)), 255, -1)
        region = (bite > 0) & (part > 0)
        background = 112 + rng.normal(0, 4, (int(region.sum()), 3))
        img[region] = background
        mask[region] = 255
    else:
        raise ValueError(f"unknown defect kind {kind!r}")
    return mask


def generate(
    root: str | Path,
    n_train: int = 30,
    n_test_good: int = 10,
    n_test_defect: int = 5,
    size: int = 224,
    seed: int = 0,
) -> Path:
    """Write the synthetic category to ``root`` (MVTec layout) and return ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)

    def save(path: Path, image: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), image):
            raise OSError(f"{path}: could not write image")

    for i in range(n_train):
        img, _ = _part(rng, size)
        save(root / "train" / "good" / f"{i:03d}.png", np.clip(img, 0, 255).astype(np.uint8))
    for i in range(n_test_good):
        img, _ = _part(rng, size)
        save(root / "test" / "good" / f"{i:03d}.png", np.clip(img, 0, 255).astype(np.uint8))
    for kind in DEFECTS:
        for i in range(n_test_defect):
            img, part = _part(rng, size)
            mask = _defect(rng, img, part, kind)
            save(root / "test" / kind / f"{i:03d}.png", np.clip(img, 0, 255).astype(np.uint8))
            save(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
    return root
