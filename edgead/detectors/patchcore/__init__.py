"""PatchCore (Roth et al., CVPR 2022): locally aware patch features, a greedy coreset memory bank,
nearest-neighbour patch scores. ``model.py`` is the torch module and its fit, ``export.py``
writes the bundle, ``options.py`` holds its command-line options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgead.detectors.registry import Detector
from edgead.errors import EdgeadError


class PatchCore(Detector):
    name = "patchcore"
    summary = "memory bank of patch features (coreset), nearest-neighbour distance"
    model_module = "edgead.detectors.patchcore.model"
    config_class = "PatchCoreConfig"
    export_module = "edgead.detectors.patchcore.export"
    options_module = "edgead.detectors.patchcore.options"

    def check_options(self, values: dict) -> dict:
        if "coreset_ratio" in values and not 0 < values["coreset_ratio"] <= 1:
            raise EdgeadError("--coreset-ratio must be in (0, 1]")
        if values.get("coreset_chunk", 0) < 0:
            raise EdgeadError("--coreset-chunk must be 0 (one greedy) or a number of patches")
        if "coreset_projection" in values:
            values["coreset_projection"] = values["coreset_projection"] or None
        return values

    def export(self, saved: Any, out: str | Path, overwrite: bool = False, **options: Any) -> Path:
        legacy = options.pop("legacy_search", None)  # the deprecated --search graph
        if options.pop("in_graph_search", False) or legacy == "graph":
            options["search"] = "graph"
        return super().export(saved, out, overwrite, **options)
