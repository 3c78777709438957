"""The lean runtime: numpy, OpenCV, onnxruntime (or TensorRT) and faiss. Never torch."""

from edgead.runtime.pipeline import Failure, Pipeline, Prediction

__all__ = ["Failure", "Pipeline", "Prediction"]
