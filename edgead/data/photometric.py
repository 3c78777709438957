"""Mild photometric changes of RGB uint8 images (OpenCV, no torch): the kind a new lamp, a
cleaned lens or a new batch of material brings. Fixed shifts for ``benchmarks/shift.py``, and
random ones for fitting on good images with such variation (``--augment photometric``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Every pixel times ``factor`` (1.1: 10% brighter), clipped."""
    return np.clip(image.astype(np.float32) * factor + 0.5, 0, 255).astype(np.uint8)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Distances from the image's mean grey times ``factor``, clipped."""
    mean = float(image.mean())
    out = (image.astype(np.float32) - mean) * factor + mean + 0.5
    return np.clip(out, 0, 255).astype(np.uint8)


def gamma(image: np.ndarray, g: float) -> np.ndarray:
    """``255 * (x / 255) ** g`` through a lookup table (g < 1 brightens the darks)."""
    table = np.clip(255.0 * (np.arange(256) / 255.0) ** g + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(image, table)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (a slightly defocused lens)."""
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encoded and decoded as JPEG at ``quality`` (a camera or a link that compresses)."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# the shifts benchmarks/shift.py applies to good and defective test images
SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda im: im,
    "brightness -10%": lambda im: brightness(im, 0.9),
    "brightness +10%": lambda im: brightness(im, 1.1),
    "gamma 0.9": lambda im: gamma(im, 0.9),
    "gamma 1.1": lambda im: gamma(im, 1.1),
    "blur sigma 1": lambda im: blur(im, 1.0),
    "jpeg 70": lambda im: jpeg(im, 70),
}


@dataclass(frozen=True)
class PhotometricJitter:
    """Random mild variation for fitting: brightness and contrast x U(1 - r, 1 + r), gamma
    U(1 - r, 1 + r), and with probability 1/2 a blur of sigma U(0, blur). ``copies`` varied
    copies per training image join the original."""

    copies: int = 1
    spread: float = 0.1
    blur: float = 1.0

    def variants(self, image: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        out = []
        r = self.spread
        for _ in range(self.copies):
            im = brightness(image, rng.uniform(1 - r, 1 + r))
            im = contrast(im, rng.uniform(1 - r, 1 + r))
            im = gamma(im, rng.uniform(1 - r, 1 + r))
            if rng.random() < 0.5:
                im = blur(im, rng.uniform(0, self.blur))
            out.append(im)
        return out


AUGMENTATIONS = {"none": None, "photometric": PhotometricJitter()}
