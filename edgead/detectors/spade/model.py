"""SPADE (Cohen & Hoshen, "Sub-Image Anomaly Detection with Deep Pyramid Correspondences", 2020).

Image level: the mean distance from the test image's globally pooled deepest feature to its k
nearest training images'. Pixel level: for the K nearest training images, each test feature
(strides 4, 8, 16) is scored by its distance to the nearest feature anywhere in those K
images' maps of the same stage; the stages are upsampled (bilinear) to the finest grid,
averaged, then upsampled to the input size and blurred.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgead.components.backbones import create_feature_backbone, inference_ready, layers_at
from edgead.components.common import anomaly_map, input_spec, training_batches
from edgead.components.config import ConfigMixin
from edgead.errors import EdgeadError
from edgead.runtime.memory import human


@dataclass
class SpadeConfig(ConfigMixin):
    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] | None = None  # pixel-level layers; default strides 4, 8, 16
    pooled_layer: str | None = None  # image-level layer, globally pooled; default stride 32
    weights: str | None = None
    image_size: tuple[int, int] = (224, 224)
    k: int = 50  # image-level neighbours
    gallery_k: int = 5  # K: nearest training images searched at pixel level
    blur_sigma: float = 4.0
    seed: int = 0
    augment: str = "none"  # photometric: fit on varied copies too (data/photometric)
    batch_size: int = 16


class SpadeEmbedder(nn.Module):
    """(B, 3, H, W) -> per-stage maps (B, h_l, w_l, C_l) channels last, and pooled (B, C)."""

    def __init__(self, backbone: nn.Module, n_pixel_layers: int):
        super().__init__()
        self.backbone = backbone
        self.n_pixel_layers = n_pixel_layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.backbone(x)
        maps = [f.permute(0, 2, 3, 1).contiguous() for f in feats[: self.n_pixel_layers]]
        pooled = feats[-1].mean(dim=(2, 3))
        return (*maps, pooled)


def output_names(n_pixel_layers: int) -> list[str]:
    return [f"features_{i}" for i in range(n_pixel_layers)] + ["pooled"]


class SpadeModel(nn.Module):
    def __init__(
        self,
        embedder: SpadeEmbedder,
        pooled: torch.Tensor,
        gallery: list[torch.Tensor],
        config: SpadeConfig,
    ):
        super().__init__()
        self.embedder = embedder
        self.register_buffer("train_pooled", pooled)  # (N, C)
        for i, g in enumerate(gallery):
            self.register_buffer(f"gallery_{i}", g)  # (N, h_l, w_l, C_l)
        self.n_layers = len(gallery)
        self.config = config

    def gallery(self, i: int) -> torch.Tensor:
        return getattr(self, f"gallery_{i}")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = self.embedder(x)
        maps, pooled = outs[:-1], outs[-1]
        k = min(self.config.k, self.train_pooled.shape[0])
        dist = torch.cdist(pooled, self.train_pooled)
        knn = dist.topk(k, largest=False)
        image_scores = knn.values.mean(1)
        neighbours = knn.indices[:, : min(self.config.gallery_k, k)]
        grid = maps[0].shape[1:3]
        patch = []
        for b in range(x.shape[0]):
            per_layer = []
            for i, fmap in enumerate(maps):
                h, w, c = fmap.shape[1:]
                gal = self.gallery(i)[neighbours[b]].reshape(-1, c)
                d = torch.cdist(fmap[b].reshape(-1, c), gal).min(1).values.reshape(1, 1, h, w)
                per_layer.append(F.interpolate(d, size=grid, mode="bilinear", align_corners=False))
            patch.append(torch.cat(per_layer).mean(0)[0])
        patch = torch.stack(patch)
        amap = anomaly_map(patch, x.shape[-2:], self.config.blur_sigma)
        out = {f"features_{i}": m for i, m in enumerate(maps)}
        return out | {
            "pooled": pooled,
            "patch_scores": patch,
            "image_score": image_scores,
            "anomaly_map": amap,
        }


def build_embedder(config: SpadeConfig, weights: str | None) -> tuple[SpadeEmbedder, dict]:
    layers = tuple(config.layers or layers_at(config.backbone, (4, 8, 16)))
    pooled = config.pooled_layer or layers_at(config.backbone, (32,))[0]
    backbone, _, channels, source = create_feature_backbone(
        config.backbone, (*layers, pooled), weights
    )
    config.layers, config.pooled_layer = layers, pooled
    meta = {
        "name": config.backbone,
        "layers": list(layers),
        "pooled_layer": pooled,
        "channels": channels,
        "weights": source,
    }
    return SpadeEmbedder(backbone, len(layers)).eval(), meta


@torch.no_grad()
def fit(
    config: SpadeConfig, train_paths: list[Path], device: str = "cpu", quiet: bool = False
) -> tuple[SpadeModel, dict]:
    if config.k < 1 or not 1 <= config.gallery_k <= config.k:
        raise EdgeadError("SPADE needs k >= 1 and 1 <= K (--gallery-k) <= k")
    t0 = time.perf_counter()
    embedder, meta = build_embedder(config, config.weights)
    embedder = embedder.to(device)
    fast = inference_ready(copy.deepcopy(embedder))  # for the features; the model keeps embedder
    spec = input_spec(config)
    pooled, gallery, skipped = [], [[] for _ in config.layers], []
    for _, batch, errors in training_batches(train_paths, spec, config, quiet):
        skipped += [str(e) for e in errors]
        if not len(batch):
            continue
        outs = fast(batch.to(device))
        for i, fmap in enumerate(outs[:-1]):
            gallery[i].append(fmap.cpu())
        pooled.append(outs[-1].cpu())
    if not pooled:
        raise EdgeadError("no readable training images")
    gallery_t = [torch.cat(g) for g in gallery]
    model = SpadeModel(embedder.cpu(), torch.cat(pooled), gallery_t, config).eval()
    size = sum(g.numel() * 4 for g in gallery_t)
    report = {
        "backbone": meta,
        # images, not gallery entries: with --augment each image also adds a varied copy
        "n_train_images": len(train_paths) - len(skipped),
        "skipped": skipped,
        "model_size": f"gallery of {len(model.train_pooled)} views ({human(size)})",
        "fit_seconds": round(time.perf_counter() - t0, 2),
    }
    return model, report


def rebuild(config: SpadeConfig, state: dict[str, torch.Tensor]) -> SpadeModel:
    embedder, _ = build_embedder(config, "none")
    gallery = [torch.empty_like(state[f"gallery_{i}"]) for i in range(len(config.layers))]
    model = SpadeModel(embedder, torch.empty_like(state["train_pooled"]), gallery, config)
    model.load_state_dict(state, strict=True)
    return model.eval()
