"""Compile a bundle's ONNX graphs into TensorRT engines (no torch needed).

Written against TensorRT's own Python API (>= 10: strongly typed networks, named I/O tensors,
optimization profiles), with whichever module is installed: NVIDIA TensorRT (``tensorrt``)
or TensorRT-RTX (``tensorrt_rtx_bindings``, whose builder also runs on a machine without a
GPU). Precision comes from the graph: the FP16 graph is built strongly typed, so both
modules produce the same FP16 engine; FP32 likewise from the FP32 graph.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgead.bundle import roles
from edgead.bundle.io import amend_bundle
from edgead.errors import EdgeadError
from edgead.runtime.backends.trt_support import current_gpu, tensorrt_module

log = logging.getLogger(__name__)


@dataclass
class EngineSettings:
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 16
    workspace_mb: int = 2048
    timing_cache: Path | None = None  # read and updated (NVIDIA TensorRT; a no-op in RTX)

    def check(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise EdgeadError("batch range: need 1 <= min <= opt <= max")


def build_engine(onnx_path: Path, engine_path: Path, settings: EngineSettings) -> dict[str, Any]:
    """Parse ``onnx_path``, build an engine for the batch range, write it; returns metadata."""
    settings.check()
    trt, flavour = tensorrt_module()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise EdgeadError(f"{onnx_path}: {flavour} cannot parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    cache = None
    if settings.timing_cache is not None and flavour == "tensorrt":
        blob = settings.timing_cache.read_bytes() if settings.timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    for tensor in inputs:
        rest = tuple(tensor.shape)[1:]
        if any(d < 0 for d in rest):
            raise EdgeadError(f"{onnx_path}: only the batch axis may be dynamic ({tensor.shape})")
        profile.set_shape(
            tensor.name,
            (settings.min_batch, *rest),
            (settings.opt_batch, *rest),
            (settings.max_batch, *rest),
        )
    config.add_optimization_profile(profile)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeadError(f"{onnx_path}: {flavour} failed to build an engine (see its log above)")
    engine_path.write_bytes(bytes(serialized))
    if cache is not None:
        settings.timing_cache.write_bytes(bytes(cache.serialize()))
    gpu = current_gpu()
    return {
        "tensorrt": flavour,
        "tensorrt_version": trt.__version__,
        "built_on": gpu.get("gpu", "cpu (no GPU: TensorRT-RTX compiles for the GPU at load)"),
        "compute_capability": gpu.get("compute_capability"),
        "min_batch": settings.min_batch,
        "opt_batch": settings.opt_batch,
        "max_batch": settings.max_batch,
        "workspace_mb": settings.workspace_mb,
        "build_seconds": round(time.perf_counter() - start, 2),
        "inputs": [t.name for t in inputs],
    }


def build_engines(
    bundle_root: str | Path,
    precisions: tuple[str, ...] = ("fp16", "fp32"),
    settings: EngineSettings | None = None,
) -> list[dict[str, Any]]:
    """Add engines to a bundle, atomically: the bundle is rewritten with them or left as it was."""
    settings = settings or EngineSettings()
    built = []
    with amend_bundle(bundle_root) as (writer, manifest):
        staging = writer.staging
        for precision in precisions:
            if precision == "int8":
                # an INT8 graph runs only where it passed its parity gate on the evaluation
                # set, and an engine cannot be run (so not gated) on a machine without a GPU
                raise EdgeadError(
                    f"{bundle_root}: no INT8 engine is built: the INT8 graph runs on the "
                    "backends it passed parity on (`--backend onnxruntime` or `openvino "
                    "--precision int8`); TensorRT runs fp16 and fp32 engines"
                )
            role = (
                roles.GRAPH_ROLES["onnxruntime"][precision] if precision in roles.ENGINE else None
            )
            if role is None or not manifest.has_artifact(role):
                raise EdgeadError(
                    f"{bundle_root}: no {precision} graph to build from; re-export with --fp16"
                    if role
                    else f"unknown precision {precision!r}: fp16 or fp32"
                )
            name = f"engines/graph_{precision}.engine"
            meta = build_engine(staging / manifest.artifact(role).path, writer.path(name), settings)
            writer.add(
                name, role=roles.ENGINE[precision], fmt="tensorrt", precision=precision, **meta
            )
            log.info("built %s engine in %.1f s", precision, meta["build_seconds"])
            built.append({"precision": precision, **meta})
        writer.write_manifest(manifest)
    return built
