"""INT8 graphs: post-training quantization calibrated on good training images, written into
the bundle only when parity on the evaluation set passes.

The quantizers are libraries (NNCF, the default, or onnxruntime's static QDQ quantizer); what
is edgead's own is around them: which images calibrate (good training images the model was
fitted on, never held-out or test images; a recorded number, seed and list digest), folding
the graph's constant shape arithmetic first, and the gate. Both quantizers write a QDQ ONNX
graph that onnxruntime and OpenVINO run as INT8.

The graph is folded first (``edgead.export.onnx.fold_constants``): quantized, the unfolded
shape arithmetic of TF-"same" padding rounds the padding.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import Bundle, amend_bundle, open_bundle
from edgead.data.datasets import open_dataset
from edgead.data.images import file_digest, read_image
from edgead.errors import EdgeadError
from edgead.export.int8_control import (
    FIDELITY_DROPS,
    WEIGHTED,
    held_out_good,
    quantize_controlled,
)
from edgead.export.int8_control import LEVEL as CONTROLLED
from edgead.export.runtime_choice import record_runtime
from edgead.runtime.bench import cpu_name
from edgead.runtime.choice import instruction_sets
from edgead.runtime.preprocess import preprocess
from edgead.threads import configured

log = logging.getLogger(__name__)

QUANTIZERS = ("nncf", "onnxruntime")
INT8_NAME = "graph_int8.onnx"


@dataclass
class Int8Settings:
    images: int = 64  # good training images that calibrate the activation ranges
    seed: int = 0
    quantizer: str = "nncf"
    # backends the graph is gated on; only these may run it
    backends: tuple[str, ...] = ("onnxruntime", "openvino")
    batch_size: int = 1
    threads: int | None = None
    # fidelity drops NNCF's accuracy control is asked for, in turn, where the fixed levels fail
    # (edgead.export.int8_control; empty: none)
    fidelity_drops: tuple[float, ...] = FIDELITY_DROPS
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise EdgeadError(f"quantizer {self.quantizer!r}: one of {', '.join(QUANTIZERS)}")
        if self.images < 1:
            raise EdgeadError(f"--calibration-images {self.images}: at least 1")
        if not self.backends:
            raise EdgeadError("no backend to gate the INT8 graph on")
        if "openvino" in self.backends:
            try:
                import openvino  # noqa: F401
            except ImportError as exc:
                raise EdgeadError(
                    "gating on openvino needs `pip install 'edgead[openvino]'` "
                    "(or `--backend onnxruntime`)"
                ) from exc
        if self.quantizer == "nncf":
            try:
                import nncf  # noqa: F401
            except ImportError as exc:
                raise EdgeadError(
                    "the nncf quantizer needs `pip install 'edgead[openvino]'` "
                    "(or `--quantizer onnxruntime`)"
                ) from exc


def calibration_paths(bundle: Bundle, data: Path, n: int, seed: int) -> list[Path]:
    """``n`` good training images, chosen with ``seed`` among those the model was fitted on
    (the bundle's list of fitted images, where it has one): never a held-out or test image."""
    paths = open_dataset(data).train_paths()
    if bundle.has(roles.FIT_IMAGES):
        fitted = set(bundle.path(roles.FIT_IMAGES).read_text().split())
        paths = [p for p in paths if file_digest(p) in fitted]
        if not paths:
            raise EdgeadError(
                f"{data}/train/good: none of these images is one the bundle was fitted on; "
                "calibrate on the data the bundle was exported from"
            )
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(paths), min(n, len(paths)), replace=False))
    return [paths[i] for i in pick]


def fold_shapes(src: Path):
    """The FP32 graph with its constant shape arithmetic folded (bundles exported before
    export folded it have it unfolded)."""
    import onnx

    from edgead.export.onnx import fold_constants

    return fold_constants(onnx.load(str(src)))


def fp32_tail(model) -> list[str]:
    """Names of the nodes after the graph's last weighted layer on every path: no convolution
    or matrix product can be reached from them. They stay in FP32: cheap arithmetic, and where
    the error of 8-bit values shows most. Quantized, the padded average pooling of PatchCore's
    tire graph moved its features by 20.8% (mean, relative) on OpenVINO against 6.6% with
    the pooling kept in FP32 (``benchmarks/int8_variants.py``, AVX-512 VNNI EPYC)."""
    consumers: dict[str, list[int]] = {}
    nodes = list(model.graph.node)
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    # ONNX lists nodes in topological order: walking back, every consumer is settled first
    reaches = [False] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):
        reaches[i] = any(
            nodes[c].op_type in WEIGHTED or reaches[c]
            for out in nodes[i].output
            for c in consumers.get(out, [])
        )
    return [
        n.name
        for n, r in zip(nodes, reaches, strict=True)
        if n.op_type not in WEIGHTED and n.name and not r
    ]


def depthwise_convs(model) -> list[str]:
    """Names of the grouped (depthwise) convolutions."""
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Conv"
        and n.name
        and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]


def fp32_levels(model) -> list[tuple[str, list[str]]]:
    """What INT8 keeps in FP32, tried in this order until the gate passes on a backend: the
    post-processing tail (``fp32_tail``), then the depthwise convolutions as well, whose
    per-channel ranges 8 bits hold worst. Measured with PaDiM and SPADE (defaults, AVX-512
    VNNI EPYC): with the tail alone PaDiM on bottle missed the detection rate by 3.2 points
    and SPADE on juice the Spearman tolerance; with the depthwise convolutions in FP32 both
    passed on onnxruntime and OpenVINO (docs/how-to/int8-openvino.md)."""
    tail = fp32_tail(model)
    depthwise = depthwise_convs(model)
    levels = [("the post-processing tail", tail)]
    if depthwise:
        levels.append(("the post-processing tail and the depthwise convolutions", tail + depthwise))
    return levels


def quantize_graph(
    model, batches: list[np.ndarray], input_name: str, quantizer: str, tail: list[str]
):
    """A QDQ INT8 ONNX model from the folded FP32 ``model``: per-channel weights, activation
    ranges from ``batches``, the nodes of ``tail`` (``fp32_tail``) left in FP32."""
    if quantizer == "nncf":
        import nncf

        dataset = nncf.Dataset(batches, lambda x: {input_name: x})
        # full bias correction: with NNCF's default (fast) correction the tire bundle's INT8
        # graph lost 8.8 points of image ROCAUC and 31 of pixel ROCAUC; with the full one it
        # passed the gate (benchmarks/precision.py)
        return nncf.quantize(
            model,
            dataset,
            subset_size=len(batches),
            fast_bias_correction=False,
            ignored_scope=nncf.IgnoredScope(names=tail, validate=False) if tail else None,
        )
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self) -> dict | None:
            x = next(self.items, None)
            return None if x is None else {input_name: x}

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=tail,
        )
        return onnx.load(str(dst))


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def add_int8_graph(bundle_root: str | Path, data: str | Path, settings: Int8Settings) -> dict:
    """Quantize the bundle's FP32 graph, gate it on ``data``'s test set with each backend of
    ``settings.backends``, and add it to the bundle (atomically) if it passes on at least one.

    Returns the artifact's metadata (calibration, quantizer, what was kept in FP32 and what
    was tried before, gate per backend, the CPU it was gated on). The graph is quantized with
    each level of ``fp32_levels`` in turn, then (NNCF only, where held-out good images exist)
    with the layers NNCF's accuracy control reverts at each of ``settings.fidelity_drops``
    (``edgead.export.int8_control``), until it passes on at least one backend; it is written
    then and runs only on those backends. When every level fails on every backend,
    raises ``EdgeadError`` naming the failed checks with their figures, and the bundle is left
    as it was.
    """
    import onnx

    from edgead.runtime.parity import run_parity

    settings.check()
    data = Path(data)
    bundle = open_bundle(bundle_root)
    if bundle.manifest.metrics.image_rocauc is None:
        raise EdgeadError(
            f"{bundle.root}: the bundle records no evaluation; an INT8 graph is gated on the "
            "evaluation set, export the bundle with test data first"
        )
    paths = calibration_paths(bundle, data, settings.images, settings.seed)
    spec = bundle.manifest.input
    batches = [preprocess(read_image(p), spec)[None] for p in paths]
    src = bundle.path(roles.ONNX)
    folded = fold_shapes(src)
    listing = "\n".join(sorted(p.relative_to(data).as_posix() for p in paths))
    meta: dict[str, Any] = {
        "quantizer": settings.quantizer,
        "quantizer_version": _version(settings.quantizer),
        "simplifier": f"onnxslim {_version('onnxslim')}",
        "calibration": {
            "images": len(paths),
            "seed": settings.seed,
            "source": "train/good, images the model was fitted on",
            "list_sha256": hashlib.sha256(listing.encode()).hexdigest()[:16],
        },
    }
    tried: list[dict[str, Any]] = []  # the levels that failed on every backend, with figures
    levels: list[tuple[str, list[str] | float]] = list(fp32_levels(folded))
    if settings.quantizer == "nncf":  # the last levels: NNCF's accuracy control picks the layers
        levels += [(f"{CONTROLLED} (fidelity >= {1 - d:g})", d) for d in settings.fidelity_drops]
    held_out: list[Path] | None = None  # found only when a fixed level has failed
    with amend_bundle(bundle.root) as (writer, manifest):
        for kept, keep in levels:
            if isinstance(keep, float):
                held_out = held_out_good(bundle, data) if held_out is None else held_out
                if not held_out:
                    log.warning("no held-out good images to measure fidelity on: %s skipped", kept)
                    continue
            log.info(
                "quantizing %s with %s on %d images, %s kept in FP32",
                src.name,
                settings.quantizer,
                len(paths),
                kept,
            )
            extra: dict[str, Any] = {}
            if isinstance(keep, float):
                tail = fp32_tail(folded)
                quantized, fidelity, layers = quantize_controlled(
                    bundle, folded, batches, held_out, tail, settings.threads or configured(), keep
                )
                keep = tail + layers
                extra = {"fidelity": round(fidelity, 4), "fidelity_images": len(held_out)}
            else:
                quantized = quantize_graph(
                    copy.deepcopy(folded),
                    batches,
                    bundle.manifest.graph.input_name,
                    settings.quantizer,
                    keep,
                )
            # the nodes kept in FP32, and which level of them
            level = meta | {"kept_fp32": keep, "kept_fp32_level": kept, "tried": tried} | extra
            onnx.save(quantized, str(writer.path(INT8_NAME)))
            writer.add(INT8_NAME, role=roles.ONNX_INT8, fmt="onnx", precision="int8", **level)
            writer.write_manifest(manifest)
            gate = {}
            for backend in settings.backends:
                report = run_parity(
                    writer.staging,
                    data,
                    quiet=True,
                    backend=backend,
                    precision="int8",
                    batch=settings.batch_size,
                    threads=settings.threads,
                )
                gate[backend] = gate_record(report)
            failed = {b: g for b, g in gate.items() if not g["passed"]}
            if len(failed) < len(gate):
                break
            tried = [*tried, {"kept_fp32_level": kept, "failed": _failures(failed)}]
            log.warning("the INT8 graph with %s in FP32 fails parity everywhere", kept)
        else:
            raise EdgeadError(
                f"{bundle.root}: the INT8 graph ({settings.quantizer}, {len(paths)} "
                f"calibration images) fails parity on {', '.join(failed)} and is not written: "
                + " || ".join(f"{t['kept_fp32_level']} in FP32: {t['failed']}" for t in tried)
            )
        if failed:  # kept for the others; refused on these
            log.warning("the INT8 graph will not run where it fails parity: %s", _failures(failed))
        # INT8 arithmetic differs between CPUs (VNNI or not, AMX): the gate holds on CPUs
        # with the instruction sets it ran on (edgead.runtime.choice.int8_machine_note)
        meta = level | {"gated_on": {"cpu": cpu_name(), "isa": instruction_sets()}, "gate": gate}
        writer.add(INT8_NAME, role=roles.ONNX_INT8, fmt="onnx", precision="int8", **meta)
        writer.write_manifest(manifest)
        # the default backend and precision, measured again now that INT8 is a candidate
        record_runtime(writer, manifest, settings.threads)
    return meta


def _failures(failed: dict[str, dict]) -> str:
    return " | ".join(
        f"{b}: {'; '.join(g['failed']) or 'no check could be made'}" for b, g in failed.items()
    )


def gate_record(report) -> dict:
    """A parity report as the gate records it in the artifact's metadata: passed, the rows
    that were checked, and a sentence per failed check with its figures."""
    return {
        "passed": report.passed,
        "rows": [
            {
                "check": r.check,
                "original": r.original,
                "int8": r.bundle,
                "diff": r.diff,
                "tolerance": r.tolerance,
                "unit": r.unit,
                "ok": r.ok,
            }
            for r in report.rows
            if r.ok is not None
        ],
        "failed": [
            f"{r.check}: {_fmt(r.original)} -> {_fmt(r.bundle)}, off by "
            f"{_fmt(r.diff)} {r.unit} (tolerance {_fmt(r.tolerance)})"
            for r in report.rows
            if r.ok is False
        ],
    }


def symmetric(model) -> bool:
    """Whether every activation and weight of a QDQ graph is quantized with a zero point of 0
    (NNCF's default preset; onnxruntime's quantizer writes uint8 activations with a zero
    point): TensorRT builds symmetric INT8 only."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = inits.get(node.input[2])
            if zp is None or numpy_helper.to_array(zp).any():
                return False
    return True


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"
