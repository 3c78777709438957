"""EfficientAD's training images: loading, normalization, colour jitter, the validation split."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from edgead.bundle.manifest import InputSpec
from edgead.data.images import iter_images
from edgead.errors import EdgeadError
from edgead.runtime.preprocess import INTERPOLATIONS

log = logging.getLogger(__name__)


def load_images(paths: list[Path], spec: InputSpec, quiet: bool, desc: str):
    """Decode and resize once, kept as uint8 (N, 3, H, W); unreadable files are reported."""
    import cv2

    arrays, kept, skipped = [], [], []
    for path, image, error in tqdm(
        iter_images(paths), total=len(paths), desc=desc, disable=quiet or None, leave=False
    ):
        if error is not None:
            log.warning("skipping %s", error)
            skipped.append(str(error))
            continue
        image = cv2.resize(
            image, (spec.width, spec.height), interpolation=INTERPOLATIONS[spec.interpolation]
        )
        arrays.append(image.transpose(2, 0, 1))
        kept.append(path)
    if not arrays:
        return torch.empty(0, 3, spec.height, spec.width, dtype=torch.uint8), kept, skipped
    return torch.from_numpy(np.stack(arrays)), kept, skipped


def normalize(images_u8: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> the network input, exactly as the runtime's preprocess does."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (images_u8.float() * np.float32(1.0 / 255.0) - mean) / std


def color_jitter(x01: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The paper's autoencoder augmentation: one of brightness, contrast, saturation (0.2)."""
    from torchvision.transforms.v2 import functional as TF

    which = int(torch.randint(3, (1,), generator=generator))
    factor = float(0.8 + 0.4 * torch.rand(1, generator=generator))
    fn = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)[which]
    return fn(x01, factor).clamp(0, 1)


def split_validation(
    train: list[Path], validation: list[Path] | None, fraction: float, seed: int
) -> tuple[list[Path], list[Path], str]:
    if validation:
        return train, validation, f"{len(validation)} images of validation/good"
    n_val = max(1, round(len(train) * fraction))
    if len(train) - n_val < 2:
        raise EdgeadError(f"EfficientAD needs at least {n_val + 2} training images")
    order = np.random.default_rng(seed).permutation(len(train))
    val = sorted(train[i] for i in order[:n_val])
    rest = sorted(train[i] for i in order[n_val:])
    return rest, val, f"{n_val} training images held out ({fraction:.0%}, seed {seed})"


# -- checkpoints ---------------------------------------------------------------------------------
