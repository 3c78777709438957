"""The lean runtime: numpy, OpenCV, onnxruntime (or TensorRT) and faiss. Never torch."""

from edgead.runtime.pipeline import Failure, Pipeline, Prediction
from edgead.runtime.settings import RuntimeSettings

__all__ = ["Failure", "Pipeline", "Prediction", "RuntimeSettings"]
