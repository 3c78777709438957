"""Pieces shared by the detectors: coreset sampling, Gaussian blur, feature extraction."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from edgead.bundle.manifest import InputSpec
from edgead.data.images import iter_images
from edgead.data.photometric import PhotometricJitter
from edgead.errors import ImageDecodeError
from edgead.runtime.postprocess import gaussian_kernel_size
from edgead.runtime.preprocess import preprocess

log = logging.getLogger(__name__)


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) maps with reflect padding.

    Same kernel size and border rule as the runtime's OpenCV blur (BORDER_REFLECT_101).
    """
    if sigma <= 0:
        return maps
    k = gaussian_kernel_size(sigma)
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(maps.dtype)
    pad = k // 2
    out = F.pad(maps, (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, k))
    return F.conv2d(out, kernel.view(1, 1, k, 1))


def anomaly_map(patch: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """(B, h, w) patch scores -> (B, H, W) maps: bilinear upsampling, then Gaussian blur."""
    amap = F.interpolate(patch[:, None], size=size, mode="bilinear", align_corners=False)
    return gaussian_blur(amap, sigma)[:, 0]


def input_spec(config) -> InputSpec:
    """The input contract of a config with ``backbone`` and ``image_size``: the backbone's
    pretrained normalization at the configured size."""
    from edgead.components.backbones import backbone_info

    info = backbone_info(config.backbone)
    return InputSpec(config.image_size[0], config.image_size[1], mean=info.mean, std=info.std)


def infer(model: torch.nn.Module, batch: torch.Tensor):
    """Preprocessed batch -> (image scores (B,), anomaly maps (B, H, W)) as numpy."""
    out = model(batch)
    return out["image_score"].numpy(), out["anomaly_map"].numpy()


def adaptive_pool_matrix(in_dim: int, out_dim: int) -> torch.Tensor:
    """The (out_dim, in_dim) matrix of ``adaptive_avg_pool1d`` over channels.

    As a matrix it exports to ONNX as a plain 1x1 convolution and compiles in TensorRT.
    """
    m = torch.zeros(out_dim, in_dim)
    for i in range(out_dim):
        start = (i * in_dim) // out_dim
        end = -(-((i + 1) * in_dim) // out_dim)
        m[i, start:end] = 1.0 / (end - start)
    return m


def batched_inputs(
    paths: Sequence[Path],
    spec: InputSpec,
    batch_size: int,
    desc: str,
    quiet: bool = False,
    augment: PhotometricJitter | None = None,
    seed: int = 0,
) -> Iterator[tuple[list[Path], torch.Tensor, list[ImageDecodeError]]]:
    """Decode and preprocess images in batches; unreadable files are reported, not fatal.
    With ``augment``, each image is followed by its varied copies (seeded), under its name."""
    rng = np.random.default_rng(seed)
    batch: list[np.ndarray] = []
    names: list[Path] = []
    errors: list[ImageDecodeError] = []
    bar = tqdm(total=len(paths), desc=desc, disable=quiet or None, unit="img", leave=False)
    for path, image, error in iter_images(paths):
        bar.update(1)
        if error is not None:
            log.warning("skipping %s", error)
            errors.append(error)
            continue
        for im in [image, *(augment.variants(image, rng) if augment else [])]:
            batch.append(preprocess(im, spec))
            names.append(path)
            if len(batch) == batch_size:
                yield names, torch.from_numpy(np.stack(batch)), errors
                batch, names, errors = [], [], []
    bar.close()
    if batch or errors:
        yield names, torch.from_numpy(np.stack(batch)) if batch else torch.empty(0), errors


def training_batches(
    paths: Sequence[Path], spec: InputSpec, config: Any, quiet: bool = False
) -> Iterator[tuple[list[Path], torch.Tensor, list[ImageDecodeError]]]:
    """The training images of a detector whose config has ``batch_size``, ``augment`` and
    ``seed``, in batches, each followed by its varied copies when ``augment`` asks for them."""
    from edgead.data.photometric import AUGMENTATIONS

    return batched_inputs(
        paths,
        spec,
        config.batch_size,
        "features",
        quiet,
        augment=AUGMENTATIONS[config.augment],
        seed=config.seed,
    )
