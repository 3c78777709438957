"""EfficientAD (Batzner et al., WACV 2024) and PUAD (Sugawara & Imamura, ICIP 2024): a PDN
teacher, a student and an autoencoder; PUAD adds a Gaussian on the pooled features. The modules:
``config`` (settings), ``networks``, ``data``, ``distill`` (the teacher), ``checkpoints``,
``train`` (the loops), ``model`` (what the registry reads), ``export``, ``options``."""

from __future__ import annotations

from edgead.detectors.registry import Detector


class EfficientAd(Detector):
    name = "efficientad"
    summary = "student-teacher and autoencoder networks (EfficientAD-S/M), trained on your images"
    uses_validation = True
    model_module = "edgead.detectors.efficientad.model"
    config_class = "EfficientAdConfig"
    export_module = "edgead.detectors.efficientad.export"
    options_module = "edgead.detectors.efficientad.options"


class Puad(EfficientAd):
    name = "puad"
    summary = "EfficientAD plus a Gaussian on pooled features (logical anomalies)"
    config_class = "PuadConfig"
    fit_option_groups = ("FIT", "PUAD")
