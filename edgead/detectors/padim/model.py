"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework", ICPR 2020).

Features from the first three stages (strides 4, 8, 16), resized (nearest) to the first grid
and concatenated; a seeded random subset of d channels; a Gaussian per grid position with
covariance + epsilon * I. Score: Mahalanobis distance per position, upsampled and blurred;
image score = max of the map.

Moments are accumulated in float64 over batches, never holding all training features. What
is stored for scoring is the mean and the whitening factor W = L^-1 of the Cholesky factor
(cov = L L^T), so that distance = ||W (x - mean)||: a sum of squares, never negative,
cheaper and steadier than an explicit inverse.
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
from edgead.runtime.memory import available_bytes, human


@dataclass
class PadimConfig(ConfigMixin):
    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] | None = None
    weights: str | None = None
    image_size: tuple[int, int] = (224, 224)
    n_features: int | None = None  # None: 100, or 550 for wide_resnet50_2 (the paper's)
    # covariance regularization: epsilon_relative x the mean feature variance (scales with the
    # features; 0.1 measured best balanced on the shared data, README PaDiM), or ``epsilon``
    # added as it is when given (the paper's 0.01 is absolute)
    epsilon: float | None = None
    epsilon_relative: float = 0.1
    blur_sigma: float = 4.0
    seed: int = 0
    # fit on a varied copy of each image too (data/photometric): measured to keep PaDiM's false
    # rejects under a 10% darker view at 0 of 105 instead of 20, at no runtime cost
    augment: str = "photometric"
    batch_size: int = 16


class PadimEmbedder(nn.Module):
    """(B, 3, H, W) -> (B, h, w, d): concatenated multi-stage features, channel subset."""

    def __init__(self, backbone: nn.Module, channel_index: torch.Tensor):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("channel_index", channel_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        size = feats[0].shape[-2:]
        emb = torch.cat(
            [feats[0]] + [F.interpolate(f, size=size, mode="nearest") for f in feats[1:]], 1
        )
        emb = torch.index_select(emb, 1, self.channel_index)
        return emb.permute(0, 2, 3, 1).contiguous()


class PadimModel(nn.Module):
    def __init__(
        self,
        embedder: PadimEmbedder,
        mean: torch.Tensor,
        whitening: torch.Tensor,
        config: PadimConfig,
    ):
        super().__init__()
        self.embedder = embedder
        self.register_buffer("mean", mean)  # (P, d)
        self.register_buffer("whitening", whitening)  # (P, d, d), lower triangular
        self.config = config

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.embedder(x)
        b, h, w, d = emb.shape
        delta = emb.reshape(b, h * w, d) - self.mean
        z = torch.matmul(self.whitening, delta.permute(1, 2, 0))  # (P, d, B), one bmm
        patch = torch.linalg.vector_norm(z, dim=1).T.reshape(b, h, w)
        amap = anomaly_map(patch, x.shape[-2:], self.config.blur_sigma)
        return {
            "embedding": emb,
            "patch_scores": patch,
            "image_score": amap.amax(dim=(1, 2)),
            "anomaly_map": amap,
        }


def default_features(config: PadimConfig) -> int:
    return config.n_features or (550 if config.backbone == "wide_resnet50_2" else 100)


def build_embedder(config: PadimConfig, weights: str | None) -> tuple[PadimEmbedder, dict]:
    layers = config.layers or layers_at(config.backbone, (4, 8, 16))
    backbone, layers, channels, source = create_feature_backbone(config.backbone, layers, weights)
    config.layers = layers
    total = sum(channels)
    d = default_features(config)
    if not 0 < d <= total:
        raise EdgeadError(f"--n-features {d}: must be between 1 and {total} (the layers' channels)")
    generator = torch.Generator().manual_seed(config.seed)
    index = torch.sort(torch.randperm(total, generator=generator)[:d]).values
    meta = {
        "name": config.backbone,
        "layers": list(layers),
        "channels": channels,
        "weights": source,
    }
    return PadimEmbedder(backbone, index).eval(), meta


def statistics_bytes(positions: int, d: int, itemsize: int = 4) -> int:
    """Memory of the per-position Gaussians: mean and whitening factor."""
    return positions * d * (d + 1) * itemsize


@torch.no_grad()
def fit(
    config: PadimConfig, train_paths: list[Path], device: str = "cpu", quiet: bool = False
) -> tuple[PadimModel, dict]:
    t0 = time.perf_counter()
    embedder, meta = build_embedder(config, config.weights)
    embedder = embedder.to(device)
    fast = inference_ready(copy.deepcopy(embedder))  # for the features; the model keeps embedder
    spec = input_spec(config)
    with torch.no_grad():
        probe = embedder(torch.zeros(1, 3, spec.height, spec.width, device=device))
    _, h, w, d = probe.shape
    positions = h * w
    need = positions * d * d * 8 + statistics_bytes(positions, d)  # float64 sums + result
    free = available_bytes()
    if free is not None and need > 0.8 * free:
        raise EdgeadError(
            f"PaDiM with d={d} on a {h}x{w} grid needs {human(need)} to fit, "
            f"{human(free)} is available: lower --n-features or --image-size"
        )
    total = torch.zeros(positions, d, dtype=torch.float64)
    outer = torch.zeros(positions, d, d, dtype=torch.float64)
    n, skipped = 0, []
    for _, batch, errors in training_batches(train_paths, spec, config, quiet):
        skipped += [str(e) for e in errors]
        if not len(batch):
            continue
        emb = fast(batch.to(device)).reshape(len(batch), positions, d).double().cpu()
        total += emb.sum(0)
        outer += torch.einsum("bpd,bpe->pde", emb, emb)
        n += len(batch)
    if n < 2:
        raise EdgeadError("PaDiM needs at least 2 readable training images")
    mean = total / n
    cov = (outer - n * mean[:, :, None] * mean[:, None, :]) / (n - 1)
    del outer
    # the scale --epsilon acts on (benchmarks/padim_epsilon.py: README, PaDiM)
    variance = float(torch.diagonal(cov, dim1=1, dim2=2).mean())
    epsilon = config.epsilon if config.epsilon is not None else config.epsilon_relative * variance
    cov += epsilon * torch.eye(d, dtype=torch.float64)
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info.max()) > 0:
        raise EdgeadError("covariance not positive definite: raise --epsilon")
    eye = torch.eye(d, dtype=torch.float64).expand(positions, d, d)
    whitening = torch.linalg.solve_triangular(chol, eye, upper=False)
    model = PadimModel(embedder.cpu(), mean.float(), whitening.float(), config).eval()
    seconds = round(time.perf_counter() - t0, 2)
    report = {
        "backbone": meta,
        # images, not feature rows: with --augment each image also fits a varied copy
        "n_train_images": len(train_paths) - len(skipped),
        "n_fitted_views": n,
        "skipped": skipped,
        "model_size": f"{positions} Gaussians of dim {d} ({human(statistics_bytes(positions, d))})",
        "fit_seconds": seconds,
        "details": {
            "covariance regularization": f"epsilon {epsilon:.3g} = {epsilon / variance:.2g} x the "
            f"mean feature variance {variance:.3g}"
            + (" (--epsilon)" if config.epsilon is not None else " (--epsilon-relative)"),
        },
    }
    return model, report


def rebuild(config: PadimConfig, state: dict[str, torch.Tensor]) -> PadimModel:
    embedder, _ = build_embedder(config, "none")
    model = PadimModel(
        embedder, torch.empty_like(state["mean"]), torch.empty_like(state["whitening"]), config
    )
    model.load_state_dict(state, strict=True)
    return model.eval()
