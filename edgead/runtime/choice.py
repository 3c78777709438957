"""``--backend auto --precision auto``: the backend and precision recorded in the bundle
(``edgead.export.runtime_choice`` measures them where the bundle is exported or quantized)."""

from __future__ import annotations

import importlib.util
import logging

from edgead.bundle.manifest import Manifest

log = logging.getLogger(__name__)


def installed(backend: str) -> bool:
    """Whether ``backend``'s Python package is importable here."""
    return importlib.util.find_spec(backend) is not None


def resolve_auto(manifest: Manifest, backend: str, precision: str) -> tuple[str, str]:
    """``auto`` backend/precision -> the bundle's recorded choice where its backend is
    installed here, else onnxruntime FP32; given values pass through."""
    choice = manifest.runtime or {}
    if backend == "auto":
        backend = choice.get("backend", "onnxruntime")
        if not installed(backend):
            log.info("the bundle's default backend %s is not installed here: onnxruntime", backend)
            backend = "onnxruntime"
    if precision == "auto":
        precision = choice.get("precision", "fp32") if backend == choice.get("backend") else "fp32"
    return backend, precision
