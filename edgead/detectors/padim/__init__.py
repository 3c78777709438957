"""PaDiM (Defard et al., 2020): a Gaussian per grid position over multi-stage features,
Mahalanobis distance as the patch score. ``model.py`` fits it, ``export.py`` writes the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgead.detectors.registry import Detector


class Padim(Detector):
    name = "padim"
    summary = "a Gaussian per position of multi-stage features, Mahalanobis distance"

    @property
    def config_cls(self) -> type:
        from edgead.detectors.padim.model import PadimConfig

        return PadimConfig

    def fit_options(self) -> list:
        from edgead.detectors.padim.options import FIT

        return FIT

    def fit(self, config, train, device="cpu", quiet=False, **extra):
        from edgead.detectors.padim.model import fit

        return fit(config, train, device=device, quiet=quiet)

    def rebuild(self, config, state):
        from edgead.detectors.padim.model import rebuild

        return rebuild(config, state)

    def export(self, saved: Any, out: str | Path, overwrite: bool = False, **options: Any) -> Path:
        from edgead.detectors.padim.export import export

        return export(saved, out, overwrite, **options)
