"""Export steps shared by every detector: library versions, golden outputs, reference scores."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgead.bundle import roles
from edgead.bundle.io import BundleWriter, write_bundle
from edgead.bundle.manifest import (
    GraphSpec,
    Manifest,
    Metrics,
    Normalization,
    ParityTolerance,
    PostprocessSpec,
    ScorerSpec,
)
from edgead.bundle.references import write_reference_scores
from edgead.errors import EdgeadError
from edgead.export.onnx import OPSET, HalfPrecision, check_onnx, export_onnx
from edgead.export.runtime_choice import record_runtime

# FP16 graph vs the FP32 PyTorch module, relative to the output's largest magnitude
FP16_EXPORT_TOLERANCE = 0.05

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
    writer.add("golden.npz", role=roles.GOLDEN, fmt="npz", keys=sorted(arrays))


def write_graph(
    writer: BundleWriter,
    name: str,
    role: str,
    precision: str,
    graph: torch.nn.Module,
    reference: torch.nn.Module,
    saved: Any,
    output_names: list[str],
    rel_tol: float,
    hint: str = "",
) -> None:
    """Export ``graph`` to ONNX, check it in onnxruntime against the FP32 ``reference`` module
    on the golden inputs (raises beyond ``rel_tol``), and register it in the bundle."""
    path = writer.path(name)
    export_onnx(graph, torch.from_numpy(saved.golden_inputs[:1]), path, output_names=output_names)
    try:
        check = check_onnx(path, reference, saved.golden_inputs, rel_tol=rel_tol)
    except EdgeadError as exc:
        raise EdgeadError(f"{exc}{'; ' + hint if hint else ''}") from exc
    writer.add(
        name,
        role=role,
        fmt="onnx",
        precision=precision,
        opset=OPSET,
        check_max_rel=check["max_rel"],
    )


def write_torch_graph(
    writer: BundleWriter,
    name: str,
    role: str,
    precision: str,
    graph: torch.nn.Module,
    saved: Any,
    output_names: list[str],
) -> None:
    """The graph as a torch.export program (batch dimension dynamic), for the torch backend on
    GPU machines without TensorRT. Checked against the module it came from before it is added."""
    from torch.export import Dim, export, load, save

    golden = torch.from_numpy(saved.golden_inputs)
    # an example batch of 2: a batch of 1 would be specialized as a constant
    example = golden[:2] if len(golden) >= 2 else golden[:1].repeat(2, 1, 1, 1)
    graph = graph.eval()
    program = export(graph, (example,), dynamic_shapes=({0: Dim("batch", min=1, max=1024)},))
    path = writer.path(name)
    save(program, str(path))
    with torch.no_grad():
        want = graph(golden)
        got = load(str(path)).module()(golden)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    got = [got] if isinstance(got, torch.Tensor) else list(got)
    worst = max(
        float((g - w).abs().max()) / max(float(w.abs().max()), 1e-12)
        for g, w in zip(got, want, strict=True)
    )
    if worst > 1e-4:
        raise EdgeadError(f"{path}: the exported program differs from the module by {worst:.1e}")
    writer.add(
        name,
        role=role,
        fmt="torch.export",
        precision=precision,
        outputs=list(output_names),
        torch=torch.__version__,
        check_max_rel=worst,
    )


def export_bundle(
    saved: Any,
    out: str | Path,
    overwrite: bool,
    module: torch.nn.Module,
    output_names: list[str],
    write_artifacts: Callable[[BundleWriter], ScorerSpec],
    image_score: str = "scorer",
    parity: ParityTolerance | None = None,
    fp16: bool = True,
    fp16_module: torch.nn.Module | None = None,
    torch_graph: bool = False,
) -> Path:
    """The steps every detector's export shares, around its own ``write_artifacts``.

    The graph (``module``) goes to ONNX and is checked in onnxruntime at once; the detector
    writes its scoring artifacts and returns the scorer spec; then golden outputs, reference
    scores and the manifest. All inside one atomic bundle write.
    """
    model = saved.model.eval()
    golden = torch.from_numpy(saved.golden_inputs)
    with torch.no_grad():
        ref = model(golden)
    with write_bundle(out, overwrite) as writer:
        write_graph(
            writer, "graph.onnx", roles.ONNX, "fp32", module, module, saved, output_names, 1e-3
        )
        if fp16:
            # default: the whole graph in FP16; a detector may keep parts of it in FP32
            half = fp16_module if fp16_module is not None else HalfPrecision(module)
            write_graph(
                writer,
                "graph_fp16.onnx",
                roles.ONNX_FP16,
                "fp16",
                half,
                module,
                saved,
                output_names,
                FP16_EXPORT_TOLERANCE,
                hint="this model does not survive FP16; `--no-fp16` writes an FP32-only bundle",
            )
        if torch_graph:
            write_torch_graph(
                writer, "graph.pt2", roles.TORCH_PROGRAM, "fp32", module, saved, output_names
            )
            if fp16:
                # the FP16 ONNX graph's module as a program: the torch backend's FP16 runs the
                # same arithmetic as onnxruntime's and TensorRT's (FP32 islands included)
                write_torch_graph(
                    writer,
                    "graph_fp16.pt2",
                    roles.TORCH_PROGRAM_FP16,
                    "fp16",
                    half,
                    saved,
                    output_names,
                )
        scorer = write_artifacts(writer)
        write_golden(
            writer,
            {k: v.numpy().astype(np.float32) for k, v in ref.items()}
            | {"input": saved.golden_inputs},
        )
        evaluation = saved.evaluation
        if evaluation is not None and evaluation.records:
            write_reference_scores(writer, evaluation.records)
        fitted = saved.fit_report.get("fit_images")
        if fitted:  # so that `edgead calibrate` can refuse the images the model was fitted on
            writer.path("fit_images.txt").write_text("\n".join(fitted) + "\n")
            writer.add("fit_images.txt", roles.FIT_IMAGES, "sha256-16")
        shapes = {name: ["batch", *ref[name].shape[1:]] for name in output_names}
        spec = saved.input
        manifest = Manifest(
            detector=saved.detector,
            params=saved.config,
            input=spec,
            backbone=saved.backbone,
            graph=GraphSpec("graph.onnx", "input", list(output_names), shapes),
            scorer=scorer,
            postprocess=PostprocessSpec(
                spec.height, spec.width, model.config.blur_sigma, image_score=image_score
            ),
            normalization=evaluation.normalization if evaluation else Normalization(),
            metrics=evaluation.metrics if evaluation else Metrics(),
            parity=parity or ParityTolerance(),
            libraries=library_versions(),
            fit={k: v for k, v in saved.fit_report.items() if k not in ("backbone", "fit_images")},
        )
        writer.write_manifest(manifest)
        check_staged_bundle(writer.staging, out, fp16)
        record_runtime(writer, manifest)
    return Path(out)


def check_staged_bundle(staging: Path, out: str | Path, fp16: bool) -> None:
    """Run the staged bundle through the runtime on its golden inputs before it lands.

    Each graph was checked against the module already; this checks what a user's `parity`
    checks first, the image scores through the scorer. A graph can pass the first and fail the
    second where the scorer amplifies small output errors (PUAD's Mahalanobis distance along
    poorly conditioned directions of a briefly trained model): such a bundle is not written.
    """
    from edgead.bundle.io import open_bundle
    from edgead.runtime.parity import golden_rows
    from edgead.runtime.pipeline import Pipeline

    bundle = open_bundle(staging)  # verified once: checksums of every artifact
    for precision in ("fp32", "fp16") if fp16 else ("fp32",):
        with Pipeline(bundle, precision=precision, search="faiss") as pipeline:
            failed = [r for r in golden_rows(pipeline) if not r.ok]
        if failed:
            worst = ", ".join(
                f"{r.check} off by {r.diff:.3g} (tolerance {r.tolerance})" for r in failed
            )
            fix = (
                "this model does not survive FP16; `--no-fp16` writes an FP32-only bundle"
                if precision == "fp16"
                else "the runtime does not reproduce the model; please report this"
            )
            raise EdgeadError(
                f"{out}: the {precision} bundle fails its golden check ({worst}); {fix}"
            )
