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
from edgead.bundle.io import Bundle, amend_bundle, open_bundle
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
    data: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Add engines to a bundle, atomically: the bundle is rewritten with them or left as it was.

    The INT8 engine is built from the bundle's INT8 graph (its calibration on good training
    images, its layers kept in FP32) and written only when it holds the INT8 parity gate on
    ``data``'s test set on this machine's GPU; without one it cannot be gated and is refused
    before anything is built."""
    settings = settings or EngineSettings()
    settings.check()
    bundle = open_bundle(bundle_root)
    sources = {p: _source(bundle, p, data) for p in precisions}  # all checked before any build
    with amend_bundle(bundle.root) as (writer, manifest):
        built = []
        for precision, relative in sources.items():
            name = f"engines/graph_{precision}.engine"
            src = writer.staging / relative  # the staged copy of the graph
            if precision == "int8":
                meta = _build_signed(src, writer.path(name), settings)
            else:
                meta = build_engine(src, writer.path(name), settings)
            writer.add(
                name, role=roles.ENGINE[precision], fmt="tensorrt", precision=precision, **meta
            )
            log.info("built %s engine in %.1f s", precision, meta["build_seconds"])
            if precision == "int8":
                writer.write_manifest(manifest)
                meta |= _gate(bundle_root, writer, data)
                writer.add(
                    name, role=roles.ENGINE[precision], fmt="tensorrt", precision=precision, **meta
                )
            built.append({"precision": precision, **meta})
        writer.write_manifest(manifest)
    return built


def _source(bundle: Bundle, precision: str, data) -> Path:
    """The graph (its path inside the bundle) an engine of ``precision`` is built from, or the
    reason it cannot be."""
    role = roles.GRAPH_ROLES["onnxruntime"].get(precision)
    if role is None:
        raise EdgeadError(f"unknown precision {precision!r}: fp16, fp32 or int8")
    if not bundle.has(role):
        fix = (
            f"`edgead quantize {bundle.root} --data DATA`"
            if precision == "int8"
            else "re-export with --fp16"
        )
        raise EdgeadError(f"{bundle.root}: no {precision} graph to build from; add it with {fix}")
    src = Path(bundle.manifest.artifact(role).path)
    if precision != "int8":
        return src
    import onnx

    from edgead.export.quantize import symmetric

    if not symmetric(onnx.load(str(bundle.path(role)))):
        raise EdgeadError(
            f"{bundle.root}: the INT8 graph has zero points other than 0 "
            f"({bundle.manifest.artifact(role).meta.get('quantizer')} quantizer); TensorRT "
            "builds symmetric INT8 only: quantize with `--quantizer nncf`"
        )
    if data is None:
        raise EdgeadError(
            f"{bundle.root}: an INT8 engine is written only after it holds the INT8 parity "
            "gate on this GPU: give the evaluation data with --data DATA"
        )
    if not current_gpu():
        raise EdgeadError(
            f"{bundle.root}: no CUDA GPU here to gate an INT8 engine on; build it on the "
            "machine that runs it (an engine runs only on the GPU it was built for)"
        )
    return src


def signed_int8(model):
    """The INT8 graph with its unsigned 8-bit activations (NNCF writes them after a ReLU:
    zero point 0, 0..255) re-expressed as signed ones with twice the scale. TensorRT builds
    signed INT8 only, and its ONNX parser reads a UINT8 quantizer as INT8 with the same
    scale: every activation above half the calibrated range would be clipped. The signed form
    loses the lowest bit of those activations, and the engine is gated on its own figures: run
    on onnxruntime as a stand-in, the signed form of PatchCore's INT8 graphs failed the gate on
    tire, bottle and juice where the unsigned ones passed (docs/how-to/int8-openvino.md)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    retyped: set[str] = set()
    renamed: dict[tuple[str, str], tuple[str, str]] = {}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp = inits.get(node.input[2])
        if zp is None or numpy_helper.to_array(zp).dtype != np.uint8:
            continue
        key = (node.input[1], node.input[2])
        if key not in renamed:
            scale = numpy_helper.to_array(inits[node.input[1]])
            names = (f"{node.input[1]}_signed", f"{node.input[2]}_signed")
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array((scale * 2).astype(scale.dtype), names[0]),
                    numpy_helper.from_array(
                        np.zeros(numpy_helper.to_array(zp).shape, np.int8), names[1]
                    ),
                ]
            )
            renamed[key] = names
        node.input[1], node.input[2] = renamed[key]
        if node.op_type == "QuantizeLinear":
            retyped.add(node.output[0])
    for info in model.graph.value_info:  # the quantized tensors' recorded types follow
        if info.name in retyped:
            info.type.tensor_type.elem_type = onnx.TensorProto.INT8
    used = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model


def _build_signed(src: Path, engine_path: Path, settings: EngineSettings) -> dict[str, Any]:
    """Build the INT8 engine from ``signed_int8`` of the INT8 graph (a file outside the bundle)."""
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        signed = Path(tmp) / src.name
        onnx.save(signed_int8(onnx.load(str(src))), str(signed))
        return build_engine(signed, engine_path, settings) | {"from": src.name}


def _gate(bundle_root, writer, data) -> dict[str, Any]:
    """Run the INT8 parity gate on the staged bundle with the engine; raise if it fails."""
    from edgead.export.quantize import gate_record
    from edgead.runtime.parity import run_parity

    report = run_parity(
        writer.staging, Path(data), quiet=True, backend="tensorrt", precision="int8"
    )
    record = gate_record(report)
    if not record["passed"]:
        raise EdgeadError(
            f"{bundle_root}: the INT8 engine fails parity on this GPU and is not written: "
            + ("; ".join(record["failed"]) or "no check could be made")
        )
    # the GPU it held parity on (an engine runs only on the GPU model it was built for)
    return {"gate": {"tensorrt": record}, "gated_on": current_gpu()}
