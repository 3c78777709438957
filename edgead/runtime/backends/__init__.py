"""Runtime backends; each registers itself by name."""

from edgead.runtime.backends import onnxruntime, openvino, tensorrt, torch_backend  # noqa: F401
from edgead.runtime.backends.base import (
    BACKENDS,
    Backend,
    TensorMeta,
    create_backend,
    register_backend,
)

__all__ = ["BACKENDS", "Backend", "TensorMeta", "create_backend", "register_backend"]
