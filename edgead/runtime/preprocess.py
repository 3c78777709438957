"""Image -> network input, exactly as the manifest's InputSpec says.

This one function feeds both the PyTorch model (during fit and evaluation) and the runtime,
so the two can never disagree on preprocessing.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgead.bundle.manifest import InputSpec

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


def preprocess(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 3xHxW, resized and normalized per ``spec``."""
    if spec.interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {spec.interpolation!r}")
    if image.shape[:2] != (spec.height, spec.width):
        image = cv2.resize(
            image, (spec.width, spec.height), interpolation=INTERPOLATIONS[spec.interpolation]
        )
    if spec.channel_order == "BGR":
        image = image[:, :, ::-1]
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    out = (image.astype(np.float32) * scale - mean) / std
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def preprocess_batch(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    return (
        np.stack([preprocess(im, spec) for im in images])
        if images
        else np.empty((0, 3, spec.height, spec.width), np.float32)
    )
