"""What the TensorRT backend and the engine builder both need: the TensorRT module that is
installed, and the GPU that is here (torch-free; the runtime owns these, export uses them)."""

from __future__ import annotations

from typing import Any

from edgead.errors import EdgeadError


def tensorrt_module() -> tuple[Any, str]:
    """(module, flavour): NVIDIA TensorRT when installed, else TensorRT-RTX."""
    try:
        import tensorrt as trt

        return trt, "tensorrt"
    except ImportError:
        pass
    try:
        import tensorrt_rtx_bindings as trt

        return trt, "tensorrt-rtx"
    except ImportError as exc:
        raise EdgeadError(
            "no TensorRT here: install NVIDIA TensorRT >= 10, or TensorRT-RTX with "
            "pip install 'edgead[trt]'"
        ) from exc


def current_gpu() -> dict[str, Any]:
    """Name and compute capability of GPU 0, or {} without a GPU or cuda-python."""
    try:
        from cuda.bindings import runtime as cudart

        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            return {}
        return {
            "gpu": props.name.decode(errors="replace").strip("\x00"),
            "compute_capability": f"{props.major}.{props.minor}",
        }
    except Exception:  # no driver, no device, no cuda-python: an engine built on the CPU
        return {}
