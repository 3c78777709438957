"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Locally aware patch features from two mid-level layers (3x3 neighbourhood average, resized to
the first layer's grid, concatenated and projected to a fixed dimension), a greedy k-center
coreset of the training patches as memory bank, and nearest-neighbour distance as patch score.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgead.components.backbones import create_feature_backbone, inference_ready
from edgead.components.common import (
    adaptive_pool_matrix,
    anomaly_map,
    input_spec,
    training_batches,
)
from edgead.components.config import ConfigMixin
from edgead.components.coreset import (
    chunk_plan,
    estimate_seconds,
    k_center_greedy,
    k_center_greedy_chunked,
)
from edgead.runtime.memory import peak_mb, reset_peak

log = logging.getLogger(__name__)


@dataclass
class PatchCoreConfig(ConfigMixin):
    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] | None = None
    weights: str | None = None
    image_size: tuple[int, int] = (224, 224)
    embed_dim: int = 1024
    coreset_ratio: float = 0.1
    coreset_projection: int | None = 128
    # rows per chunk of the composable coreset (components/coreset.py); fewer rows than about
    # 1.5 chunks: the one greedy over every patch (tire, bottle, juice at 224 px). 0: always the
    # one greedy. Measured on real features: benchmarks/results/coreset_scale.jsonl
    coreset_chunk: int = 250_000
    # with chunks: the share of the picks made by the one greedy over every patch, after them.
    # 0.2: covering radius within 5% of the one greedy's on the real cases measured (pooled
    # 224 px: 1.060x at 0.1, 1.032x at 0.2; tire 448 px: 1.008x both), at about the same time
    coreset_refine: float = 0.2
    reweight: bool = False
    reweight_neighbors: int = 9
    blur_sigma: float = 4.0
    seed: int = 0
    augment: str = "none"  # photometric: fit on varied copies too (data/photometric)
    batch_size: int = 16


class PatchEmbedder(nn.Module):
    """Image batch (B, 3, H, W) -> locally aware patch embeddings (B, h, w, D), channels last.

    This whole module is what the bundle's ONNX graph contains.
    """

    def __init__(self, backbone: nn.Module, channels: list[int], embed_dim: int):
        super().__init__()
        self.backbone = backbone
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        total = sum(channels)
        self.embed_dim = min(embed_dim, total)
        # projection to a fixed dimension as a fixed 1x1 conv (adaptive channel averaging)
        weight = adaptive_pool_matrix(total, self.embed_dim)[:, :, None, None]
        self.register_buffer("projection", weight, persistent=True)
        self.project = self.embed_dim < total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.pool(f) for f in self.backbone(x)]
        size = feats[0].shape[-2:]
        feats = [feats[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]
        ]
        emb = torch.cat(feats, dim=1)
        if self.project:
            emb = F.conv2d(emb, self.projection)
        return emb.permute(0, 2, 3, 1).contiguous()


class PatchCoreModel(nn.Module):
    """The fitted detector: embedder + memory bank; scores images in PyTorch."""

    def __init__(self, embedder: PatchEmbedder, memory_bank: torch.Tensor, config: PatchCoreConfig):
        super().__init__()
        self.embedder = embedder
        self.register_buffer("memory_bank", memory_bank)
        self.config = config

    def nearest(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, D) -> distance to and index of the nearest memory-bank patch, per row.

        |x|^2 - 2 x.b + |b|^2 as one matrix product and a min, the square root of the minima
        only (what torch.cdist computes for inputs this size, without its full square-root
        pass over the P x N matrix).
        """
        bank = self.memory_bank
        d2 = torch.addmm((bank * bank).sum(1)[None], emb, bank.T, alpha=-2.0)
        d2 += (emb * emb).sum(1, keepdim=True)
        val, idx = d2.min(dim=1)
        return val.clamp_min(0).sqrt(), idx

    def image_score(self, emb: torch.Tensor, dist: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Max patch score, optionally re-weighted as in the paper (Eq. 7)."""
        best = int(torch.argmax(dist))
        score = dist[best]
        if not self.config.reweight:
            return score
        anchor = self.memory_bank[idx[best]]
        k = min(self.config.reweight_neighbors, self.memory_bank.shape[0])
        support = torch.cdist(anchor[None], self.memory_bank)[0].topk(k, largest=False).indices
        d = torch.linalg.vector_norm(self.memory_bank[support] - emb[best], dim=1)
        weight = 1.0 - torch.softmax(d, dim=0)[0]
        return weight * score

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.embedder(x)
        b, h, w, d = emb.shape
        patch_scores, image_scores = [], []
        for i in range(b):
            flat = emb[i].reshape(-1, d)
            dist, idx = self.nearest(flat)
            patch_scores.append(dist.reshape(h, w))
            image_scores.append(self.image_score(flat, dist, idx))
        patch = torch.stack(patch_scores)
        amap = anomaly_map(patch, x.shape[-2:], self.config.blur_sigma)
        return {
            "embedding": emb,
            "patch_scores": patch,
            "image_score": torch.stack(image_scores),
            "anomaly_map": amap,
        }


def build_embedder(config: PatchCoreConfig, weights: str | None) -> tuple[PatchEmbedder, dict]:
    backbone, layers, channels, source = create_feature_backbone(
        config.backbone, config.layers, weights
    )
    config.layers = layers
    embedder = PatchEmbedder(backbone, channels, config.embed_dim).eval()
    return embedder, {
        "name": config.backbone,
        "layers": list(layers),
        "channels": channels,
        "weights": source,
    }


@torch.no_grad()
def fit(
    config: PatchCoreConfig, train_paths: list[Path], device: str = "cpu", quiet: bool = False
) -> tuple[PatchCoreModel, dict]:
    """Fit PatchCore on good images. Returns the model and a fit report (times, counts)."""
    t0 = time.perf_counter()
    reset_peak()  # this fit's own peak, also in a worker that fitted another product before
    torch.manual_seed(config.seed)
    embedder, backbone_meta = build_embedder(config, config.weights)
    embedder = embedder.to(device)
    fast = inference_ready(copy.deepcopy(embedder))  # for the features; the model keeps embedder
    spec = input_spec(config)
    chunks, skipped = [], []
    for _, batch, errors in training_batches(train_paths, spec, config, quiet):
        skipped += [str(e) for e in errors]
        if len(batch):
            emb = fast(batch.to(device))
            chunks.append(emb.reshape(-1, emb.shape[-1]).cpu())
    if not chunks:
        from edgead.errors import EdgeadError

        raise EdgeadError("no readable training images")
    features = torch.cat(chunks)
    t_feat = time.perf_counter()
    peak_features = peak_mb()
    n_select = max(1, round(config.coreset_ratio * features.shape[0]))
    # on the fit's device: the plain greedy on CUDA, the pruned kernel on the CPU
    chunk = config.coreset_chunk
    if chunk and len(chunk_plan(features.shape[0], n_select, chunk)) == 1:
        chunk = 0  # one chunk: the one greedy
    # said before the long stage starts, so a wait that does not fit the plan can be stopped
    estimate = estimate_seconds(
        features,
        n_select,
        chunk,
        config.coreset_projection,
        config.seed,
        config.coreset_refine,
        device,
    )
    if estimate is not None:
        log.info(
            "coreset: %s patches -> %s picks (bank %.0f MiB); about %.0f s (estimated in "
            "%.1f s from samples of %s and %s patches)",
            f"{features.shape[0]:,}",
            f"{n_select:,}",
            n_select * features.shape[1] * 4 / 2**20,
            estimate["seconds"],
            estimate["measured_in_seconds"],
            f"{estimate['samples'][0][0]:,}",
            f"{estimate['samples'][1][0]:,}",
        )
    t_estimated = time.perf_counter()
    if chunk:
        idx = k_center_greedy_chunked(
            features,
            n_select,
            chunk,
            config.coreset_projection,
            config.seed,
            quiet,
            device,
            config.coreset_refine,
        )
    else:
        idx = k_center_greedy(
            features, n_select, config.coreset_projection, config.seed, quiet, device=device
        )
    bank = features[idx].contiguous()
    t_core = time.perf_counter()
    coreset_s = t_core - t_estimated
    model = PatchCoreModel(embedder.cpu(), bank, config).eval()
    report = {
        "backbone": backbone_meta,
        "n_train_images": len(train_paths) - len(skipped),
        "skipped": skipped,
        "n_patches": int(features.shape[0]),
        "memory_bank": list(bank.shape),
        "model_size": f"memory bank {bank.shape[0]}x{bank.shape[1]}",
        "feature_seconds": round(t_feat - t0, 2),
        "coreset_seconds": round(coreset_s, 2),
        # the estimate said before the coreset ran (large fits only), with its samples
        "coreset_estimate": estimate,
        "coreset_chunk": chunk or None,
        "fit_seconds": round(t_core - t0, 2),
        # the fit process's peak resident memory after each stage (MiB; features included)
        "peak_memory_mb": {"features": peak_features, "coreset": peak_mb()},
    }
    chunks_said = f", chunks of {chunk:,}" if chunk else ""
    report["details"] = {
        "fit stages": f"features {t_feat - t0:.1f} s ({features.shape[0]:,} patches), "
        f"coreset {coreset_s:.1f} s ({bank.shape[0]:,} picks{chunks_said}"
        + (f"; estimated {estimate['seconds']:.0f} s" if estimate else "")
        + ")",
    }
    if peak_features is not None:
        report["details"]["peak memory"] = (
            f"{peak_features:,} MiB after the features, {report['peak_memory_mb']['coreset']:,} "
            "MiB after the coreset"
        )
    return model, report


def rebuild(config: PatchCoreConfig, state: dict[str, torch.Tensor]) -> PatchCoreModel:
    """A saved model from its config and state dict (architecture only; no weight files)."""
    embedder, _ = build_embedder(config, "none")
    model = PatchCoreModel(embedder, torch.empty_like(state["memory_bank"]), config)
    model.load_state_dict(state, strict=True)
    return model.eval()
