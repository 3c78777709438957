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

    @property
    def config_cls(self) -> type:
        from edgead.detectors.patchcore.model import PatchCoreConfig

        return PatchCoreConfig

    def fit_options(self) -> list:
        from edgead.detectors.patchcore.options import FIT

        return FIT

    def export_options(self) -> list:
        from edgead.detectors.patchcore.options import EXPORT

        return EXPORT

    def check_options(self, values: dict) -> dict:
        if "coreset_ratio" in values and not 0 < values["coreset_ratio"] <= 1:
            raise EdgeadError("--coreset-ratio must be in (0, 1]")
        if "coreset_projection" in values:
            values["coreset_projection"] = values["coreset_projection"] or None
        return values

    def fit(self, config, train, device="cpu", quiet=False, **extra):
        from edgead.detectors.patchcore.model import fit

        return fit(config, train, device=device, quiet=quiet)

    def rebuild(self, config, state):
        from edgead.detectors.patchcore.model import rebuild

        return rebuild(config, state)

    def export(self, saved: Any, out: str | Path, overwrite: bool = False, **options: Any) -> Path:
        from edgead.detectors.patchcore.export import export

        legacy = options.pop("legacy_search", None)
        if options.pop("in_graph_search", False) or legacy == "graph":
            options["search"] = "graph"
        return export(saved, out, overwrite, **options)
