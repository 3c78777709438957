"""SPADE (Cohen & Hoshen, 2020): kNN over pooled features for the image score, then per-pixel
nearest neighbours in the K nearest training images' feature pyramids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgead.detectors.registry import Detector


class Spade(Detector):
    name = "spade"
    summary = "image-level kNN, then per-pixel kNN in the nearest training images"

    @property
    def config_cls(self) -> type:
        from edgead.detectors.spade.model import SpadeConfig

        return SpadeConfig

    def fit_options(self) -> list:
        from edgead.detectors.spade.options import FIT

        return FIT

    def fit(self, config, train, device="cpu", quiet=False, **extra):
        from edgead.detectors.spade.model import fit

        return fit(config, train, device=device, quiet=quiet)

    def rebuild(self, config, state):
        from edgead.detectors.spade.model import rebuild

        return rebuild(config, state)

    def export(self, saved: Any, out: str | Path, overwrite: bool = False, **options: Any) -> Path:
        from edgead.detectors.spade.export import export

        return export(saved, out, overwrite, **options)
