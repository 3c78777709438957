"""Teacher distillation from a pretrained backbone on the user's images (no ImageNet offline)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from edgead.bundle.manifest import InputSpec
from edgead.components.backbones import (
    backbone_info,
    create_feature_backbone,
    layers_at,
)
from edgead.components.common import adaptive_pool_matrix
from edgead.detectors.efficientad.checkpoints import Checkpoints, _rng_state, _set_rng_state
from edgead.detectors.efficientad.config import EfficientAdConfig
from edgead.detectors.efficientad.data import normalize
from edgead.detectors.efficientad.networks import map_size
from edgead.errors import EdgeadError

log = logging.getLogger(__name__)


class DistillationTarget(nn.Module):
    """Backbone features at the PDN's output grid, pooled to ``out_channels``.

    The image is fed to the backbone at twice the model's size (its stride-8 grid then matches
    the PDN's), the feature maps are resized to the PDN grid, concatenated, averaged over 3x3
    neighbourhoods and pooled over channels, as PatchCore's features are.
    """

    def __init__(self, config: EfficientAdConfig, spec: InputSpec, out_size: tuple[int, int]):
        super().__init__()
        info = backbone_info(config.backbone)
        layers = config.layers or layers_at(config.backbone, (8, 16))
        backbone, layers, channels, source = create_feature_backbone(
            config.backbone, layers, config.weights
        )
        if sum(channels) < config.out_channels and not config.layers:
            layers = layers_at(config.backbone, (4, 8, 16, 32))
            backbone, layers, channels, source = create_feature_backbone(
                config.backbone, layers, config.weights
            )
        if sum(channels) < config.out_channels:
            raise EdgeadError(
                f"--layers {','.join(layers)}: {sum(channels)} channels, fewer than the "
                f"teacher's {config.out_channels}"
            )
        self.backbone = backbone.eval()
        self.meta = {
            "name": config.backbone,
            "layers": list(layers),
            "channels": channels,
            "weights": source,
        }
        self.out_size = out_size
        self.register_buffer("pool", adaptive_pool_matrix(sum(channels), config.out_channels))
        scale = torch.tensor(spec.std) / torch.tensor(info.std)
        shift = (torch.tensor(spec.mean) - torch.tensor(info.mean)) / torch.tensor(info.std)
        self.register_buffer("scale", scale.view(1, 3, 1, 1))
        self.register_buffer("shift", shift.view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale + self.shift  # the model's normalization -> the backbone's
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        feats = [
            F.interpolate(f, size=self.out_size, mode="bilinear", align_corners=False)
            for f in self.backbone(x)
        ]
        emb = F.avg_pool2d(torch.cat(feats, 1), 3, 1, 1)
        return torch.einsum("oc,bchw->bohw", self.pool, emb)


def distill_teacher(
    teacher: nn.Module,
    config: EfficientAdConfig,
    images: torch.Tensor,
    spec: InputSpec,
    device: str,
    quiet: bool,
    checkpoints: Checkpoints,
    resume: dict | None,
) -> dict:
    target = DistillationTarget(config, spec, map_size(tuple(config.image_size))).to(device)
    # per-channel statistics of the targets, so that every channel matters equally
    with torch.no_grad():
        feats = torch.cat(
            [
                target(normalize(images[i : i + config.batch_size], spec).to(device)).cpu()
                for i in range(0, len(images), config.batch_size)
            ]
        )
    t_mean = feats.mean((0, 2, 3), keepdim=True).to(device)
    t_std = feats.std((0, 2, 3), keepdim=True).clamp_min(1e-6).to(device)
    del feats
    teacher.to(device).train()
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-4, weight_decay=1e-5)
    generator = torch.Generator().manual_seed(config.seed + 1)
    start = 0
    if resume is not None and resume.get("phase") == "teacher":
        teacher.load_state_dict(resume["teacher"])
        optimizer.load_state_dict(resume["optimizer"])
        _set_rng_state(generator, resume["rng"])
        start = resume["step"]
        log.info("resuming teacher distillation at step %d", start)
    bar = tqdm(
        range(start, config.teacher_steps),
        initial=start,
        total=config.teacher_steps,
        desc="distill teacher",
        disable=quiet or None,
        leave=False,
    )
    loss = torch.zeros(())
    for step in bar:
        idx = torch.randint(len(images), (min(8, len(images)),), generator=generator)
        x = normalize(images[idx], spec).to(device)
        with torch.no_grad():
            y = (target(x) - t_mean) / t_std
        loss = F.mse_loss(teacher(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if checkpoints.due(step + 1, config.teacher_steps):
            checkpoints.save(
                {
                    "phase": "teacher",
                    "step": step + 1,
                    "teacher": teacher.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(generator),
                }
            )
    teacher.eval()
    meta = dict(target.meta)
    meta["teacher"] = (
        f"distilled from {config.backbone} ({meta['weights']}) on {len(images)} images for "
        f"{config.teacher_steps} steps (final loss {float(loss.detach()):.4f})"
    )
    return meta


# -- training ------------------------------------------------------------------------------------
