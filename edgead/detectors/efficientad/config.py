"""EfficientAD and PUAD settings and input contract (see ``model.py`` for the method)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edgead.bundle.manifest import InputSpec
from edgead.components.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from edgead.components.config import ConfigMixin

log = logging.getLogger(__name__)

MAP_PAD = 4  # the PDN's output is the input's /4 grid less 4 cells each side (no padding)


@dataclass
class EfficientAdConfig(ConfigMixin):
    model_size: str = "small"  # small | medium
    image_size: tuple[int, int] = (256, 256)
    steps: int = 70_000
    teacher: str | None = None  # teacher weights file; None: distill one from ``backbone``
    backbone: str = "efficientnet_lite0"
    weights: str | None = None
    layers: tuple[str, ...] | None = None
    teacher_steps: int = 10_000
    teacher_data: str | None = None  # images to distill on (default: the training images)
    penalty_data: str | None = None  # the paper's ImageNet penalty: any folder of images
    out_channels: int = 384
    lr: float = 1e-4
    weight_decay: float = 1e-5
    hard_quantile: float = 0.999
    validation_fraction: float = 0.1
    checkpoint: str | None = None
    checkpoint_every: int = 1000
    puad: bool = False
    puad_feature: str = "student"  # student | teacher
    puad_weight: float = 1.0
    blur_sigma: float = 0.0
    seed: int = 0
    batch_size: int = 8  # for the passes that are not training (statistics, evaluation)


@dataclass
class PuadConfig(EfficientAdConfig):
    puad: bool = True


def input_spec(config: EfficientAdConfig) -> InputSpec:
    """256x256 with ImageNet normalization: what the published teachers were trained on."""
    h, w = config.image_size
    return InputSpec(h, w, mean=IMAGENET_MEAN, std=IMAGENET_STD)


# -- networks ------------------------------------------------------------------------------------
