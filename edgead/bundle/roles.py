"""Artifact roles: the names by which export writes and the runtime finds a bundle's files.
One table maps (backend, precision) to the graph a backend runs."""

from __future__ import annotations

# the exported graph: the feature network and whatever of the scorer was compiled into it
ONNX = "graph"
ONNX_FP16 = "graph_fp16"
# post-training quantized (QDQ), calibrated on good training images, gated at export
ONNX_INT8 = "graph_int8"
# TensorRT engines; the INT8 one is built from the INT8 graph and gated on the GPU it runs on
ENGINE = {"fp32": "engine_fp32", "fp16": "engine_fp16", "int8": "engine_int8"}
TORCH_PROGRAM = "torch_graph"
TORCH_PROGRAM_FP16 = "torch_graph_fp16"
INDEX = "index"
STATISTICS = "statistics"
GOLDEN = "golden"
REFERENCE_SCORES = "reference_scores"
FIT_IMAGES = "fit_images"  # content hashes of the images the model was fitted on


def gallery(i: int) -> str:
    """SPADE's feature gallery of layer ``i``."""
    return f"gallery_{i}"


# which artifact each backend runs, per precision
GRAPH_ROLES = {
    "onnxruntime": {"fp32": ONNX, "fp16": ONNX_FP16, "int8": ONNX_INT8},
    # OpenVINO reads the same ONNX graphs
    "openvino": {"fp32": ONNX, "fp16": ONNX_FP16, "int8": ONNX_INT8},
    "tensorrt": dict(ENGINE),
    # FP16: the program exported from the FP16 graph's module; bundles written before it
    # existed fall back to the FP32 program under autocast (CUDA only)
    "torch": {"fp32": TORCH_PROGRAM, "fp16": TORCH_PROGRAM_FP16},
}
FALLBACK_ROLES = {TORCH_PROGRAM_FP16: TORCH_PROGRAM}

# manifests before schema 1.4 named the graph roles after the feature network; read as today's
LEGACY_ROLES = {"backbone": ONNX, "backbone_fp16": ONNX_FP16, "backbone_int8": ONNX_INT8}
