"""A toy detector defined inside the test suite: one file, no other file touched. Importing it
registers it (conftest does), and it gets ``edgead fit toy``, ``edgead export toy`` and every
contract test over the registry.

The method: a fixed random 4x4/stride-4 convolution as the "backbone"; the mean training
feature; the distance to it as the patch score, computed inside the graph (scorer
``patch_scores``, which the runtime already has)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from edgead.detectors.registry import Detector


@dataclass
class ToyConfig:
    image_size: tuple[int, int] = (64, 64)
    channels: int = 8
    blur_sigma: float = 2.0
    seed: int = 0
    batch_size: int = 8

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ToyConfig:
        return cls(**{**d, "image_size": tuple(d["image_size"])})


def _modules():
    """The torch pieces, built on first use (the detector's registration needs no torch)."""
    import torch
    from torch import nn

    from edgead.components.common import anomaly_map

    class Distance(nn.Module):
        def __init__(self, config: ToyConfig, mean: torch.Tensor):
            super().__init__()
            g = torch.Generator().manual_seed(config.seed)
            self.conv = nn.Conv2d(3, config.channels, 4, stride=4)
            with torch.no_grad():
                self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.2)
                self.conv.bias.zero_()
            self.register_buffer("mean", mean)

        def features(self, x):
            return self.conv(x).permute(0, 2, 3, 1)

        def forward(self, x):
            return (self.features(x) - self.mean).square().sum(-1).sqrt()  # (B, h, w)

    class ToyModel(nn.Module):
        def __init__(self, config: ToyConfig, mean: torch.Tensor):
            super().__init__()
            self.config = config
            self.distance = Distance(config, mean)

        @torch.no_grad()
        def forward(self, x):
            patch = self.distance(x)
            return {
                "patch_scores": patch,
                "image_score": patch.flatten(1).max(1).values,
                "anomaly_map": anomaly_map(patch, x.shape[-2:], self.config.blur_sigma),
            }

    return torch, ToyModel


class Toy(Detector):
    name = "toy"
    summary = "a test detector: distance to the mean feature of a random convolution"

    @property
    def config_cls(self) -> type:
        return ToyConfig

    def fit_options(self) -> list:
        return [click.option("--channels", default=8, show_default=True, help="Features.")]

    def input_spec(self, config: ToyConfig) -> Any:
        from edgead.bundle.manifest import InputSpec

        return InputSpec(*config.image_size, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    def fit(self, config, train, device="cpu", quiet=False, **extra):
        from edgead.components.common import batched_inputs

        torch, toy_model = _modules()
        model = toy_model(config, torch.zeros(config.channels)).eval()
        feats = []
        with torch.no_grad():
            for _, batch, _ in batched_inputs(train, self.input_spec(config), 8, "toy", True):
                if len(batch):
                    feats.append(model.distance.features(batch).reshape(-1, config.channels))
        model.distance.mean.copy_(torch.cat(feats).mean(0))
        report = {
            "backbone": {"name": "random conv"},
            "n_train_images": len(train),
            "skipped": [],
            "model_size": f"{config.channels} channels",
            "fit_seconds": 0.0,
        }
        return model, report

    def rebuild(self, config, state):
        torch, toy_model = _modules()
        model = toy_model(config, torch.zeros(config.channels))
        model.load_state_dict(state)
        return model.eval()

    def export(self, saved: Any, out: str | Path, overwrite: bool = False, **options: Any) -> Path:
        from edgead.bundle.manifest import ScorerSpec
        from edgead.export.common import export_bundle

        return export_bundle(
            saved,
            out,
            overwrite,
            saved.model.distance,
            ["patch_scores"],
            lambda writer: ScorerSpec("patch_scores", {"output": "patch_scores"}),
            **options,
        )
