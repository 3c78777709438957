"""PaDiM (Defard et al., 2020): a Gaussian per grid position over multi-stage features,
Mahalanobis distance as the patch score. ``model.py`` fits it, ``export.py`` writes the bundle,
``options.py`` holds its command-line options."""

from __future__ import annotations

from edgead.detectors.registry import Detector


class Padim(Detector):
    name = "padim"
    summary = "a Gaussian per position of multi-stage features, Mahalanobis distance"
    model_module = "edgead.detectors.padim.model"
    config_class = "PadimConfig"
    export_module = "edgead.detectors.padim.export"
    options_module = "edgead.detectors.padim.options"
