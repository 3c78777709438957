"""SPADE (Cohen & Hoshen, 2020): kNN over pooled features for the image score, then per-pixel
nearest neighbours in the K nearest training images' feature pyramids. ``model.py`` fits it,
``export.py`` writes the bundle, ``options.py`` holds its command-line options."""

from __future__ import annotations

from edgead.detectors.registry import Detector


class Spade(Detector):
    name = "spade"
    summary = "image-level kNN, then per-pixel kNN in the nearest training images"
    model_module = "edgead.detectors.spade.model"
    config_class = "SpadeConfig"
    export_module = "edgead.detectors.spade.export"
    options_module = "edgead.detectors.spade.options"
