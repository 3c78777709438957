"""Export steps shared by every detector: library versions, golden outputs, reference scores."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from edgead.bundle.io import BundleWriter

LIBRARIES = (
    "edgead",
    "torch",
    "timm",
    "onnx",
    "onnxruntime",
    "faiss-cpu",
    "numpy",
    "opencv-python-headless",
    "scikit-learn",
)


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def write_golden(writer: BundleWriter, arrays: dict[str, np.ndarray]) -> None:
    """Inputs and the PyTorch model's outputs on them: parity without any dataset."""
    np.savez(writer.path("golden.npz"), **arrays)
    writer.add("golden.npz", role="golden", fmt="npz", keys=sorted(arrays))
