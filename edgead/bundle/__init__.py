"""The bundle: the one thing that flows from fitting to the device."""

from edgead.bundle.io import Bundle, open_bundle, read_manifest, write_bundle
from edgead.bundle.manifest import (
    SCHEMA_VERSION,
    Artifact,
    GraphSpec,
    InputSpec,
    Manifest,
    Metrics,
    Normalization,
    ParityTolerance,
    PostprocessSpec,
    ScorerSpec,
)

__all__ = [
    "SCHEMA_VERSION",
    "Artifact",
    "Bundle",
    "GraphSpec",
    "InputSpec",
    "Manifest",
    "Metrics",
    "Normalization",
    "ParityTolerance",
    "PostprocessSpec",
    "ScorerSpec",
    "open_bundle",
    "read_manifest",
    "write_bundle",
]
