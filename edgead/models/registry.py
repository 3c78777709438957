"""Detector registry (PyTorch side). A new detector registers here; the CLI and the contract
tests pick it up by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgead.errors import EdgeadError


@dataclass(frozen=True)
class DetectorEntry:
    name: str
    config_cls: type
    fit: Callable[..., tuple[Any, dict]]
    rebuild: Callable[[Any, dict], Any]
    input_spec: Callable[[Any], Any]
    infer: Callable[[Any, Any], tuple[Any, Any]]  # model, batch -> (scores, maps) numpy
    export: Callable[..., None]
    uses_validation: bool = False  # fit() takes validation=[paths] (held-out good images)

    def config_from_dict(self, d: dict) -> Any:
        return self.config_cls.from_dict(d)


DETECTORS: dict[str, DetectorEntry] = {}
_builtins_loaded = False


def register_detector(entry: DetectorEntry) -> DetectorEntry:
    DETECTORS[entry.name] = entry
    return entry


def get_detector(name: str) -> DetectorEntry:
    _load_builtins()
    if name not in DETECTORS:
        raise EdgeadError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]


def _load_builtins() -> None:
    """Register the built-in detectors (imported lazily: they need torch)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from edgead.export import efficientad as export_efficientad
    from edgead.export import padim as export_padim
    from edgead.export import patchcore as export_patchcore
    from edgead.export import spade as export_spade
    from edgead.models import efficientad, padim, patchcore, spade
    from edgead.models.common import infer, input_spec

    for name, model, exporter, config in (
        ("patchcore", patchcore, export_patchcore, patchcore.PatchCoreConfig),
        ("padim", padim, export_padim, padim.PadimConfig),
        ("spade", spade, export_spade, spade.SpadeConfig),
    ):
        register_detector(
            DetectorEntry(
                name,
                config,
                model.fit,
                model.rebuild,
                input_spec,
                infer,
                exporter.export,
            )
        )
    for name, config in (
        ("efficientad", efficientad.EfficientAdConfig),
        ("puad", efficientad.PuadConfig),
    ):
        register_detector(
            DetectorEntry(
                name,
                config,
                efficientad.fit,
                efficientad.rebuild,
                efficientad.input_spec,
                efficientad.infer,
                export_efficientad.export,
                uses_validation=True,
            )
        )
