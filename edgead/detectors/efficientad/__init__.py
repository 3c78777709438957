"""EfficientAD (Batzner et al., WACV 2024) and PUAD (Sugawara & Imamura, ICIP 2024): a PDN
teacher, a student and an autoencoder; PUAD adds a Gaussian on the pooled features. The modules:
``config`` (settings), ``networks``, ``data``, ``distill`` (the teacher), ``checkpoints``,
``train`` (the loops), ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgead.detectors.registry import Detector


class EfficientAd(Detector):
    name = "efficientad"
    summary = "student-teacher and autoencoder networks (EfficientAD-S/M), trained on your images"
    uses_validation = True

    @property
    def config_cls(self) -> type:
        from edgead.detectors.efficientad.config import EfficientAdConfig

        return EfficientAdConfig

    def fit_options(self) -> list:
        from edgead.detectors.efficientad.options import FIT

        return FIT

    def fit(self, config, train, device="cpu", quiet=False, **extra):
        from edgead.detectors.efficientad.train import fit

        return fit(config, train, device=device, quiet=quiet, **extra)

    def rebuild(self, config, state):
        from edgead.detectors.efficientad.networks import rebuild

        return rebuild(config, state)

    def input_spec(self, config):
        from edgead.detectors.efficientad.config import input_spec

        return input_spec(config)

    def infer(self, model, batch):
        from edgead.detectors.efficientad.networks import infer

        return infer(model, batch)

    def export(self, saved: Any, out: str | Path, overwrite: bool = False, **options: Any) -> Path:
        from edgead.detectors.efficientad.export import export

        return export(saved, out, overwrite, **options)


class Puad(EfficientAd):
    name = "puad"
    summary = "EfficientAD plus a Gaussian on pooled features (logical anomalies)"

    @property
    def config_cls(self) -> type:
        from edgead.detectors.efficientad.config import PuadConfig

        return PuadConfig

    def fit_options(self) -> list:
        from edgead.detectors.efficientad.options import FIT, PUAD

        return FIT + PUAD
